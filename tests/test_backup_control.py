"""
Backups inside the daemon: the store's compacted image holds every change
acknowledged before it was asked for, even with a compaction already
running and changes still arriving; the control commands page it out, with
the data directory's other files, and release it at the end or on a
hang-up.
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.protocols import amp
from twisted.python.failure import Failure
from twisted.test import iosim

from oauthd.control.backup import BackupResponders
from oauthd.control.peer import PeerCredentials
from oauthd.control.server import ControlFactory
from oauthd.control.wire import BACKUP_PAGE, EndBackup, NotFound, InvalidValue, ReadBackup, StartBackup
from oauthd.eventlog import FileJournal
from oauthd.state.model import State, replay
from oauthd.testing import InlinePool, InlineReactor, MemoryServer, SteppingPool, config_for_tests
from tests.helpers import START

ADMIN = PeerCredentials(pid=777, uid=4242, gid=4242)


def fired(d: Deferred[Any]) -> Any:
    results: list[Any] = []
    d.addBoth(results.append)
    assert results, "not fired"
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]


def payloads_of(image: bytes) -> list[bytes]:
    """
    The payloads of a journal file's bytes (docs/journal.md's reader).
    """
    salt = image[12:20]
    assert image[:8] == b"OAUTHDJL" and zlib.crc32(image[:20]) == int.from_bytes(image[20:24], "big")
    offset, payloads = 24, []
    while offset < len(image):
        length = int.from_bytes(image[offset:offset + 4], "big")
        payload = image[offset + 8:offset + 8 + length]
        assert zlib.crc32(salt + image[offset:offset + 4] + payload) == int.from_bytes(image[offset + 4:offset + 8], "big")
        payloads.append(payload)
        offset += 8 + length
    return payloads


def test_image_waits_for_the_running_compaction_and_holds_every_acknowledged_token(tmp_path: Path) -> None:
    """
    A backup asked for while a compaction runs takes that compaction's
    file when it completes: tokens acknowledged before, and during it, are
    all in the image, which replays into a state where they are live.
    """
    pool = SteppingPool()
    journal = FileJournal.open(str(tmp_path), InlineReactor(), pool=pool, slice_records=1)  # type: ignore[arg-type]
    server = MemoryServer.build(config_for_tests(data=str(tmp_path)), log=journal)
    added = server.add_client("app", scope="metrics", max_tokens=-1)
    pool.run_all()
    client, _ = fired(added)
    issued = [server.issue_token(scope="metrics", lifetime=3600, client=client) for _ in range(5)]
    pool.run_all()
    acknowledged = [fired(d)[1] for d in issued]
    compaction = server.store.compact()
    during = server.issue_token(scope="metrics", lifetime=3600, client=client)
    while not during.called:
        pool.run_one()
    assert not compaction.called, "the compaction finished before the token was acknowledged"
    acknowledged.append(fired(during)[1])
    image = server.store.compacted_image()
    assert not image.called
    later = server.issue_token(scope="metrics", lifetime=3600, client=client)
    pool.run_all()
    fired(compaction)
    fired(later)
    taken = fired(image)
    try:
        data = taken.read(0, taken.size + 100)
    finally:
        taken.close()
    assert len(data) == taken.size
    state = State()
    replay(state, payloads_of(data), START)
    assert all(state.token(token.key, START) is not None for token in acknowledged)
    assert state.clients.keys() == {client.id}
    closing = journal.close()
    pool.run_all()
    fired(closing)


class Backups:
    """
    A daemon's control factory over a file journal in a data directory,
    and one connection to it.
    """

    def __init__(self, data: Path, pool: InlinePool | SteppingPool | None = None) -> None:
        self.pool = pool or InlinePool()
        self.journal = FileJournal.open(str(data), InlineReactor(), pool=self.pool)  # type: ignore[arg-type]
        self.server = MemoryServer.build(config_for_tests(data=str(data)), log=self.journal)
        added = self.server.add_client("app", scope="metrics", max_tokens=-1)
        if isinstance(self.pool, SteppingPool):
            self.pool.run_all()
        fired(added)
        factory = ControlFactory(self.server.ctx.clock, self.server.store, self.server.ctx, allowed_uids=[ADMIN.uid],
                                 peer_credentials=lambda transport: ADMIN)
        self.client, self.protocol, self.pump = iosim.connectedServerAndClient(
            lambda: factory.buildProtocol(None), amp.AMP)

    def ask(self, command: type[amp.Command], **arguments: Any) -> Any:
        results: list[Any] = []
        self.client.callRemote(command, **arguments).addBoth(results.append)
        self.pump.flush()
        while not results and isinstance(self.pool, SteppingPool) and self.pool.jobs:
            self.pool.run_one()
            self.pump.flush()
        (result,) = results
        if isinstance(result, Failure):
            result.raiseException()
        return result

    def fails(self, command: type[amp.Command], **arguments: Any) -> BaseException:
        try:
            self.ask(command, **arguments)
        except Exception as e:
            return e
        raise AssertionError("it did not fail")

    def read(self, backup: int, name: str, size: int) -> bytes:
        pages = [self.ask(ReadBackup, backup=backup, file=name, page=page)["data"]
                 for page in range(-(-size // BACKUP_PAGE) + 1)]
        assert pages[-1] == b""
        return b"".join(pages)

    def responders(self) -> BackupResponders:
        [group] = [g for g in self.protocol._responders if isinstance(g, BackupResponders)]
        return group


def test_backup_pages_out_the_journal_and_the_other_files(tmp_path: Path) -> None:
    """
    The journal (compacted) first, then every other regular file of the
    data directory (not the journal's lock and side files, a symbolic link
    or a FIFO), paged in 64,000-byte pages; a bad backup number, file or
    page is refused; the end releases the files.
    """
    data = tmp_path / "data"
    backups = Backups(data)
    trail = os.urandom(2 * BACKUP_PAGE + 1234)
    (data / "audit.log").write_bytes(trail)
    (data / "audit.log.0000000000000001").write_bytes(b"older\n")
    (data / "journal.oauthd.torn-at-24").write_bytes(b"torn")
    os.symlink("/etc/passwd", data / "linked")
    os.mkfifo(data / "fifo")
    started = backups.ask(StartBackup)
    files = json.loads(started["files"])
    assert [name for name, _ in files] == ["journal.oauthd", "audit.log", "audit.log.0000000000000001"]
    sizes = dict(files)
    journal = backups.read(started["backup"], "journal.oauthd", sizes["journal.oauthd"])
    assert journal == (data / "journal.oauthd").read_bytes()
    assert len(payloads_of(journal)) == backups.journal.record_count
    assert backups.read(started["backup"], "audit.log", sizes["audit.log"]) == trail
    number = started["backup"]
    assert isinstance(backups.fails(ReadBackup, backup=number + 1, file="audit.log", page=0), NotFound)
    assert isinstance(backups.fails(ReadBackup, backup=number, file="../etc/passwd", page=0), NotFound)
    assert isinstance(backups.fails(ReadBackup, backup=number, file="audit.log", page=-1), InvalidValue)
    images = list(backups.responders()._backup.files.values())  # type: ignore[union-attr]
    backups.ask(EndBackup, backup=number)
    assert [image.fd for image in images] == [-1, -1, -1]  # type: ignore[attr-defined]
    assert isinstance(backups.fails(ReadBackup, backup=number, file="audit.log", page=0), NotFound)


def test_a_hang_up_releases_the_backup(tmp_path: Path) -> None:
    backups = Backups(tmp_path / "data")
    backups.ask(StartBackup)
    images = list(backups.responders()._backup.files.values())  # type: ignore[union-attr]
    backups.client.transport.loseConnection()
    backups.pump.flush()
    assert [image.fd for image in images] == [-1]  # type: ignore[attr-defined]


def test_the_trail_is_taken_before_the_journal_so_retention_cannot_split_them(tmp_path: Path) -> None:
    """
    The audit files are opened before the journal is compacted: retention
    that anchors the trail and removes its oldest file while the compaction
    runs leaves the backup with that file (its descriptor is held), so the
    copy's trail begins no later than the copy's journal says it does.
    """
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "audit.log.0000000000000001").write_bytes(b"oldest\n")
    (data / "audit.log").write_bytes(b"newest\n")
    pool = SteppingPool()
    backups = Backups(data, pool)
    results: list[Any] = []
    backups.client.callRemote(StartBackup).addBoth(results.append)
    backups.pump.flush()
    assert not results, "the compaction ran inline"
    (data / "audit.log.0000000000000001").unlink()
    while not results:
        pool.run_one()
        backups.pump.flush()
    files = dict(json.loads(results[0]["files"]))
    assert files.keys() == {"journal.oauthd", "audit.log", "audit.log.0000000000000001"}
    number = results[0]["backup"]
    assert backups.read(number, "audit.log.0000000000000001", files["audit.log.0000000000000001"]) == b"oldest\n"
