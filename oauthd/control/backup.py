# -*- test-case-name: tests.test_backup -*-
"""
The responders to C{oauthctl backup}: a copy of the daemon's data, fixed at
one point and read a page at a time (L{oauthd.control.wire.backup}).

The journal is compacted first and the copy is that compacted file as it
is when the compaction completes: every change acknowledged before the
backup began, at one point of the committed state. Beside it go the data
directory's other files (the audit trail) as they are just after. Reading
them runs off the reactor; the descriptors are held until the backup ends.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from attrs import define

from oauthd.control import wire
from oauthd.control.session import AdminSession, Responders
from oauthd.control.wire.backup import BACKUP_PAGE, EndBackup, ReadBackup, StartBackup
from oauthd.eventlog import JOURNAL_NAME, JournalImage, data_files


@define(eq=False)
class Backup:
    """
    One connection's fixed copy: its files by name, the journal first. Its
    descriptors close once it is released and no read of it runs.
    """

    number: int
    files: Mapping[str, JournalImage]
    reading: int = 0
    released: bool = False

    def release(self) -> None:
        self.released = True
        if not self.reading:
            for image in self.files.values():
                image.close()

    def listing(self) -> str:
        return json.dumps([[name, image.size] for name, image in self.files.items()])


class BackupResponders(Responders):
    """
    Starting, reading and ending a backup.
    """

    def __init__(self, session: AdminSession) -> None:
        super().__init__(session)
        self._backup: Backup | None = None
        self._started = 0
        self._closed = False
        session.on_close.append(self._close)

    def _close(self) -> None:
        self._closed = True
        self._release()

    def _release(self) -> None:
        backup, self._backup = self._backup, None
        if backup is not None:
            backup.release()

    @StartBackup.responder
    async def start_backup(self) -> dict[str, object]:
        self._release()

        async def work() -> dict[str, JournalImage]:
            # The trail's files first, their descriptors held: retention may
            # anchor the trail later and remove them, and the journal taken
            # next then says the trail begins no earlier than the copy does.
            try:
                others = await self.ctx.off_reactor(lambda: data_files(self.ctx.config.data))
            except OSError as e:
                raise wire.StorageError(f"cannot read the data directory: {e}") from None
            try:
                journal = await self.session.store.compacted_image()
            except BaseException:
                for image in others.values():
                    image.close()
                raise
            return {JOURNAL_NAME: journal, **others}

        files = await self._change("data.backup", {}, work())
        self._started += 1
        backup = Backup(self._started, files)
        if self._closed:
            backup.release()
            raise wire.Abandoned("the connection was lost")
        self._backup = backup
        await self._audited(
            "data.backup", "ok", journal_bytes=files[JOURNAL_NAME].size, files=len(files),
            bytes=sum(image.size for image in files.values()),
        )
        return {"backup": backup.number, "files": backup.listing()}

    @ReadBackup.responder
    async def read_backup(self, backup: int, file: str, page: int) -> dict[str, object]:
        current = self._backup
        if current is None or current.number != backup:
            raise wire.NotFound(f"no backup {backup} on this connection; start one")
        image = current.files.get(file)
        if image is None:
            raise wire.NotFound(f"backup {backup} has no file {file!r}")
        if page < 0:
            raise wire.InvalidValue("page must be 0 or more")
        offset = page * BACKUP_PAGE
        current.reading += 1
        try:
            data: bytes = await self.ctx.off_reactor(lambda: image.read(offset, BACKUP_PAGE))
        except OSError as e:
            raise wire.StorageError(f"cannot read {file}: {e}") from None
        finally:
            current.reading -= 1
            if current.released:
                current.release()
        return {"data": data}

    @EndBackup.responder
    def end_backup(self, backup: int) -> dict[str, object]:
        if self._backup is not None and self._backup.number == backup:
            self._release()
        return {}
