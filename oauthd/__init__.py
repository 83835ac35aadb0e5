"""
oauthd: a small OAuth 2.0 / OpenID Connect authorization server run by twistd.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
