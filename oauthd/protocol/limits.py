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

A username is never refused for failures from other addresses, or its owner
could be locked out by anyone: its password checks are paced instead
(L{RateLimiter.reserve}): each takes a slot of the username's bucket, and one
that finds the bucket empty waits for the next slot, for at most
L{MAX_PACE_WAIT}; beyond that it is refused. Addresses that have not failed
lately are paced apart from those that have (L{USERNAME_NEW},
L{USERNAME}), so the owner does not queue behind the guesses, and an address
the user logged in from lately is not paced at all (L{RateLimiter.knows}).

A bucket is kept as one number, the time it is full again. Memory is bounded:
a bucket that has refilled is the same as no bucket and is dropped as its
time comes (a heap keeps them in that order, so a charge costs O(log n)).
Past L{RateLimiter.max_entries}, the buckets that would refill soonest go
first: a locked bucket outlives any that are nearly full, and the failures a
forgotten bucket counted are forgiven, never held against someone else.

IPv6 clients are keyed by their /64 network, since one host usually owns a
whole /64 and could otherwise step through addresses.

Over a shared event log, each node's failures are charged on the other
nodes too (L{RateLimiter.on_charge}, L{RateLimiter.charge_shared}), so a
guesser spreading over N nodes is not allowed N times the limits. Only a
keyed digest of each key travels (L{RateLimiter.digest}); the buckets are
then kept by that digest.

The rules below are the defaults; each one's burst and interval is a
configuration key (L{oauthd.config.RULE_KEYS}), as are L{MAX_PACE_WAIT},
L{KNOWN_FOR} and the limiter's size. The limiter holds the values in force
(L{RateLimiter.configure}, again at each reload): callers name a rule, and
the limiter counts it by the configured burst and interval.
"""

from __future__ import annotations

import heapq
import ipaddress
import math
from collections import OrderedDict
from collections.abc import Callable, Collection

from attrs import frozen

from oauthd.config import RULE_KEYS, Config
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

    def per_hour(self) -> int:
        """
        The most charges the bucket takes in any hour.
        """
        return self.burst + math.ceil(3600 / self.interval)


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

USERNAME_IP = Rule("username-ip", 10, 60.0)
"""
Failed password logins per username from one address: refuses that address
(not the username) once it has guessed ten times.
"""

USERNAME = Rule("username", 10, 60.0)
"""
The pace of a username's password checks from addresses that failed lately,
however many: 10 at once, then 1 a minute.
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


USERNAME_NEW = Rule("username-new", 10, 4.0)
"""
The pace of a username's password checks from addresses that have not failed
lately (the owner's, or each guesser's first): 10 at once, then 1 every 4 s,
so the owner waits at most L{MAX_PACE_WAIT}.
"""

MAX_PACE_WAIT = 4.0
"""
The longest a password check waits for its username's pace; beyond it the
login is refused (429).
"""

CHECKS_PER_HOUR = USERNAME.per_hour() + USERNAME_NEW.per_hour()
"""
The most password checks of one username in any hour, from every address
the user has not logged in from lately.
"""

KNOWN_FOR = 30 * 86400.0
"""
How long an address a user logged in from is remembered as theirs.
"""


