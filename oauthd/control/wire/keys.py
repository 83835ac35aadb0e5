"""
The signing-key commands of the control protocol (C{oauthctl keys}). No
key material is in any of them: a key goes by its kid.

rows: a JSON array of {kid, alg, created, signs_from, state, leaves_at},
state one of next, signing, retired; leaves_at 0 until a key is retired.
"""

from __future__ import annotations

from twisted.protocols import amp

from oauthd.control.wire import ControlCommand


class ListKeys(ControlCommand):
    response = [(b"rows", amp.Unicode())]


class RotateKeys(ControlCommand):
    # alg: one algorithm, else every one; now: sign at once, no publish delay.
    arguments = [(b"alg", amp.Unicode(optional=True)), (b"now", amp.Boolean(optional=True))]
    response = [(b"rows", amp.Unicode())]
