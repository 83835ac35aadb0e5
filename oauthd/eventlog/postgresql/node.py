"""
A node's id in the shared log: from the configuration, or made at the first
start and kept in the data directory, so a restarted node is the same node
(its row in the nodes table, its applied position).  Two live nodes with
one id are refused (L{claim_node}): their heartbeats and cursors would be
one row, and compaction would trust the wrong one.
"""

from __future__ import annotations

import os
import uuid
from typing import TYPE_CHECKING, Any

from oauthd.eventlog.errors import JournalError, NodeInUse
from oauthd.eventlog.files import UnsafeFile, open_private, write_new_file

if TYPE_CHECKING:
    import psycopg

__all__ = ["NODE_ID_FILE", "LIVE_SECONDS", "claim_node", "node_id", "take_node_lock"]

NODE_ID_FILE = "node-id"

LIVE_SECONDS = 10.0
"""
A node whose row was touched this recently is live: its heartbeat runs every
second while it reaches PostgreSQL.
"""

NODE_LOCK = 28514
"""
The advisory lock class held, per node id, by the session of the node that
has it (released by PostgreSQL when that session ends, a crash included).
"""


def _valid(value: str) -> bool:
    return 0 < len(value) <= 64 and all(c.isascii() and (c.isalnum() or c in "._-") for c in value)


def node_id(data: str, configured: str = "") -> str:
    """
    This node's id: C{configured} if given, else the one kept in
    C{data}/node-id (made now, once, if there is none).

    @raise JournalError: the file cannot be read or made, or holds no id.
    """
    if configured:
        return configured
    path = os.path.join(data, NODE_ID_FILE)
    try:
        fd = open_private(path, os.O_RDONLY)
    except FileNotFoundError:
        made = uuid.uuid4().hex
        try:
            write_new_file(data, NODE_ID_FILE, NODE_ID_FILE + ".new", [made.encode() + b"\n"], os.fsync)
        except OSError as e:
            raise JournalError(f"cannot keep this node's id in {path}: {e.strerror or e}") from None
        return made
    except UnsafeFile as e:
        raise JournalError(str(e)) from None
    except OSError as e:
        raise JournalError(f"cannot read this node's id from {path}: {e.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        kept = f.read(200).decode("ascii", "replace").strip()
    if not _valid(kept):
        raise JournalError(f"{path} holds no node id (at most 64 letters, digits, '.', '_' or '-'):"
                           " fix it, or remove it to make a new one")
    return kept


def claim_node(connection: psycopg.Connection[tuple[Any, ...]], node: str, live: float = LIVE_SECONDS) -> bool:
    """
    Take C{node}'s lock on C{connection}'s session.  Held by another
    session, it is refused if that node's row was touched less than C{live}
    seconds ago; an older row is a session PostgreSQL has not noticed is
    gone (a node cut off without a goodbye), so the start goes on without
    the lock (the heartbeat takes it later).

    @return: whether the lock is held now.
    @raise NodeInUse: a live node has this id.
    """
    if take_node_lock(connection, node):
        return True
    seen = connection.execute(
        "SELECT extract(epoch FROM now() - seen) FROM oauthd_nodes WHERE id = %s", (node,)).fetchone()
    if seen is not None and float(seen[0]) < live:
        raise NodeInUse(
            f"node id {node!r} is in use by a live node (seen {max(float(seen[0]), 0):.1f} s ago):"
            " give each node its own node_id (a copied data directory carries its node-id file:"
            " remove it there)"
        )
    return False


def take_node_lock(connection: psycopg.Connection[tuple[Any, ...]], node: str) -> bool:
    """
    Try to take C{node}'s lock on C{connection}'s session (again, after a
    reconnection); whether it is held now.
    """
    row = connection.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))", (NODE_LOCK, node)).fetchone()
    return bool(row is not None and row[0])
