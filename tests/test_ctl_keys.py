"""
C{oauthctl keys ls} and C{keys rotate}, over the control socket: rows
without key material, rotation with and without the publish delay, and the
audit event of each change.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest_twisted

from oauthd.control import wire
from oauthd.protocol import key_rotation
from oauthd.testing import START
from tests.test_control import Harness
from tests.test_ctl import Live
from tests.test_signing import Events


def with_keys() -> Harness:
    harness = Harness()
    harness.server.store.commit(key_rotation.first_keys(harness.server.ctx))
    return harness


def private_parts(harness: Harness) -> list[str]:
    return [key.jwk["d"] for key in harness.server.state.keys.all()]


def test_control_replies_carry_no_key_material() -> None:
    harness = with_keys()
    events = harness.server.store.audit_sink = Events()
    link = harness.connect()
    listed = link.call(wire.ListKeys)
    rotated = link.call(wire.RotateKeys, alg="ES256", now=True)
    secrets = private_parts(harness)
    assert len(secrets) == 4
    for reply in (listed, rotated, events.events):
        assert not any(secret in json.dumps(reply) for secret in secrets)
    (new,) = json.loads(rotated["rows"])
    assert [(event, fields) for event, _, fields in events.events] == [
        ("key.added", {"kid": new["kid"][:80], "alg": "ES256", "signs_from": str(START), "by": "admin"}),
        ("keys.rotate", {"peer_uid": str(harness.peer.uid), "alg": "ES256", "now": "True", "keys": "1"}),
    ]
    rows = json.loads(listed["rows"])
    assert [(row["alg"], row["state"], row["created"], row["leaves_at"]) for row in rows] == [
        ("RS256", "signing", START, 0), ("ES256", "signing", START, 0), ("EdDSA", "signing", START, 0)]
    assert set(rows[0]) == {"kid", "alg", "created", "signs_from", "state", "leaves_at"}


def test_rotate_refuses_an_unknown_algorithm_and_changes_nothing() -> None:
    harness = with_keys()
    records = harness.records
    error = harness.connect().fails(wire.RotateKeys, alg="HS256")
    assert "alg must be one of RS256, ES256, EdDSA" in str(error)
    assert harness.records == records


@pytest_twisted.ensureDeferred
async def test_keys_ls_and_rotate(tmp_path: Path) -> None:
    live = Live(tmp_path, with_keys())
    try:
        listing = (await live.ok("keys", "ls")).out.splitlines()
        assert listing[0].split("  ")[0] == "Key ID" and len(listing) == 4
        assert "signing" in listing[1]

        rotated = (await live.ok("keys", "rotate", "--alg", "RS256")).out
        assert rotated.startswith("New RS256 key ")
        assert "is published now and signs from 2027-01-15 09:00:00 UTC" in rotated
        rows = (await live.ok("keys", "ls", "--json")).json()
        assert [(row["alg"], row["state"]) for row in rows] == [
            ("RS256", "signing"), ("ES256", "signing"), ("EdDSA", "signing"), ("RS256", "next")]
        assert rows[3]["signs_from"] == START + 3600

        now = (await live.ok("keys", "rotate", "--now", "--json")).json()
        assert [row["state"] for row in now] == ["signing"] * 3
        rows = (await live.ok("keys", "ls", "--json")).json()
        # The keys that never signed a token leave as they are superseded.
        assert [row["kid"] for row in rows] == [row["kid"] for row in now]

        bad = await live.ctl("keys", "rotate", "--alg", "none")
        assert bad.code == 2
        out = "".join((await live.ok("keys", "ls")).out)
        assert not any(secret in out for secret in private_parts(live.harness))
    finally:
        await live.stop()
