"""
C{oauthctl}, the admin's client of the control socket (L{oauthd.ctl.cli}).
It loads nothing of the daemon but the wire schema, L{oauthd.control.wire}.
"""

import sys

if "twisted.protocols.amp" not in sys.modules and "twisted.internet.ssl" not in sys.modules:
    # Twisted's AMP imports twisted.internet.ssl for its StartTLS command, and
    # with it pyOpenSSL and cryptography, which loads bcrypt: a third of
    # oauthctl's start-up, for a command it never sends. So AMP is loaded
    # without it (it then leaves StartTLS unsupported); twisted.internet.ssl
    # can still be imported later, as usual.
    sys.modules["twisted.internet.ssl"] = None  # type: ignore[assignment]
    try:
        import twisted.protocols.amp  # noqa: F401
    finally:
        del sys.modules["twisted.internet.ssl"]
