"""
The scopes a client asks for, in plain words for the consent page.
"""

from __future__ import annotations

from collections.abc import Iterable

SCOPE_WORDS = {
    "*": "Full access to your account, as if it were you",
    "albums": "See and change your albums",
    "calendar": "See your photos by date",
    "config": "See and change the library's configuration",
    "favorites": "See and change your favorites",
    "feedback": "Send feedback in your name",
    "files": "See and change your files",
    "folders": "See and change your folders",
    "labels": "See and change labels",
    "logs": "Read the logs",
    "metrics": "Read usage metrics",
    "moments": "See your moments",
    "passcode": "Manage your two-step verification",
    "password": "Change your password",
    "people": "See and change the people recognised in your photos",
    "photos": "See and change your photos",
    "places": "See where your photos were taken",
    "services": "Manage connected services",
    "sessions": "Manage your sessions",
    "settings": "See and change your settings",
    "shares": "See and change what you share",
    "users": "Manage user accounts",
    "videos": "See and change your videos",
    "webdav": "Reach your files over WebDAV",
    "openid": "Know who you are (your account name)",
    "profile": "See your name",
    "email": "See your email address",
    "address": "See your postal address",
    "introspect": "Check tokens issued by this server",
}


def describe(scopes: Iterable[str]) -> list[str]:
    """
    One line of plain words per scope, in the order given.
    """
    return [SCOPE_WORDS.get(scope, f"Access named \u201c{scope}\u201d") for scope in scopes]
