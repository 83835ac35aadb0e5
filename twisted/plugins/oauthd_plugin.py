"""
The twistd dropin for oauthd: a lazy pointer to L{oauthd.tap}, nothing more.

Importing the application here (Klein imports the global reactor) would break
C{twistd --reactor=...}; L{ServiceMaker} imports C{oauthd.tap} only when used.
"""

from twisted.application.service import ServiceMaker

oauthd = ServiceMaker(
    "oauthd",
    "oauthd.tap",
    "A small OAuth 2.0 / OpenID Connect authorization server",
    "oauthd",
)
