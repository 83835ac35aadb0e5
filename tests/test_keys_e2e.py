"""
The signing keys in the real daemon: made at first start, served as the
JWKS, the same after a restart, written only to the 0600 journal and never
to the daemon's log.
"""

from __future__ import annotations

import json
from pathlib import Path

from oauthd.eventlog import JOURNAL_NAME
from oauthd.state.records import decode
from oauthd.state.keys import KeyAdded
from oauthd.eventlog import FileJournal
from oauthd.testing import InlinePool
from tests.daemon import Daemon
from tests.helpers import InlineMemoryReactor


def test_first_start_makes_keys_that_survive_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = Daemon(data)
    try:
        status, jwks = first.get_json("/.well-known/jwks.json")
        assert status == 200
        assert [key["alg"] for key in jwks["keys"]] == ["RS256", "ES256", "EdDSA"]
    finally:
        assert first.stop() == 0
    second = Daemon(data)
    try:
        assert second.get_json("/.well-known/jwks.json") == (200, jwks)
    finally:
        assert second.stop() == 0
    journal = data / JOURNAL_NAME
    assert journal.stat().st_mode & 0o777 == 0o600
    private = [json.dumps(record.key.jwk["d"]) for record in map(decode, _payloads(data))
               if isinstance(record, KeyAdded)]
    assert len(private) == 3
    # The log, and the audit trail (which has the keys' events): no private key.
    log = first.output() + second.output()
    trail = "".join(path.read_text() for path in data.iterdir() if path.name.startswith("audit"))
    assert trail.count("key.added") == 3
    for secret in private:
        assert secret.strip('"') not in log + trail


def _payloads(data: Path) -> list[bytes]:
    journal = FileJournal.open(str(data), InlineMemoryReactor(), pool=InlinePool())
    try:
        return list(journal.replay())
    finally:
        journal.close()
