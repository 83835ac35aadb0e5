"""
The audit trail's files: the chain, how a reader verifies it across the
active file and the rotated ones, and which rotated files retention removes.

The active file is C{audit.log}. When it reaches its size limit it is
renamed C{audit.log.<seq>}, C{<seq>} being the sequence number of its first
line in 16 digits, so the rotated files sort oldest first by name and the
active file comes after all of them. A new file begins with an
C{audit.continue} line whose C{previous} member is the chain value of the
line before it (the last line of the file before), and whose C{file} member
names that file: the chain runs on across files, and a file whose
predecessors retention removed still verifies from its first line.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping
from json.encoder import encode_basestring_ascii

from attrs import frozen

from twisted.logger import Logger

from oauthd.eventlog.files import fsync_directory, open_private, open_to_read, write_all

TRAIL_NAME = "audit.log"
GENESIS = "0" * 64
CONTINUE = "audit.continue"
"""
The event that begins a file after a rotation.
"""

_PREFIX = TRAIL_NAME + "."

log = Logger()


def chain_of(previous: str, body: bytes) -> str:
    """
    The chain value of a line whose text without its chain member is C{body}.
    """
    return hashlib.sha256(previous.encode("ascii") + b"\n" + body).hexdigest()


_LINE = json.JSONEncoder(separators=(",", ":"))
_text = encode_basestring_ascii
"""A string as _LINE encodes it."""

_PLACED = frozenset({"seq", "time", "event", "outcome", "chain"})
"""
The members every line has in their own places: fields so named are left out.
"""

_MEMBERS: dict[str, str] = dict.fromkeys(_PLACED, "")
"""
What begins the member of each field name seen so far: C{,"name":}, or
nothing for a name left out. Field names come from the code, so few.
"""


def _member(name: str) -> str:
    member = "" if name in _PLACED else "," + _text(name) + ":"
    if len(_MEMBERS) < 1024:
        _MEMBERS[name] = member
    return member


def trail_line(
    previous: str, seq: int, time: int, event: str, outcome: str, fields: Mapping[str, object],
) -> tuple[bytes, str]:
    """
    The line of an event (with its newline) and its chain value, given the
    chain value of the line before: the JSON object of its members in
    their order (L{oauthd.services.audit}), compact and ASCII, written out
    member by member rather than built as a dict and encoded (which
    costs more for a handful of short fields).
    """
    text = '{"seq":%d,"time":%d,"event":%s,"outcome":%s' % (seq, time, _text(event), _text(outcome))
    for name, value in sorted(fields.items()):
        member = _MEMBERS.get(name)
        if member is None:
            member = _member(name)
        if member:
            text += member + (_text(value) if type(value) is str else _LINE.encode(value))
    head = text.encode("ascii")
    chain = chain_of(previous, head + b"}")
    return head + b',"chain":"' + chain.encode("ascii") + b'"}\n', chain


def split_line(line: bytes) -> tuple[bytes, str]:
    """
    A trail line's body (without its chain member) and its chain value.

    @raise ValueError: if the line does not end with a chain member.
    """
    cut = line.rindex(b',"chain":"')
    chain = line[cut + 10 :]
    if len(chain) != 66 or not chain.endswith(b'"}'):
        raise ValueError("no chain member at the end of the line")
    return line[:cut] + b"}", chain[:64].decode("ascii")


def rotated_name(first_seq: int) -> str:
    """
    The name a full active file is rotated to.
    """
    return f"{_PREFIX}{first_seq:016d}"


def rotated_files(directory: str) -> list[str]:
    """
    The names of the rotated files in C{directory}, oldest first.
    """
    names = [n for n in os.listdir(directory) if n.startswith(_PREFIX) and n[len(_PREFIX):].isdigit()]
    return sorted(names, key=lambda n: int(n[len(_PREFIX):]))


def trail_files(directory: str) -> list[str]:
    """
    The paths of the trail's files in C{directory}, in chain order.
    """
    names = rotated_files(directory)
    if os.path.lexists(os.path.join(directory, TRAIL_NAME)):
        names.append(TRAIL_NAME)
    return [os.path.join(directory, n) for n in names]


def _continued_from(line: bytes) -> str | None:
    """
    The C{previous} member of a C{audit.continue} line, else C{None}.
    """
    try:
        body = json.loads(line)
    except ValueError:
        return None
    if isinstance(body, dict) and body.get("event") == CONTINUE and isinstance(body.get("previous"), str):
        return str(body["previous"])
    return None


@frozen
class Verified:
    """
    What verifying a trail found.

    @ivar lines: lines read (up to the first that does not verify).
    @ivar broken: C{(path, line number from 1)} of the first line whose chain
        does not verify, or C{None}.
    @ivar torn: the path of the last file if it ends in a line cut short by a
        crash (the daemon cuts it off when it next starts), else C{None}.
    @ivar starts_after: the chain value the oldest kept line continues
        (L{GENESIS} if nothing was removed).
    @ivar head: the chain value of the last line verified.
    @ivar reason: why C{broken} does not verify, in words.
    @ivar last_seq: the sequence number of the last line verified.
    """

    lines: int
    broken: tuple[str, int] | None
    torn: str | None
    starts_after: str
    head: str
    reason: str = ""
    last_seq: int = 0


def leading_seq(body: bytes) -> int:
    """
    The sequence number at the start of a line (or its body), 0 if there is
    none; cheaper than parsing it.
    """
    if body.startswith(b'{"seq":'):
        digits = body[7:body.find(b",", 7)]
        if digits.isdigit():
            return int(digits)
    return 0


def verify_files(
    paths: Iterable[str], previous: str | None = None, anchor: tuple[int, str] | None = None,
    written: int = 0, written_chain: str = "",
) -> Verified:
    """
    Check the chain through the files at C{paths}, in order.

    @param previous: the chain value the first line continues; by default
        L{GENESIS}, or the C{previous} member of the first file's
        C{audit.continue} line.
    @param anchor: C{(seq, chain value)}: where the journal says the trail
        begins (L{oauthd.state.audit_anchor}). The trail must hold line
        C{seq}, continuing that chain value: a trail that begins after it
        lost its head.
    @param written: the trail must reach at least this sequence number (the
        daemon knows what it wrote): one that ends before it lost its tail.
    @param written_chain: the chain value the daemon gave line C{written}:
        lines changed before it with their chain values computed again
        (the chain is a plain hash) do not end in it.
    """
    head, starts_after, count, torn, last_seq = previous, previous, 0, None, 0
    end: tuple[str, int] | None = None

    def broken(path: str, number: int, reason: str) -> Verified:
        return Verified(count, (path, number), None, starts_after or GENESIS, head or GENESIS,
                        reason, last_seq)

    for path in paths:
        if end is not None and torn is not None:
            # Only the last file's last line is left half-written by a crash.
            return broken(*end, "the line is cut short, in a file the trail went on from")
        with os.fdopen(open_to_read(path), "rb") as f:
            number = 0
            for number, line in enumerate(f, 1):
                if not line.endswith(b"\n"):
                    torn = path
                    number -= 1
                    break
                line = line[:-1]
                if head is None:
                    head = starts_after = _continued_from(line) or GENESIS
                try:
                    body, chain = split_line(line)
                except (ValueError, UnicodeDecodeError):
                    return broken(path, number, "not a trail line (it does not end with a chain value)")
                if chain_of(head, body) != chain:
                    return broken(path, number, "its chain value does not follow from the line before it:"
                                  " this line or the one before was changed, removed or moved")
                seq = leading_seq(body)
                if anchor is not None and count == 0 and seq > anchor[0]:
                    return broken(path, number, f"the trail begins at seq {seq}, but the journal says it"
                                  f" begins at seq {anchor[0]}: its oldest lines were removed")
                if anchor is not None and seq == anchor[0] and head != anchor[1]:
                    return broken(path, number, f"seq {seq} does not continue the chain value the"
                                  " journal recorded for the start of the trail")
                if written and written_chain and seq == written and chain != written_chain:
                    return broken(path, number, f"the chain value of seq {seq} is not the one the daemon"
                                  " wrote: lines up to it were changed and their chain values computed again")
                head, last_seq = chain, seq
                count += 1
            end = (path, number + 1)
    if end is not None and anchor is not None and anchor[0] > max(last_seq, 1):
        return broken(*end, f"the trail ends at seq {last_seq}, before seq {anchor[0]}, where"
                      " the journal says it begins")
    if end is not None and last_seq < written:
        return broken(*end, f"the trail ends at seq {last_seq}, but the daemon wrote up to seq"
                      f" {written}: its last lines were removed")
    if end is None and (written or (anchor is not None and anchor[0] > 1)):
        return Verified(0, ("(no trail files)", 0), None, GENESIS, GENESIS,
                        "the trail's files are missing", 0)
    return Verified(count, None, torn, starts_after or GENESIS, head or GENESIS, "", last_seq)


def anchor_after(path: str) -> tuple[int, str] | None:
    """
    Where the trail begins once the file at C{path} and those before it are
    removed: the sequence number after its last line, and that line's chain
    value; C{None} if its last line cannot be read.
    """
    fd = open_to_read(path)
    try:
        last, _ = last_line(fd)
    finally:
        os.close(fd)
    if last is None:
        return None
    try:
        return seq_of(last) + 1, split_line(last)[1]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None


def verify_trail(
    directory: str, anchor: tuple[int, str] | None = None, written: int = 0, written_chain: str = "",
) -> Verified:
    """
    Check the chain of the whole trail in C{directory}: the rotated files
    retention kept, oldest first, then C{audit.log} (see L{verify_files}).
    With the journal's C{anchor}, this is what C{oauthctl audit verify}
    reports.
    """
    return verify_files(trail_files(directory), anchor=anchor, written=written, written_chain=written_chain)


def expired(
    directory: str, now: float, keep_bytes: int, keep_seconds: float,
) -> list[tuple[str, str]]:
    """
    The rotated files retention removes now, oldest first, each with why
    (C{"size"} or C{"age"}): the oldest while all the files together hold
    more than C{keep_bytes}, or while its last line (its modification time)
    is older than C{keep_seconds}. The active file is never removed.
    """
    names = rotated_files(directory)
    active = os.path.join(directory, TRAIL_NAME)
    # lstat: a planted link is measured (and removed) as the link it is.
    sizes = {n: os.lstat(os.path.join(directory, n)) for n in names}
    total = sum(s.st_size for s in sizes.values())
    if os.path.lexists(active):
        total += os.lstat(active).st_size
    removed = []
    for name in names:
        if total > keep_bytes:
            why = "size"
        elif sizes[name].st_mtime < now - keep_seconds:
            why = "age"
        else:
            break
        removed.append((name, why))
        total -= sizes[name].st_size
    return removed


def verify(path: str) -> tuple[int, int | None]:
    """
    Check the chain of one trail file (from its first line's C{previous}
    if it begins with C{audit.continue}).

    @return: the number of lines that verify, and the number (from 1) of the
        first line that does not (a torn last line included), or C{None}.
    """
    found = verify_files([path])
    if found.broken is not None:
        return found.lines, found.broken[1]
    if found.torn is not None:
        return found.lines, found.lines + 1
    return found.lines, None


def last_line(fd: int) -> tuple[bytes | None, int]:
    """
    The last complete line of the file open at C{fd}, and where the complete
    lines end.
    """
    size = os.fstat(fd).st_size
    start = max(0, size - 65536)
    tail = os.pread(fd, size - start, start)
    end = tail.rfind(b"\n") + 1
    lines = tail[:end].splitlines()
    return (lines[-1] if lines else None), start + end


def seq_of(line: bytes) -> int:
    seq = json.loads(split_line(line)[0])["seq"]
    if type(seq) is not int:
        raise ValueError("seq is not an integer")
    return seq


def trail_begins(directory: str) -> tuple[int, str] | None:
    """
    Where the trail in C{directory} begins if its head was removed: the
    sequence number of its oldest line and the chain value that line (an
    C{audit.continue}) continues; C{None} if it begins at seq 1 or cannot be
    read.
    """
    paths = trail_files(directory)
    if not paths:
        return None
    with os.fdopen(open_to_read(paths[0]), "rb") as f:
        line = f.readline(65536)
    previous = _continued_from(line.rstrip(b"\n"))
    try:
        seq = seq_of(line.rstrip(b"\n"))
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None
    return (seq, previous) if seq > 1 and previous is not None else None


def resume(fd: int, path: str, directory: str) -> tuple[int, str]:
    """
    The sequence number and chain value of the last line of the active
    file open at C{fd} (of the last rotated file if it is empty), cutting
    off a line left half-written by a crash.
    """
    last, end = last_line(fd)
    size = os.fstat(fd).st_size
    if end < size:
        log.warn("audit trail {path}: cut off a half-written last line ({count} bytes)",
                 path=path, count=size - end)
        os.ftruncate(fd, end)
    source = path
    older = rotated_files(directory)
    if last is None and older:
        source = os.path.join(directory, older[-1])
        older_fd = open_private(source, os.O_RDONLY)
        try:
            last, _ = last_line(older_fd)
        finally:
            os.close(older_fd)
    if last is None:
        return 0, GENESIS
    try:
        return seq_of(last), split_line(last)[1]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        # Carry on from the damaged line; verify() will point at it.
        log.error("audit trail {path}: last line unreadable ({error}); chaining on from it",
                  path=source, error=str(e))
        return 0, chain_of(GENESIS, last)


def write_lines(fd: int, data: bytes, sync: Callable[[int], None]) -> None:
    """
    Append C{data} to the file open at C{fd} (with C{O_APPEND}) and make it
    durable with C{sync}; if that fails, none of it is left in the file.
    """
    size = os.lseek(fd, 0, os.SEEK_END)
    try:
        write_all(fd, data)
        sync(fd)
    except OSError:
        # A batch half in the file would leave a torn line mid-file.
        os.ftruncate(fd, size)
        raise


def rotate(directory: str, name: str) -> int:
    """
    Rename the active file to C{name} and open a new one, returning it
    (safe to retry after a failure part way).
    """
    rotated = os.path.join(directory, name)
    active = os.path.join(directory, TRAIL_NAME)
    if not os.path.exists(rotated):
        os.rename(active, rotated)
    fd = open_private(active, os.O_RDWR | os.O_APPEND | os.O_CREAT)
    try:
        fsync_directory(directory, os.fsync)
    except OSError:
        os.close(fd)
        raise
    return fd
