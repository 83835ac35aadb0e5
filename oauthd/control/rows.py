"""
The rows the daemon answers with: an entity's described fields
(L{oauthd.control.wire}), read from the state layer's model objects or
computed here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from twisted.protocols import amp

from oauthd.control import wire
from oauthd.state.entities import Client, Token, User


def _text(value: str) -> str:
    """
    C{value} as text UTF-8 can carry (a lone surrogate from a JSON client
    name would otherwise break a whole listing).
    """
    if value.isascii():
        return value
    return value.encode("utf-8", "replace").decode("utf-8")


def _texts(values: Iterable[str]) -> list[str]:
    return [_text(value) for value in values]


def _encodable(argument: amp.Argument) -> Callable[[Any], Any] | None:
    """
    What makes a value of type C{argument} encodable as a row's (text safe
    to encode, a list a list), if anything.
    """
    if isinstance(argument, amp.Unicode):
        return _text
    if isinstance(argument, amp.ListOf):
        return _texts if isinstance(argument.elementType, amp.Unicode) else list
    return None


def row_maker(entity: wire.Entity) -> Callable[..., dict[str, Any]]:
    """
    How to make rows of C{entity}: C{row(item, **computed)} is a row with
    the described fields in order, each read from the model object C{item}
    by its name or, for a computed field, given; text made encodable.
    """
    plan = [
        (field.name, field.computed, _encodable(field.argument))
        for field in entity.fields
    ]

    def row(item: object, **computed: Any) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, given, encodable in plan:
            value = computed[name] if given else getattr(item, name)
            values[name] = value if encodable is None else encodable(value)
        return values

    return row


_client_row = row_maker(wire.CLIENT)
_user_row = row_maker(wire.USER)
_token_row = row_maker(wire.TOKEN)


def client_row(client: Client, live_tokens: int) -> dict[str, Any]:
    created_by = "registration" if client.registration_digest else "admin"
    return _client_row(client, tokens=live_tokens, created_by=created_by)


def user_row(user: User, live_tokens: int) -> dict[str, Any]:
    return _user_row(user, has_password=bool(user.password_hash), tokens=live_tokens)


def token_row(token: Token, client_name: str, now: int) -> dict[str, Any]:
    return _token_row(token, client_name=client_name, expired=not token.live(now))
