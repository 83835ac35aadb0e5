"""
The signing keys' life: made at first start, rotated by an admin or on a
schedule, listed (L{oauthd.state.keys} says how a key's state follows from
the clock).

A rotation adds a key per algorithm; it is published at once and signs from
C{key_publish_delay} seconds later (at once with C{now=True}), when the key
it replaces is retired.
"""

from __future__ import annotations

from attrs import frozen

from oauthd.protocol.context import Context
from oauthd.protocol.errors import InvalidValue
from oauthd.protocol.signing import ALGORITHMS, generate
from oauthd.state.decision import AuditEvent, Decision, audit
from oauthd.state.keys import NEXT, SIGNING, KeyAdded, SigningKey


@frozen
class KeyRow:
    """
    A key as C{oauthctl keys ls} shows it: no key material.

    @ivar leaves_at: when it leaves the JWKS; 0 while not retired.
    """

    kid: str
    alg: str
    created: int
    signs_from: int
    state: str
    leaves_at: int


def listing(ctx: Context) -> list[KeyRow]:
    """
    Every published key, oldest first.
    """
    now = ctx.now()
    keys = ctx.state.keys
    return [KeyRow(key.kid, key.alg, key.created, key.signs_from, keys.state(key, now),
                   keys.leaves_at(key) or 0)
            for key in keys.published(now)]


def _added(by: str, made: list[SigningKey]) -> Decision[list[SigningKey]]:
    """
    The decision to add the keys C{made}, each audited as C{key.added} (kid,
    alg, signs_from, and C{by}: start, admin or schedule).
    """
    events: list[AuditEvent] = [audit("key.added", "ok", kid=key.kid, alg=key.alg,
                                      signs_from=key.signs_from, by=by) for key in made]
    return Decision(made, records=[KeyAdded(key) for key in made], audit=events)


async def _made_off_reactor(
    ctx: Context, algs: tuple[str, ...], signs_from: int, by: str,
) -> Decision[list[SigningKey]]:
    """
    L{_added} for keys made where they do not hold up the reactor (an RSA
    key takes tens of milliseconds): C{ctx.off_reactor}.
    """
    now = ctx.now()
    made: list[SigningKey] = await ctx.off_reactor(
        lambda: [generate(alg, now, signs_from) for alg in algs])
    return _added(by, made)


def first_keys(ctx: Context) -> Decision[list[SigningKey]] | None:
    """
    A key for each algorithm that has none signing or about to (first
    start, or an algorithm added since), signing at once; C{None} if every
    algorithm has one.
    """
    now = ctx.now()
    keys = ctx.state.keys
    missing = tuple(alg for alg in ALGORITHMS
                    if not any(key.alg == alg and keys.state(key, now) in (NEXT, SIGNING)
                               for key in keys.all()))
    # Made on the reactor: only at start, before any socket is read.
    return _added("start", [generate(alg, now, now) for alg in missing]) if missing else None


async def rotate(ctx: Context, alg: str = "", now: bool = False, by: str = "admin") -> Decision[list[SigningKey]]:
    """
    Add a new key for C{alg} (every algorithm if C{""}), signing after the
    publish delay, or at once if C{now}.

    @raise InvalidValue: if C{alg} is not one the server signs with.
    """
    if alg and alg not in ALGORITHMS:
        raise InvalidValue(f"alg must be one of {', '.join(ALGORITHMS)}")
    delay = 0 if now else ctx.config.key_publish_delay
    return await _made_off_reactor(ctx, (alg,) if alg else ALGORITHMS, ctx.now() + delay, by)


async def scheduled(ctx: Context) -> Decision[list[SigningKey]] | None:
    """
    The rotation C{key_rotation_days} asks for now, if any: of each
    algorithm whose newest key is that old.
    """
    days = ctx.config.key_rotation_days
    if not days:
        return None
    now = ctx.now()
    newest: dict[str, int] = {}
    for key in ctx.state.keys.all():
        newest[key.alg] = max(newest.get(key.alg, 0), key.created)
    due = tuple(alg for alg in ALGORITHMS if alg in newest and newest[alg] + days * 86400 <= now)
    if not due:
        return None
    return await _made_off_reactor(ctx, due, now + ctx.config.key_publish_delay, "schedule")
