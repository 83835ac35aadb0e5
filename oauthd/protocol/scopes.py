"""
Scopes in PhotoPrism's grammar: space-separated names, lower-cased,
de-duplicated and stored sorted, with C{*} (all scopes) last.
"""

from __future__ import annotations

from collections.abc import Collection

ALL = "*"
MAX_LENGTH = 767

BY_NAME_ONLY = frozenset({"introspect", "register"})
"""
Scopes that C{*} does not grant: only a scope that names them does. Every
login session has C{*}, and so does a client by default.
"""


class ScopeError(ValueError):
    """
    A scope string that cannot be granted; the message names the culprit.

    @ivar reason: what is wrong without the caller's words (which may be
        anything pasted into a form), for the audit trail.
    """

    def __init__(self, message: str, reason: str = "invalid scope") -> None:
        super().__init__(message)
        self.reason = reason


def normalize(value: str, known: Collection[str]) -> str:
    """
    The canonical form of a requested scope string.

    @param known: the configured scope names; C{*} is always known.
    @raise ScopeError: if the string is too long or names an unknown scope.
    """
    if len(value) > MAX_LENGTH:
        raise ScopeError(f"scope is longer than {MAX_LENGTH} characters", "scope too long")
    names = set(value.lower().split())
    for name in names:
        if name != ALL and name not in known:
            raise ScopeError(f"unknown scope {name[:64]!r}", "unknown scope")
    return " ".join(sorted(names - {ALL}) + ([ALL] if ALL in names else []))


def names(scope: str) -> set[str]:
    return set(scope.split())


def within(requested: str, allowed: str) -> bool:
    """
    Whether every scope in C{requested} is granted by C{allowed}; C{*} in
    C{allowed} grants every scope but those of L{BY_NAME_ONLY}, C{*} in
    C{requested} needs C{*}.
    """
    if requested == allowed:
        return True
    granted = names(allowed)
    wanted = names(requested)
    if ALL in granted:
        return not (wanted & BY_NAME_ONLY) - granted
    return wanted <= granted


def permits(scope: str, needed: str) -> bool:
    """
    Whether a token with C{scope} may do what needs the scope C{needed}.
    """
    granted = names(scope)
    return ALL in granted or needed in granted
