# -*- test-case-name: tests.test_journal -*-
"""
The journal's file format: the header and record framing, their CRCs, the
verifying walk and resynchronisation after damage.  Pure functions over
bytes (or an mmap of the file); no I/O beyond the salt's randomness.

File format (version 1)
=======================

All integers are unsigned, big-endian.  The data directory (mode 0700) holds::

    journal.oauthd        the journal (mode 0600)
    journal.oauthd.lock   the lock file: flock(LOCK_EX) by the writer;
                          holds the holder's pid in ASCII and a newline
    journal.oauthd.tmp    transient: a journal being created, compacted or
                          repaired; removed at open if a crash left it
    journal.oauthd.torn-at-OFFSET[.N]
                          the bytes of a torn tail cut off at byte OFFSET

C{journal.oauthd} is a 24-byte header followed by zero or more records::

    header  = magic[8] version:u32 salt[8] header_crc:u32
      magic      = b"OAUTHDJL"
      version    = 1
      salt       = 8 random bytes, chosen when the file is written
      header_crc = crc32(magic || version || salt)
    record  = length:u32 crc:u32 payload[length]
      length     = len(payload), at most 1 MiB (1048576)
      crc        = crc32(salt || length field (4 bytes) || payload)

C{crc32} is zlib's CRC-32 (the ISO-HDLC / IEEE 802.3 polynomial, as in
C{zlib.crc32} and C{binascii.crc32}), computed as one CRC over the
concatenation, starting from 0.  Records are in append order; a reader
applies them first to last.

Why CRC-32: the threats are torn writes, zero-filled or stale blocks after
a crash, and media bit rot, not an adversary (anyone who can write the 0600
file already owns the daemon).  CRC-32 detects every burst error up to 32
bits and misses random damage with probability 2**-32 per record; it is in
the standard library, runs at GB/s and any tool can compute it.  Covering
the length field means a damaged length cannot verify, and a run of zero
bytes is not a valid empty record.  Covering the per-file salt means a frame
that happens to sit inside a payload (a client name crafted to look like a
record, or a copy of another journal) never verifies, so resynchronisation
after damage cannot be steered into a forged record.

Recovery at open
================

Records are verified from the start.  At the first record that does not
verify (incomplete header, length over the cap, record running past the end
of the file, or wrong checksum) the rest of the file is scanned byte by
byte for any offset at which a whole record verifies.  If one does, the
damage is in the middle of the file.  If none does, the damage is a torn
tail left by an interrupted write only if it looks like one
(L{could_be_torn}: too short for a frame header, a record running past the
end of the file, or zeros from inside the record to the end); then its
bytes are saved to a side file, the file is truncated there and a warning
names the bytes dropped and the side file.  Otherwise (a whole record that
does not verify: a flipped bit in the last, acknowledged record) it is
damage too, and L{FileJournal.open} raises L{JournalCorrupt} naming the
file, the offset and the way out (C{oauthctl repair --data DIR}, which
calls L{repair}).

Compaction writes C{journal.oauthd.tmp}, fsyncs it, renames it over
C{journal.oauthd} and fsyncs the directory, so a crash at any instant
leaves either the old file or the new one, whole.
"""

from __future__ import annotations

import mmap
import os
import re
import struct
import zlib
from collections.abc import Iterable, Iterator, Sequence
from itertools import repeat

from oauthd.eventlog.errors import JournalCorrupt

__all__ = [
    "FORMAT_VERSION",
    "HEADER_SIZE",
    "JOURNAL_NAME",
    "LOCK_NAME",
    "MAGIC",
    "MAX_PAYLOAD",
    "RECORD_OVERHEAD",
    "TEMP_NAME",
    "TORN_INFIX",
    "check_payload",
    "check_record",
    "could_be_torn",
    "decode_header",
    "encode_header",
    "encode_new_journal",
    "encode_records",
    "new_header",
    "record_bytes",
    "resynchronise",
    "walk_verified",
]

JOURNAL_NAME = "journal.oauthd"
LOCK_NAME = "journal.oauthd.lock"
TEMP_NAME = "journal.oauthd.tmp"
TORN_INFIX = ".torn-at-"

MAGIC = b"OAUTHDJL"
FORMAT_VERSION = 1
MAX_PAYLOAD = 1 << 20

_HEADER_BODY = struct.Struct(">8sI8s")
_U32 = struct.Struct(">I")
_FRAME = struct.Struct(">II")
HEADER_SIZE = _HEADER_BODY.size + _U32.size
RECORD_OVERHEAD = _FRAME.size

_NONZERO = re.compile(rb"[^\x00]")


def check_payload(payload: object) -> bytes:
    """
    Check that C{payload} can be appended, and return it.

    @raise TypeError: it is not C{bytes}.
    @raise ValueError: it is longer than L{MAX_PAYLOAD}.
    """
    if not isinstance(payload, bytes):
        raise TypeError(f"journal payloads are bytes, not {type(payload).__name__}")
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(
            f"journal payload of {len(payload)} bytes exceeds the"
            f" {MAX_PAYLOAD}-byte cap"
        )
    return payload


