"""
The device authorization grant's state (RFC 8628): device codes, their
record and its codec, and the table that holds the live ones.

A device code is one record, written whole each time it changes (started,
polled, approved, denied, redeemed); the latest one written wins, so
replaying the journal or a snapshot rebuilds it::

    device   {device code fields}   DevicePut   a device code as it now is

The device code and the user code are kept only as SHA-256 hex digests
(C{key}, C{user_key}). A code that expired is dropped from memory when the
table has doubled since it was last pruned, and a snapshot leaves it out.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping

import attrs
from attrs import frozen

PENDING = "pending"
APPROVED = "approved"
DENIED = "denied"
REDEEMED = "redeemed"
STATUSES = frozenset({PENDING, APPROVED, DENIED, REDEEMED})

_PRUNE_FLOOR = 64


@frozen
class DeviceCode:
    """
    A device authorization request (RFC 8628 section 3.2).

    @ivar key: the SHA-256 hex digest of the device code.
    @ivar user_key: the SHA-256 hex digest of the normalised user code.
    @ivar grant: the grant id the tokens issued from it carry.
    @ivar interval: seconds the device must wait between polls (grows by
        five with each C{slow_down}).
    @ivar polled_at: when the device last polled (0: never).
    @ivar status: L{PENDING}, L{APPROVED}, L{DENIED} or L{REDEEMED}.
    @ivar user: who approved or denied it (C{""} while pending).
    @ivar auth_time: when that user logged in.
    """

    key: str
    user_key: str
    client_id: str
    scope: str
    grant: str
    issued_at: int
    lifetime: int
    interval: int
    polled_at: int = 0
    status: str = PENDING
    user: str = ""
    auth_time: int = 0

    def live(self, now: float) -> bool:
        return now < self.issued_at + self.lifetime


@frozen
class DevicePut:
    code: DeviceCode


_FIELDS = tuple(field.name for field in attrs.fields(DeviceCode))
_INTS = frozenset({"issued_at", "lifetime", "interval", "polled_at", "auth_time"})
TAG = "device"


def encode(record: DevicePut) -> str:
    fields = {name: getattr(record.code, name) for name in _FIELDS}
    return TAG + "\t" + json.dumps(fields, separators=(",", ":"), ensure_ascii=False)


def decode(fields: list[str]) -> DevicePut:
    """
    The record of a payload's fields (its tag first).

    @raise ValueError: if they are malformed.
    """
    if len(fields) != 2:
        raise ValueError(f"malformed device record: it has {len(fields)} fields, not 2")
    try:
        value = json.loads(fields[1])
    except ValueError:
        raise ValueError("malformed device record: not JSON") from None
    if not isinstance(value, dict) or set(value) != set(_FIELDS):
        raise ValueError(f"malformed device record: it does not hold exactly {', '.join(_FIELDS)}")
    for name in _FIELDS:
        wanted = int if name in _INTS else str
        if type(value[name]) is not wanted:
            raise ValueError(f"malformed device record: its {name} is not {wanted.__name__}")
    if value["status"] not in STATUSES:
        raise ValueError("malformed device record: unknown status")
    return DevicePut(DeviceCode(**value))


class DeviceTable:
    """
    @ivar codes: device codes not yet expired, by key.
    @ivar by_user_code: their keys, by the user code's digest.
    """

    def __init__(self) -> None:
        self.codes: dict[str, DeviceCode] = {}
        self.by_user_code: dict[str, str] = {}
        self._pruned_at = _PRUNE_FLOOR

    def __len__(self) -> int:
        return len(self.codes)

    def by_user(self, user_key: str) -> DeviceCode | None:
        key = self.by_user_code.get(user_key)
        return None if key is None else self.codes.get(key)

    def apply(self, record: DevicePut, users: Mapping[str, object], now: float) -> None:
        """
        Hold the code as the record has it, unless it expired or names a
        user that is gone.
        """
        code = record.code
        if not code.live(now) or (code.user and code.user not in users):
            self._drop(code.key)
            return
        self.codes[code.key] = code
        self.by_user_code[code.user_key] = code.key
        if len(self.codes) >= 2 * self._pruned_at:
            for key in [key for key, held in self.codes.items() if not held.live(now)]:
                self._drop(key)
            self._pruned_at = max(_PRUNE_FLOOR, len(self.codes))

    def _drop(self, key: str) -> None:
        code = self.codes.pop(key, None)
        if code is not None:
            self.by_user_code.pop(code.user_key, None)

    def snapshot(self, now: float) -> Iterator[bytes]:
        for code in list(self.codes.values()):
            if code.live(now):
                yield encode(DevicePut(code)).encode("utf-8")