class RateLimiter:
    """
    Token buckets keyed by rule and key (an IP, a client id, a username),
    and the addresses users logged in from.

    @ivar max_entries: the most buckets (and, apart, the most remembered
        addresses) held at once.
    @ivar max_pace_wait: the longest a password check waits for its
        username's pace (L{reserve}'s C{max_wait} at logins).
    @ivar known_for: seconds an address stays known (L{remember}).
    @ivar digest: what a bucket is kept by, of a key: the key itself on one
        node; on a shared log, a keyed digest every node computes alike.
    @ivar on_charge: told the rule's name and the key's digest of every
        failure charged here, for the other nodes to charge too.
    """

    def __init__(self, now: Callable[[], float], max_entries: int = 100_000) -> None:
        self._now = now
        self.max_entries = max_entries
        self.max_pace_wait = MAX_PACE_WAIT
        self.known_for = KNOWN_FOR
        self.digest: Callable[[str], str] = str
        self.on_charge: Callable[[str, str], object] | None = None
        # Rule name -> the rule in force, where configured apart from the
        # default callers pass.
        self._rules: dict[str, Rule] = {}
        # (rule name, key) -> when the bucket is full again.
        self._full_at: dict[tuple[str, str], float] = {}
        # (full at, name) for every bucket, and stale pairs of earlier charges.
        self._heap: list[tuple[float, tuple[str, str]]] = []
        # key -> until when it is known; oldest first.
        self._known: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._full_at)

    def configure(self, config: Config) -> None:
        """
        Count by C{config}'s limits from now on. A bucket keeps the time it
        is full again, so what it holds carries over into the new rule.
        """
        self._rules = {name: Rule(name, *getattr(config, key)) for name, key in RULE_KEYS.items()}
        self.max_entries = config.limit_entries
        self.max_pace_wait = float(config.limit_pace_wait)
        self.known_for = config.limit_known_days * 86400.0
        self.prune()

    def rule(self, rule: Rule) -> Rule:
        """
        C{rule} as configured.
        """
        return self._rules.get(rule.name, rule)

    def _debt(self, rule: Rule, key: str, now: float) -> float:
        """
        Seconds until the bucket is full: 0 for a full one.
        """
        return max(0.0, self._full_at.get((rule.name, self.digest(key)), now) - now)

    def retry_after(self, rule: Rule, key: str) -> int:
        """
        Seconds until C{key} may fail again under C{rule}; 0 if it may now.
        """
        rule = self.rule(rule)
        wait = self._debt(rule, key, self._now()) - (rule.burst - 1) * rule.interval
        return max(1, math.ceil(wait)) if wait > 0 else 0

    def untouched(self, rule: Rule, key: str) -> bool:
        """
        Whether C{key}'s bucket is full: nothing charged lately.
        """
        return self._debt(rule, key, self._now()) == 0

    def charge(self, rule: Rule, key: str) -> None:
        """
        Count one failure against C{key}.
        """
        rule = self.rule(rule)
        now = self._now()
        self._set(rule, key, now + self._debt(rule, key, now) + rule.interval)
        if self.on_charge is not None:
            self.on_charge(rule.name, self.digest(key))

    def charge_shared(self, name: str, digest: str) -> None:
        """
        Count one failure another node charged to the key of C{digest}
        under the rule named C{name} (unknown names are ignored).
        """
        rule = self._rules.get(name)
        if rule is None:
            return
        now = self._now()
        debt = max(0.0, self._full_at.get((name, digest), now) - now)
        self._set_digest(name, digest, now + debt + rule.interval)

    def reserve(self, rule: Rule, key: str, max_wait: float) -> float | None:
        """
        Take a slot of C{key}'s bucket for an attempt, at once or within
        C{max_wait} seconds.

        @return: the seconds to wait for it, or C{None} (and nothing taken)
            if it is further off.
        """
        rule = self.rule(rule)
        now = self._now()
        debt = self._debt(rule, key, now)
        wait = max(0.0, debt - (rule.burst - 1) * rule.interval)
        if wait > max_wait:
            return None
        self._set(rule, key, now + debt + rule.interval)
        return wait

    def refund(self, rule: Rule, key: str) -> None:
        """
        Give back a slot L{reserve} took, for an attempt that succeeded.
        """
        rule = self.rule(rule)
        now = self._now()
        self._set(rule, key, now + max(0.0, self._debt(rule, key, now) - rule.interval))

    def _set(self, rule: Rule, key: str, full_at: float) -> None:
        self._set_digest(rule.name, self.digest(key), full_at)

    def _set_digest(self, rule: str, digest: str, full_at: float) -> None:
        name = (rule, digest)
        self._full_at[name] = full_at
        heapq.heappush(self._heap, (full_at, name))
        self.prune()

    def prune(self) -> int:
        """
        Drop the buckets that have refilled and, past L{max_entries}, those
        that would refill soonest; return how many went. Costs O(log n) for
        each bucket dropped.
        """
        now = self._now()
        before = len(self._full_at)
        heap, full_at = self._heap, self._full_at
        while heap and (heap[0][0] <= now or len(full_at) > self.max_entries):
            when, name = heapq.heappop(heap)
            if full_at.get(name) == when:
                del full_at[name]
        if len(heap) > 2 * len(full_at) + 64:
            # Stale pairs (of buckets charged again since) outnumber the
            # live ones: rebuild, at a cost spread over as many charges.
            self._heap = [(when, name) for name, when in full_at.items()]
            heapq.heapify(self._heap)
        return before - len(full_at)

    def remember(self, key: str) -> None:
        """
        Note C{key} (a username and address) as known, for L{known_for}.
        """
        self._known.pop(key, None)
        self._known[key] = self._now() + self.known_for
        if len(self._known) > self.max_entries:
            self._known.popitem(last=False)

    def forget(self, key: str) -> None:
        """
        Stop knowing C{key}.
        """
        self._known.pop(key, None)

    def knows(self, key: str) -> bool:
        """
        Whether C{key} was remembered within L{known_for}.
        """
        return self._known.get(key, 0.0) > self._now()


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
    waits = [(limiter.retry_after(rule, key), rule) for rule, key in charges]
    retry = max((wait for wait, _ in waits), default=0)
    if retry:
        # A caller already answered 429 is not charged: it must not be able
        # to fill the limiter with new buckets (and so push out everyone
        # else's).
        limited = errors.too_many_requests(retry)
        named = ",".join(filter(None, (_empty(waits), str(context.pop("limit", "")))))
        context = {"reason": error.description, **context}
        return deny(limited, ip=ip, limit=named, **context)
    for rule, key in charges:
        limiter.charge(rule, key)
    return deny(error, ip=ip, **context)


def guard(limiter: RateLimiter, charges: list[tuple[Rule, str]], ip: str, **context: object) -> None:
    """
    Refuse at once, before any check, while a bucket is empty: for secrets
    a person chooses, whose check must not run then.
    """
    waits = [(limiter.retry_after(rule, key), rule) for rule, key in charges]
    retry = max(wait for wait, _ in waits)
    if retry:
        raise deny(errors.too_many_requests(retry), ip=ip, limit=_empty(waits), **context)


def _empty(waits: list[tuple[int, Rule]]) -> str:
    """
    The names of the limits whose buckets are empty: those that refused.
    """
    return ",".join(rule.name for wait, rule in waits if wait)
