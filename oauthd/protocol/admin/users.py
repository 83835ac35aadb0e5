"""
Creating, changing and removing users.
"""

from __future__ import annotations

from typing import Any

import attrs

from oauthd.protocol.context import Context
from oauthd.protocol.errors import Conflict, InvalidValue, NotFound
from oauthd.protocol.rules import ROLES, check_label, check_new_password, check_username
from oauthd.state.decision import Decision
from oauthd.state.entities import User
from oauthd.state.records import UserPut, UserRemoved


def user(ctx: Context, name: str) -> User:
    try:
        return ctx.state.users[name]
    except KeyError:
        raise NotFound(f"no such user: {name[:64]}") from None


def _checked(candidate: User) -> User:
    if candidate.role not in ROLES:
        raise InvalidValue("user role is admin or user")
    if candidate.full_name:
        check_label("full name", candidate.full_name)
    email = candidate.email
    if email and ("@" not in email or len(email) > 254 or any(c.isspace() for c in email)):
        raise InvalidValue("the email address is not valid")
    return candidate


async def add_user(ctx: Context, name: str, password: str | None, **fields: Any) -> Decision[User]:
    """
    Create a user; the password, if any, is hashed in the hasher's pool.
    """
    name = check_username(name)
    if name in ctx.state.users:
        raise Conflict(f"user {name} already exists")
    if password is not None:
        check_new_password(password)
    new = _checked(User(name=name, created_at=ctx.now(), **fields))
    if password is not None:
        new = attrs.evolve(new, password_hash=await ctx.hasher.hash(password))
        if name in ctx.state.users:
            # Created by someone else while the password was being hashed.
            raise Conflict(f"user {name} already exists")
    return Decision(new, [UserPut(new)])


async def set_password(ctx: Context, name: str, password: str) -> Decision[User]:
    """
    Give a user a new password, hashed in the hasher's pool.
    """
    user(ctx, name)
    hashed = await ctx.hasher.hash(check_new_password(password))
    changed = attrs.evolve(user(ctx, name), password_hash=hashed)
    return Decision(changed, [UserPut(changed)])


def update_user(ctx: Context, name: str, **changes: Any) -> Decision[User]:
    """
    Change a user's role, profile or disabled flag; disabling revokes the
    user's tokens.
    """
    changed = _checked(attrs.evolve(user(ctx, name), **changes))
    return Decision(changed, [UserPut(changed)])


def remove_user(ctx: Context, name: str) -> Decision[User]:
    """
    Delete a user and revoke all their tokens.
    """
    return Decision(user(ctx, name), [UserRemoved(name)])
