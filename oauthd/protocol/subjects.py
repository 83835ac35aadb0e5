"""
Subject identifiers: the C{sub} claim. A user's is its C{uid}, in
PhotoPrism's UID shape (C{u} and 15 lowercase base36 characters, what
PhotoPrism's C{rnd.IsUID(s, 'u')} accepts), given once when the user is
created and never changed, so a relying party that keys its accounts on
C{sub} keeps them across renames. A token without a user (client
credentials) has its client id as subject.
"""

from __future__ import annotations

import attrs

from oauthd.protocol.tokens import BASE36, RandomBytes, random_string
from oauthd.state.decision import Decision
from oauthd.state.entities import Token, User
from oauthd.state.model import State
from oauthd.state.records import Record, UserPut

UID_PREFIX = "u"
UID_LENGTH = 16


def is_uid(value: str) -> bool:
    """
    Whether C{value} has the shape of a user's subject id.
    """
    return (len(value) == UID_LENGTH and value.startswith(UID_PREFIX)
            and all(c in BASE36 for c in value[1:]))


def new_uid(state: State, random_bytes: RandomBytes, taken: set[str] | None = None) -> str:
    """
    A subject id no user has: 15 random base36 characters (77 bits), so
    one that belonged to a removed user does not come back either.
    """
    held = {user.uid for user in state.users.values()} | (taken or set())
    while True:
        uid = UID_PREFIX + random_string(BASE36, UID_LENGTH - 1, random_bytes)
        if uid not in held:
            return uid


def of_token(state: State, token: Token) -> str:
    """
    The C{sub} of a token: its user's subject id, or for a token without a
    user its client id. (A user from before subject ids that the start-up
    migration has not reached has none yet: its name stands in.)
    """
    if not token.user:
        return token.client_id
    user = state.users.get(token.user)
    return user.uid if user is not None and user.uid else token.user


def of_user(user: User) -> str:
    return user.uid or user.name


def migration(state: State, random_bytes: RandomBytes) -> Decision[list[User]]:
    """
    Subject ids for the users of a journal from before them, one record
    each; none once every user has one, so this happens on the first start
    only.
    """
    given: list[User] = []
    taken: set[str] = set()
    for user in sorted(state.users.values(), key=lambda u: u.name):
        if not user.uid:
            uid = new_uid(state, random_bytes, taken)
            taken.add(uid)
            given.append(attrs.evolve(user, uid=uid))
    records: list[Record] = [UserPut(user) for user in given]
    return Decision(given, records)
