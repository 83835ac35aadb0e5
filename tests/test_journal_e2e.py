"""
End-to-end: the real C{twistd oauthd} starting on a journal whose last,
acknowledged record is damaged, and on one with a torn tail.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Generator
from pathlib import Path
from typing import Any

from oauthd.eventlog import JOURNAL_NAME, RECORD_OVERHEAD
from oauthd.testing import MemoryServer
from tests.daemon import REPO, Daemon, free_port, seed


def issue_and_revoke(data: Path) -> None:
    """
    Seed C{data} with a client and a token, then revoke the token: the
    journal's last record is that revocation (C{tok-}), acknowledged.
    """
    def build(server: MemoryServer) -> Generator[Any, Any, None]:
        client, _ = yield server.add_client("app", scope="metrics", max_tokens=-1)
        _, token = yield server.issue_token(scope="metrics", lifetime=3600, client=client)
        yield server.revoke(token)

    from twisted.internet.defer import inlineCallbacks

    seed(data, inlineCallbacks(build))


def last_record_offset(data: Path) -> int:
    raw = (data / JOURNAL_NAME).read_bytes()
    offset = raw.rindex(b"tok-\t") - RECORD_OVERHEAD
    assert int.from_bytes(raw[offset : offset + 4], "big") + offset + RECORD_OVERHEAD == len(raw)
    return offset


def test_flipped_bit_in_the_last_revocation_stops_the_start(tmp_path: Path) -> None:
    """
    One flipped bit in the journal's last record, an acknowledged
    revocation, stops twistd with status 1 and one line naming the offset
    and the repair command; the journal is left as it was (cutting it off
    as a torn write would bring the revoked token back to life).
    """
    data = tmp_path / "data"
    issue_and_revoke(data)
    offset = last_record_offset(data)
    path = data / JOURNAL_NAME
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0x02
    path.write_bytes(bytes(raw))
    result = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "twistd"), "--nodaemon", "--pidfile=",
         "oauthd", "--listen", f"tcp:{free_port()}:interface=127.0.0.1", "--data", str(data)],
        capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)), cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith(f"oauthd: journal {path} is damaged at byte offset {offset} (checksum mismatch)")
    assert line.endswith(f"run: oauthctl repair --data {data}")
    assert path.read_bytes() == bytes(raw)


def test_torn_tail_is_kept_aside_and_the_daemon_starts(tmp_path: Path) -> None:
    """
    A revocation cut short by the crash of its write (never acknowledged)
    is cut off at start, its bytes kept in the side file the log names.
    """
    data = tmp_path / "data"
    issue_and_revoke(data)
    offset = last_record_offset(data)
    path = data / JOURNAL_NAME
    torn = path.read_bytes()[offset:-5]
    os.truncate(path, len(path.read_bytes()) - 5)
    daemon = Daemon(data)
    try:
        side = data / f"{JOURNAL_NAME}.torn-at-{offset}"
        assert side.read_bytes() == torn
        assert str(side) in daemon.output()
    finally:
        assert daemon.stop() == 0
