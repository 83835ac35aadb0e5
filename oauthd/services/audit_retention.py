"""
The audit trail's retention: which rotated files go (by total size and age,
L{oauthd.services.audit_files.expired}), and removing them only once where
the trail then begins is durable in the journal (its C{anchor}), so that
C{oauthctl audit verify} tells files retention removed from files removed
by hand.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from oauthd.eventlog.writer_pool import WriterPool
from oauthd.services.audit_files import anchor_after, expired

if TYPE_CHECKING:
    from oauthd.services.audit import TrailLimits

log = Logger()

Due = tuple[list[tuple[str, str]], "tuple[int, str] | None"]


class Retention:
    """
    Removes a trail's old rotated files, one pass at a time.

    @ivar anchor: makes durable where the trail begins (the sequence number
        of its oldest kept line and the chain value that line continues)
        before the files before it are removed; C{None} (tests, tools):
        they are removed without.
    """

    anchor: Callable[[int, str], Deferred[Any]] | None = None

    def __init__(self, directory: str, limits: TrailLimits, writer: WriterPool, clock: IReactorTime) -> None:
        self._directory = directory
        self.limits = limits
        self._writer = writer
        self._clock = clock
        self._running = False

    def run(self) -> Deferred[list[tuple[str, str]]] | None:
        """
        Find the files due to go (on the trail's writer thread, after any
        write), anchor the trail after them, then remove them.

        @return: fires with the names removed and why; C{None} if a pass is
            running already.
        """
        if self._running:
            return None
        self._running = True

        def remove(due: Due) -> Any:
            names, begins = due
            if not names:
                return []
            if begins is None:
                log.error("audit trail {directory}: retention keeps {name}: its last line cannot be"
                          " read, so where the trail would begin is unknown (see oauthctl audit verify)",
                          directory=self._directory, name=names[-1][0])
                return []
            anchored = self.anchor(*begins) if self.anchor is not None else succeed(None)
            return anchored.addCallback(lambda _: self._writer.run(self._remove, names))

        def done(result: object) -> object:
            self._running = False
            return result

        due: Deferred[Any] = self._writer.run(self._due, self._clock.seconds())
        return due.addCallback(remove).addBoth(done)

    def _due(self, now: float) -> Due:
        limits = self.limits
        names = expired(self._directory, now, limits.keep_bytes, limits.keep_days * 86400.0)
        return names, anchor_after(os.path.join(self._directory, names[-1][0])) if names else None

    def _remove(self, names: list[tuple[str, str]]) -> list[tuple[str, str]]:
        for name, _ in names:
            os.unlink(os.path.join(self._directory, name))
        return names
