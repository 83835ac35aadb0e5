"""
The control socket under a hostile or careless peer: malformed list values,
half a box left hanging, a peer that never reads its replies; and the
socket's group and mode with an admin group.
"""

from __future__ import annotations

import struct
from typing import Any

from twisted.protocols import amp

from oauthd.control import wire
from tests.test_control import Harness, command_box, events, failures

__all__ = ["events"]


def _strings(*values: bytes) -> bytes:
    return b"".join(struct.pack("!H", len(v)) + v for v in values)


def test_a_cut_short_list_is_refused_not_stored_as_empty(events: Any) -> None:
    """
    A list argument whose encoding is cut short (a length prefix promising
    more bytes than follow, or half a prefix) is refused with BAD_ARGUMENT
    naming it; the client keeps its grant types and the connection stays.
    """
    harness = Harness()
    link = harness.connect()
    client = link.call(wire.AddClient, name="app", grant_types=["client_credentials"])
    records = harness.records
    protocol, transport = harness.raw()
    whole = _strings(b"client_credentials", b"refresh_token")
    for ask, value in enumerate([whole[:5], whole[:-3], whole + b"\x00", _strings(b"x")[:1]]):
        transport.clear()
        protocol.dataReceived(command_box(
            b"ModifyClient", ask=str(ask).encode(), id=client["id"].encode(), grant_types=value,
        ))
        (answer,) = amp.parseString(transport.value())
        assert answer[b"_error_code"] == b"BAD_ARGUMENT", value
        assert answer[b"_error_description"] == b"argument grant_types must be a list"
    assert not transport.disconnecting
    assert harness.records == records
    assert link.call(wire.ShowClient, id=client["id"])["grant_types"] == ["client_credentials"]
    assert failures(events) == []


def test_a_whole_list_still_decodes() -> None:
    argument = wire.ListOf(amp.Unicode())
    assert argument.fromString(b"") == []
    assert argument.fromString(_strings(b"a", b"", b"bc")) == ["a", "", "bc"]
    assert argument.fromString(argument.toString(["x", "y"])) == ["x", "y"]
