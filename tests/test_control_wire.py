"""
The control socket's wire schema (oauthd.control.wire): each entity's one
description agrees with the state layer's model, and the commands, rows and
oauthctl's options derive from it.
"""

from __future__ import annotations

import typing

import attrs
import pytest

from twisted.protocols import amp

from oauthd.control import wire
from oauthd.ctl.cli import build_parser
from oauthd.state.model import Client, Token, User

WIRE_TYPES: dict[object, type[amp.Argument]] = {
    str: amp.Unicode,
    int: amp.Integer,
    bool: amp.Boolean,
    tuple[str, ...]: amp.ListOf,
}
"""
The AMP type that carries each type of a model's attribute.
"""


@pytest.mark.parametrize(
    "entity, model, secrets",
    [(wire.CLIENT, Client, {"secret_digest", "registration_digest"}), (wire.USER, User, {"password_hash"})],
)
def test_entities_agree_with_the_model(
    entity: wire.Entity, model: type[object], secrets: set[str],
) -> None:
    """
    Every field described is an attribute of the model, of the type its
    wire type carries, or is declared computed; the model's attributes left
    out are exactly its secrets.
    """
    types = typing.get_type_hints(model)
    described = set()
    for field in entity.fields:
        if field.computed:
            assert field.name not in types, field
            assert not field.settable, field
            continue
        assert field.name in types, field
        assert isinstance(field.argument, WIRE_TYPES[types[field.name]]), field
        described.add(field.name)
    assert {f.name for f in attrs.fields(model)} - described == secrets  # type: ignore[arg-type]


def test_token_entity_agrees_with_the_token() -> None:
    """
    A token row's fields are a Token's attributes, or computed.
    """
    for field in wire.TOKEN.fields:
        assert field.computed or field.name in dir(Token), field
        assert not field.settable


def test_descriptions_are_complete() -> None:
    for entity in wire.ENTITIES:
        names = [field.name for field in entity.fields]
        assert len(set(names)) == len(names)
        assert len(set(entity.detail)) == len(entity.detail)
        assert all(entity[name].label for name in entity.detail)
        with pytest.raises(KeyError):
            entity["nonsense"]


def test_commands_derive_from_the_descriptions() -> None:
    """
    The row schemas are the described fields in order; the add and modify
    commands take each settable field as an optional argument.
    """
    assert [key for key, _ in wire.CLIENT_FIELDS] == [f.key for f in wire.CLIENT.fields]
    assert [key for key, _ in wire.ShowUser.response] == [f.key for f in wire.USER.fields]
    assert [key for key, _ in wire.ShowToken.response] == [f.key for f in wire.TOKEN.fields]
    for command, entity in [
        (wire.AddClient, wire.CLIENT), (wire.ModifyClient, wire.CLIENT),
        (wire.AddUser, wire.USER), (wire.ModifyUser, wire.USER),
    ]:
        arguments = dict(command.arguments)
        for field in entity.fields:
            if field.settable:
                assert arguments[field.key].optional
                assert type(arguments[field.key]) is type(field.argument)
            elif field.name not in ("id", "name", "enabled", "disabled"):  # identity, state
                assert field.key not in arguments, (command, field)
    assert not wire.CLIENT["type"].settable and dict(wire.AddClient.arguments)[b"public"].optional


@pytest.mark.parametrize(
    "argv, entity",
    [
        (["clients", "add", "--name", "x"], wire.CLIENT),
        (["clients", "mod", "cabc"], wire.CLIENT),
        (["users", "add", "bob"], wire.USER),
        (["users", "mod", "bob"], wire.USER),
    ],
)
def test_oauthctl_sets_every_settable_field(argv: list[str], entity: wire.Entity) -> None:
    """
    oauthctl's add and mod commands have an option for each settable field,
    stored under the field's name.
    """
    args = build_parser().parse_args(argv)
    for field in entity.fields:
        if field.settable:
            assert getattr(args, field.name) is None, field


def test_unix_path() -> None:
    assert wire.unix_path(r"unix:/run/a\:b/c.sock:mode=600") == "/run/a:b/c.sock"
    assert wire.unix_path("unix:/run/c.sock") == "/run/c.sock"
    assert wire.unix_path("tcp:80") is None


def test_error_codes() -> None:
    """
    Every code has its class; a subclass is sent with its own code.
    """
    assert set(wire.ERRORS.values()) == {
        b"NOT_FOUND", b"CONFLICT", b"INVALID_VALUE", b"BAD_ARGUMENT", b"BUSY", b"STORAGE",
        b"ABANDONED", b"ERROR",
    }
    for kind, code in wire.ERRORS.items():
        assert issubclass(kind, wire.ControlError)
        assert wire.error_code(kind("x")) == code
