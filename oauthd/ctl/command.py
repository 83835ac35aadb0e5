"""
The C{oauthctl} command (and C{python -m oauthd.ctl}): L{oauthd.ctl.cli.main},
started as fast as a command should.

Twisted's AMP imports twisted.internet.ssl for its StartTLS command, and
with it pyOpenSSL and cryptography, which loads bcrypt: a third of
oauthctl's start-up, for a command it never sends. So the command loads AMP
without it (AMP then leaves StartTLS unsupported, in this process only);
importing L{oauthd.ctl.cli} itself, as tests do, changes nothing.
"""

from __future__ import annotations

import sys

if "twisted.protocols.amp" not in sys.modules and "twisted.internet.ssl" not in sys.modules:
    # A None entry makes "import twisted.internet.ssl" fail, which AMP
    # takes as "no TLS"; the module can still be imported later, as usual.
    sys.modules["twisted.internet.ssl"] = None  # type: ignore[assignment]
    try:
        import twisted.protocols.amp  # noqa: F401
    finally:
        del sys.modules["twisted.internet.ssl"]

from oauthd.ctl.cli import main  # noqa: E402

__all__ = ["main"]