def record_bytes(payloads: Iterable[bytes]) -> int:
    """
    How many bytes C{payloads} take as records.
    """
    held = payloads if isinstance(payloads, (list, tuple)) else list(payloads)
    return RECORD_OVERHEAD * len(held) + sum(map(len, held))


# ---------------------------------------------------------------------------
# Encoding


def encode_header(salt: bytes) -> bytes:
    body = _HEADER_BODY.pack(MAGIC, FORMAT_VERSION, salt)
    return body + _U32.pack(zlib.crc32(body))


def encode_records(salt_crc: int, payloads: Iterable[bytes]) -> bytes:
    """
    Frame C{payloads} as records of a file whose salt has CRC C{salt_crc}.
    """
    parts: list[bytes] = []
    for payload in payloads:
        length = _U32.pack(len(payload))
        crc = zlib.crc32(payload, zlib.crc32(length, salt_crc))
        parts += (length, _U32.pack(crc), payload)
    return b"".join(parts)


def new_header() -> tuple[bytes, int]:
    """
    The header of a new journal file, with a fresh random salt, and the CRC
    of that salt (the seed of the file's record CRCs).
    """
    salt = os.urandom(8)
    return encode_header(salt), zlib.crc32(salt)


def encode_new_journal(batches: Iterable[Sequence[bytes]]) -> Iterator[bytes]:
    """
    The bytes of a new journal file holding the payloads of C{batches}: the
    header, then one chunk per batch, so a caller writes a big file without
    holding all of it.
    """
    header, salt_crc = new_header()
    yield header
    for batch in batches:
        yield encode_records(salt_crc, batch)


# ---------------------------------------------------------------------------
# Verification


def decode_header(buf: bytes | mmap.mmap, path: str) -> tuple[int, bool]:
    """
    Check the header of the journal in C{buf}, which callers have made sure
    is at least L{HEADER_SIZE} bytes long (mmap refuses an empty file).

    @return: the CRC of the file's salt (the seed of its record CRCs) and
        whether the header checksum verified.
    @raise JournalCorrupt: the file is not a journal, or has a format version
        this code does not read.
    """
    magic, version, salt = _HEADER_BODY.unpack_from(buf, 0)
    if magic != MAGIC:
        raise JournalCorrupt(
            f"{path} is not an oauthd journal (magic {magic!r}, expected"
            f" {MAGIC!r} at byte offset 0)",
            path,
            0,
        )
    if version != FORMAT_VERSION:
        raise JournalCorrupt(
            f"{path} has journal format version {version}; this oauthd reads"
            f" only version {FORMAT_VERSION}",
            path,
            8,
        )
    (header_crc,) = _U32.unpack_from(buf, _HEADER_BODY.size)
    intact = zlib.crc32(buf[: _HEADER_BODY.size]) == header_crc
    return zlib.crc32(salt), intact


def check_record(
    buf: bytes | mmap.mmap, offset: int, end: int, salt_crc: int
) -> tuple[int, str | None]:
    """
    Verify the record at C{offset}.

    @return: C{(payload length, None)} if a whole record verifies there,
        else C{(0, reason)}.
    """
    if offset + RECORD_OVERHEAD > end:
        return 0, "incomplete record header"
    length, crc = _FRAME.unpack_from(buf, offset)
    if length > MAX_PAYLOAD:
        return 0, f"record length {length} exceeds the {MAX_PAYLOAD}-byte cap"
    start = offset + RECORD_OVERHEAD
    if start + length > end:
        return 0, f"record of {length} bytes runs past the end of the file"
    seed = zlib.crc32(buf[offset : offset + 4], salt_crc)
    if zlib.crc32(buf[start : start + length], seed) != crc:
        return 0, "checksum mismatch"
    return length, None


def resynchronise(
    buf: bytes | mmap.mmap, start: int, end: int, salt_crc: int
) -> int | None:
    """
    Find the first offset at or after C{start} where a whole record verifies.
    """
    last = end - RECORD_OVERHEAD
    unpack = _FRAME.unpack_from
    # Eight zero bytes are a valid (empty) record only if this salt happens
    # to make crc32(salt || 0000) zero; otherwise a run of zeros (what a
    # power cut leaves at the end of a file) is skipped in one search.
    zeros_verify = zlib.crc32(bytes(4), salt_crc) == 0
    offset = start
    while offset <= last:
        length, crc = unpack(buf, offset)
        if length == 0 and crc == 0 and not zeros_verify:
            nonzero = _NONZERO.search(buf, offset, end)
            offset = max(offset + 1, (end if nonzero is None else nonzero.start()) - 7)
            continue
        if (
            length <= MAX_PAYLOAD
            and offset + RECORD_OVERHEAD + length <= end
            and check_record(buf, offset, end, salt_crc)[1] is None
        ):
            return offset
        offset += 1
    return None


