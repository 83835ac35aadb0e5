"""
Rate limits on failures: token buckets in memory, on the injected clock.

Only failures are charged. A bucket starts full (its burst); each failed
attempt takes one token; tokens come back at a steady rate. While a bucket is
empty the next failure is answered 429 with C{Retry-After}, and for secrets a
person chooses (user passwords) the attempt is refused before any check, so
an attacker learns nothing and costs no bcrypt. Secrets oauthd generates
(client secrets, tokens, app passwords) cannot be guessed, so they are always
checked: a right one succeeds whatever the bucket holds, a wrong one gets 429
instead of 401 once the bucket is empty. A successful request is never slowed
and never charged.

Memory is bounded: a bucket that has refilled is the same as no bucket and is
dropped (every L{PRUNE_EVERY} failures); past L{RateLimiter.max_entries} the least recently charged buckets
are forgotten (a forgotten bucket is a full one: the failures it counted are
forgiven, never held against someone else).

IPv6 clients are keyed by their /64 network, since one host usually owns a
whole /64 and could otherwise step through addresses.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable, Collection

from attrs import frozen

from oauthd.protocol import errors
from oauthd.protocol.errors import OAuthError, deny


@frozen
class Rule:
    """
    One kind of bucket.

    @ivar name: the bucket's namespace, also named in audit events.
    @ivar burst: failures allowed at once.
    @ivar interval: seconds for one failure to be forgiven.
    """

    name: str
    burst: int
    interval: float


LOGIN_IP = Rule("login-ip", 10, 60.0)
"""
Failed logins (client or user credentials) per IP: PhotoPrism's Login
limiter, 10 at once then 1 a minute.
"""

TOKEN_IP = Rule("token-ip", 60, 10.0)
"""
Unknown, expired or malformed tokens per IP: PhotoPrism's Auth limiter, 60 at
once then 1 every 10 s.
"""

CLIENT = Rule("client", 10, 60.0)
"""
Failed authentications per client id, from any address.
"""

USERNAME = Rule("username", 10, 60.0)
"""
Failed password logins per username, from any address: stops a guessing
attack spread over many addresses.
"""

SECOND_FACTOR_USER = Rule("2fa-user", 5, 600.0)
"""
Failed second-factor codes (TOTP or recovery) per user, from any address:
at most 5 + 86400 / 600 = 149 a day. A guess matches one of the three TOTP
codes accepted at a time (one step of drift either way) with a chance of
3 in 10**6, so someone who has the password gets in by guessing with a
chance under 149 * 3e-6, about 0.045%, a day (1.3% in 30 days); a recovery
code (80 random bits) is out of reach.
"""

SECOND_FACTOR_IP = Rule("2fa-ip", 10, 300.0)
"""
Failed second-factor codes per source address, over every user.
"""


PRUNE_EVERY = 4096
"""
Failures between two sweeps of refilled buckets (besides one whenever the
cap is passed), so idle buckets do not linger until the cap.
"""


class RateLimiter:
    """
    Token buckets keyed by rule and key (an IP, a client id, a username).

    @ivar max_entries: the most buckets held at once.
    """

    def __init__(self, now: Callable[[], float], max_entries: int = 100_000) -> None:
        self._now = now
        self.max_entries = max_entries
        # (rule name, key) -> [tokens left, when last updated]; in order of
        # the last charge, oldest first.
        self._buckets: dict[tuple[str, str], list[float]] = {}
        self._rules: dict[str, Rule] = {}
        self._charges = 0

    def __len__(self) -> int:
        return len(self._buckets)

    def _level(self, rule: Rule, key: str, now: float) -> float:
        entry = self._buckets.get((rule.name, key))
        if entry is None:
            return float(rule.burst)
        tokens, updated = entry
        return min(float(rule.burst), tokens + max(0.0, now - updated) / rule.interval)

    def retry_after(self, rule: Rule, key: str) -> int:
        """
        Seconds until C{key} may fail again under C{rule}; 0 if it may now.
        """
        now = self._now()
        level = self._level(rule, key, now)
        if level >= 1:
            return 0
        return max(1, math.ceil((1 - level) * rule.interval))

    def charge(self, rule: Rule, key: str) -> None:
        """
        Count one failure against C{key}.
        """
        now = self._now()
        level = self._level(rule, key, now)
        name = (rule.name, key)
        self._rules[rule.name] = rule
        self._buckets.pop(name, None)
        self._buckets[name] = [max(0.0, level - 1), now]
        self._charges += 1
        if len(self._buckets) > self.max_entries or self._charges % PRUNE_EVERY == 0:
            self.prune()

    def prune(self) -> int:
        """
        Drop every bucket that has refilled and, if still over
        L{max_entries}, the least recently charged; return how many went.
        """
        now = self._now()
        rules = self._rules
        before = len(self._buckets)
        for name, (tokens, updated) in list(self._buckets.items()):
            rule = rules.get(name[0])
            if rule is None or tokens + (now - updated) / rule.interval >= rule.burst:
                del self._buckets[name]
        excess = len(self._buckets) - self.max_entries * 9 // 10
        if excess > 0:
            for name in list(self._buckets)[:excess]:
                del self._buckets[name]
        return before - len(self._buckets)


def ip_key(host: str) -> str:
    """
    The rate-limit key of a client address: IPv4 as is, IPv6 by its /64
    (an IPv4-mapped IPv6 address counts as the IPv4 one).
    """
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host[:64]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def client_address(
    peer: str, forwarded_for: Collection[str], trusted: Collection[str],
) -> str:
    """
    The address a request came from. C{X-Forwarded-For} is believed only
    when the peer is a trusted proxy, and then only as far back as the chain
    of trusted proxies goes: the rightmost address that is not itself a
    trusted proxy is the client (anything further left is the client's own
    claim and could be forged).

    @param forwarded_for: the header's values, in order.
    @param trusted: the trusted proxies, as networks (C{"10.0.0.0/8"}) or
        addresses.
    """
    if not trusted or not forwarded_for or not _in_any(peer, trusted):
        return peer
    hops = [h.strip() for value in forwarded_for for h in value.split(",")]
    client = peer
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            break
        client = hop
        if not _in_any(hop, trusted):
            break
    return client


def _in_any(host: str, networks: Collection[str]) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    for network in networks:
        try:
            if address in ipaddress.ip_network(network, strict=False):
                return True
        except ValueError:
            continue
    return False


def refuse(
    limiter: RateLimiter, error: OAuthError, ip: str, charges: list[tuple[Rule, str]],
    **context: object,
) -> OAuthError:
    """
    Count a failed attempt against each bucket and return the error to
    raise: C{error}, or a 429 if a bucket was already empty.
    """
    retry = max((limiter.retry_after(rule, key) for rule, key in charges), default=0)
    if retry:
        # A caller already answered 429 is not charged: it must not be able
        # to fill the limiter with new buckets (and so push out everyone
        # else's).
        limited = errors.too_many_requests(retry)
        context = {"reason": error.description, **context}
        return deny(limited, ip=ip, limit=",".join(r.name for r, _ in charges), **context)
    for rule, key in charges:
        limiter.charge(rule, key)
    return deny(error, ip=ip, **context)


def guard(limiter: RateLimiter, charges: list[tuple[Rule, str]], ip: str, **context: object) -> None:
    """
    Refuse at once, before any check, while a bucket is empty: for secrets
    a person chooses, whose check must not run then.
    """
    retry = max(limiter.retry_after(rule, key) for rule, key in charges)
    if retry:
        raise deny(errors.too_many_requests(retry), ip=ip,
                   limit=",".join(r.name for r, _ in charges), **context)