def could_be_torn(buf: bytes | mmap.mmap, offset: int, end: int) -> bool:
    """
    Whether the bytes from C{offset}, where a record does not verify and
    after which none does, to C{end} can be what an interrupted append
    left: fewer bytes than a frame header, a record running past the end of
    the file, or a record that is zeros from some point inside it through
    to the end (blocks the write never filled).  Anything else (a whole
    record that does not verify, a length over the cap) is damage, and may
    be an acknowledged record.
    """
    if offset + RECORD_OVERHEAD > end:
        return True
    length: int = _FRAME.unpack_from(buf, offset)[0]
    if length > MAX_PAYLOAD:
        return False
    record_end = offset + RECORD_OVERHEAD + length
    return record_end > end or _zeros_from(buf, offset, end) < record_end


def _zeros_from(buf: bytes | mmap.mmap, start: int, end: int) -> int:
    """
    Where the run of zero bytes that ends C{buf[start:end]} begins (C{end}
    if its last byte is not zero); searched from the end a block at a time.
    """
    stop = end
    while stop > start:
        low = max(start, stop - 65536)
        kept = len(buf[low:stop].rstrip(b"\x00"))
        if kept:
            return low + kept
        stop = low
    return start


def walk_verified(
    buf: bytes | mmap.mmap, start: int, end: int, salt_crc: int
) -> tuple[list[bytes], int, str | None]:
    """
    Walk the records from C{start} as long as they verify.

    @return: their payloads, the offset where the walk stopped, and why the
        record there does not verify (C{None} if the walk reached C{end}).
    """
    # The loop inlines check_record's happy path: at start-up it runs once
    # per record, a million times for a big journal, and the payloads it
    # collects are what replay() gives, so the file is walked only once.
    payloads: list[bytes] = []
    keep = payloads.append
    unpack = _FRAME.unpack_from
    crc32 = zlib.crc32
    # The CRC of salt || length field, by length: records of a kind have
    # few distinct lengths, so this saves a slice and a CRC call per record.
    seeds: dict[int, int] = {}
    # How many records to read at once next, once three in a row have had
    # the same length (how many have, up to then).
    run = _LEAST_AT_ONCE
    previous = -1
    same = 0
    offset = start
    while offset < end:
        body = offset + RECORD_OVERHEAD
        if body > end:
            break
        length, crc = unpack(buf, offset)
        stop = body + length
        if length > MAX_PAYLOAD or stop > end:
            break
        seed = seeds.get(length)
        if seed is None:
            seed = seeds[length] = crc32(buf[offset : body - 4], salt_crc)
        payload = buf[body:stop]
        if crc32(payload, seed) != crc:
            break
        keep(payload)
        offset = stop
        if length != previous:
            previous = length
            same = 1
            continue
        if same < 3:
            same += 1
            continue
        count = min(run, (end - offset) // (RECORD_OVERHEAD + length))
        if count > 1:
            taken = _same_length_run(buf, offset, length, count, seed)
            payloads += taken
            offset += len(taken) * (RECORD_OVERHEAD + length)
            if len(taken) == count:
                run = min(run * 2, _MOST_AT_ONCE)
            else:
                run = _LEAST_AT_ONCE
                previous = -1
    else:
        return payloads, offset, None
    return payloads, offset, check_record(buf, offset, end, salt_crc)[1]


_LEAST_AT_ONCE = 4
_MOST_AT_ONCE = 1024
"""
The fewest and the most records L{walk_verified} reads at once (their
payloads are built before they are checked).
"""


def _same_length_run(
    buf: bytes | mmap.mmap, offset: int, length: int, count: int, seed: int
) -> list[bytes]:
    """
    The payloads of the records at C{offset} that verify as one of a run of
    C{count} records of C{length} bytes each (which fit before the end):
    read together, each checked as L{walk_verified} checks it, and cut at
    the first that is not of that length or does not verify.
    """
    # (struct keeps the layouts it has compiled.)
    fields = struct.unpack_from(">" + f"II{length}s" * count, buf, offset)
    lengths = fields[0::3]
    if lengths.count(length) != count:
        # Up to the first record of another length.
        count = next(index for index, size in enumerate(lengths) if size != length)
    crcs = list(fields[1 : 3 * count : 3])
    payloads = list(fields[2 : 3 * count : 3])
    del fields, lengths  # before more is built: less for the allocator to keep
    computed = list(map(zlib.crc32, payloads, repeat(seed)))
    if computed != crcs:
        # Up to the first that does not verify.
        count = next(index for index, (crc, mine) in enumerate(zip(crcs, computed)) if crc != mine)
        del payloads[count:]
    return payloads
