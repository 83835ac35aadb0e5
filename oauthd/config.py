"""
oauthd's configuration: one TOML file, overridden by command-line options.

Every key is declared once, in L{SETTINGS}, with its type, default and help
text; the sample file C{etc/oauthd.toml} documents the same keys, and a test
checks that the two agree.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from attrs import field, frozen

from twisted.internet.endpoints import serverFromString

from oauthd.locations import SOCKET_NAME, default_data_dir

DEFAULT_PORT = 9478
"""
The default HTTP port: unassigned by IANA and not used by common services
(PhotoPrism itself is on 2342), so a trial start rarely collides.
"""


class ConfigError(Exception):
    """
    The configuration cannot be used; the message is one line naming the key or
    file and what is wrong with it.
    """


@frozen
class Config:
    """
    The daemon's settings, validated.

    @ivar listen: Twisted server endpoint descriptions for the HTTP API.
    @ivar control: the endpoint description of the admin control socket.
    @ivar data: the data directory (journal, lock, control socket).
    @ivar issuer: the issuer identifier, an absolute URL without a query or
        fragment and without a trailing slash.
    @ivar scopes: the scopes clients may be granted, listed in discovery.
    @ivar bcrypt_cost: the bcrypt work factor for new user passwords.
    @ivar hash_threads: threads in the pool that runs bcrypt.
    @ivar max_body: the largest request body accepted, in bytes.
    @ivar admin_uids: uids admitted to the control socket besides root and the
        daemon's own.
    @ivar admin_group: a group (name or number) whose members are admitted to
        the control socket; C{""} for none.
    @ivar session_ttl: seconds a session from C{POST /api/v1/session} lasts.
    @ivar trusted_proxies: addresses or networks of reverse proxies whose
        C{X-Forwarded-For} names the client (for rate limits and audit).
    @ivar access_log: log a line per HTTP request besides the audit events.
    @ivar audit_rotate_bytes: the size at which the audit trail's active
        file is rotated.
    @ivar audit_keep_bytes: the most the audit trail's files may hold
        together; the oldest rotated ones are removed beyond it.
    @ivar audit_keep_days: rotated audit files older than this are removed.
    @ivar audit_backlog: the most audit events held in memory while the
        trail cannot write.
    @ivar refresh_family_lifetime: seconds from a refresh family's first
        token (a login) after which none of its refresh tokens is taken.
    @ivar header_timeout: seconds a request's line and headers may take to
        arrive, however steadily they trickle in.
    @ivar body_timeout: seconds a request's body may take to arrive once its
        headers have.
    @ivar idle_timeout: seconds a kept-alive connection may stay silent
        between two requests.
    @ivar max_connections: HTTP connections open at once, over all
        listeners; at the cap the slowest makes room, or the next is
        answered 503 and closed.
    @ivar authorization_code_ttl: seconds an authorization code lasts.
    @ivar browser_session_idle: seconds a browser session at the
        authorization endpoint lasts unused.
    @ivar browser_session_max_age: seconds a browser session lasts at most.
    @ivar key_publish_delay: seconds a new signing key is in the JWKS before
        it signs.
    @ivar key_rotation_days: rotate the signing keys when the newest is this
        many days old; 0: only by hand.
    @ivar id_token_ttl: seconds an ID token is valid.
    @ivar device_code_ttl: seconds a device code (RFC 8628) lasts.
    @ivar device_poll_interval: seconds a device waits between polls.
    @ivar id_token_alg: how ID tokens (and JWT access tokens) are signed for
        a client that does not say.
    @ivar limit_login_ip: each C{limit_*} pair is a rate limit's burst and
        the seconds one failure takes to be forgiven (L{RULE_KEYS} names
        the bucket of each; L{oauthd.protocol.limits} says what they count).
    @ivar limit_pace_wait: the longest a password check waits for its
        username's pace before it is refused.
    @ivar limit_known_days: days an address a user logged in from is known
        as theirs (not paced).
    @ivar limit_entries: the most rate-limit buckets held at once.
    @ivar eventlog: where the event log is: C{""} for the journal in the
        data directory, or a C{postgresql://} URI of a log shared with other
        nodes.
    @ivar node_id: this node's id in a shared event log; C{""}: the one
        made at its first start and kept in the data directory.
    @ivar eventlog_max_lag: seconds a node serves bearer checks and
        introspection from memory without reaching the shared log.
    @ivar eventlog_secret_key_file: the node-local file holding the key
        that encrypts what the shared log keeps.
    """

    listen: tuple[str, ...]
    control: str
    data: str
    issuer: str
    scopes: tuple[str, ...]
    bcrypt_cost: int = field(default=12)
    hash_threads: int = field(default=2)
    max_body: int = field(default=65536)
    admin_uids: tuple[int, ...] = field(default=())
    admin_group: str = field(default="")
    session_ttl: int = field(default=86400)
    trusted_proxies: tuple[str, ...] = field(default=())
    access_log: bool = field(default=False)
    audit_rotate_bytes: int = field(default=64 << 20)
    audit_keep_bytes: int = field(default=1 << 30)
    audit_keep_days: int = field(default=90)
    audit_backlog: int = field(default=10_000)
    refresh_family_lifetime: int = field(default=90 * 86400)
    header_timeout: int = field(default=10)
    body_timeout: int = field(default=30)
    idle_timeout: int = field(default=15)
    max_connections: int = field(default=4096)
    authorization_code_ttl: int = field(default=60)
    browser_session_idle: int = field(default=7 * 86400)
    browser_session_max_age: int = field(default=14 * 86400)
    key_publish_delay: int = field(default=3600)
    key_rotation_days: int = field(default=0)
    id_token_ttl: int = field(default=3600)
    id_token_alg: str = field(default="RS256")
    registration: str = field(default="closed")
    registration_scopes: tuple[str, ...] = field(default=("email", "openid", "profile"))
    registration_max_clients: int = field(default=1000)
    device_code_ttl: int = field(default=600)
    device_poll_interval: int = field(default=5)
    limit_login_ip: tuple[int, int] = field(default=(10, 60))
    limit_token_ip: tuple[int, int] = field(default=(60, 10))
    limit_client: tuple[int, int] = field(default=(10, 60))
    limit_username_ip: tuple[int, int] = field(default=(10, 60))
    limit_username: tuple[int, int] = field(default=(10, 60))
    limit_username_new: tuple[int, int] = field(default=(10, 4))
    limit_2fa_user: tuple[int, int] = field(default=(5, 600))
    limit_2fa_ip: tuple[int, int] = field(default=(10, 300))
    limit_register_ip: tuple[int, int] = field(default=(5, 720))
    limit_device_user: tuple[int, int] = field(default=(10, 360))
    limit_device_ip: tuple[int, int] = field(default=(20, 120))
    limit_device_start_ip: tuple[int, int] = field(default=(20, 30))
    limit_pace_wait: int = field(default=4)
    limit_known_days: int = field(default=30)
    limit_entries: int = field(default=100_000)
    # Kept out of repr: the URI may carry a password.
    eventlog: str = field(default="", repr=False)
    node_id: str = field(default="")
    eventlog_max_lag: int = field(default=5)
    eventlog_secret_key_file: str = field(default="")

    @property
    def issuer_is_plain_http(self) -> bool:
        return urlsplit(self.issuer).scheme == "http"


DEFAULT_SCOPES = (
    "albums calendar config favorites feedback files folders labels logs metrics "
    "moments passcode password people photos places services sessions settings shares "
    "users videos webdav openid profile email address introspect register"
).split()


_REGISTRATION_SCOPES = ("email", "openid", "profile")

_NO_REACTOR = object()


def _check_endpoint(key: str, value: str) -> str:
    try:
        # An endpoint keeps the reactor it is given and uses it only to
        # listen; parsing must not install the global one.
        serverFromString(_NO_REACTOR, value)
    except Exception as e:
        # Parsing reads what the endpoint names (an ssl: key file, systemd's
        # descriptors): whatever fails there is the configuration's mistake.
        raise ConfigError(f"{key}: bad endpoint {value!r}: {e}") from None
    return value


def _check_issuer(key: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{key}: {value!r} is not an absolute http(s) URL")
    if parts.query or parts.fragment:
        raise ConfigError(f"{key}: {value!r} must not have a query or fragment")
    return value.rstrip("/")


def _check_scopes(key: str, value: list[str]) -> tuple[str, ...]:
    for scope in value:
        if not scope or not all(c.isalnum() or c in ".:_-" for c in scope):
            raise ConfigError(f"{key}: {scope!r} is not a valid scope name")
    return tuple(sorted(set(value)))


def _check_uids(key: str, value: list[int]) -> tuple[int, ...]:
    for uid in value:
        if isinstance(uid, bool) or not 0 <= uid < 2**32 - 1:
            raise ConfigError(f"{key}: {uid!r} is not a uid")
    return tuple(sorted(set(value)))


def _check_group(key: str, value: str) -> str:
    value = value.strip()
    if value and not all(c.isalnum() or c in "._-" for c in value):
        raise ConfigError(f"{key}: {value!r} is not a group name or number")
    return value
def _check_networks(key: str, value: list[str]) -> tuple[str, ...]:
    for network in value:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ConfigError(f"{key}: {network!r} is not an IP address or network") from None
    return tuple(value)


def _in_range(low: int, high: int) -> Callable[[str, int], int]:
    def check(key: str, value: int) -> int:
        if not low <= value <= high:
            raise ConfigError(f"{key}: {value} is not between {low} and {high}")
        return value

    return check


@frozen
class Setting:
    """
    One configuration key: its TOML type, a check that normalises the value,
    and the help text shown by C{twistd oauthd --help}.
    """

    kind: type
    check: Callable[[str, Any], Any]
    help: str
    item_type: type | None = None


def _each_endpoint(key: str, value: list[str]) -> tuple[str, ...]:
    if not value:
        raise ConfigError(f"{key}: at least one endpoint is needed")
    return tuple(_check_endpoint(key, v) for v in value)


def _rate(key: str, value: list[int]) -> tuple[int, int]:
    if (len(value) != 2 or any(isinstance(v, bool) for v in value)
            or not 1 <= value[0] <= 1_000_000 or not 1 <= value[1] <= 86400):
        raise ConfigError(f"{key}: expected [burst, seconds], burst 1-1000000 and seconds 1-86400")
    return (value[0], value[1])


RULE_KEYS = {
    "login-ip": "limit_login_ip", "token-ip": "limit_token_ip", "client": "limit_client",
    "username-ip": "limit_username_ip", "username": "limit_username",
    "username-new": "limit_username_new", "2fa-user": "limit_2fa_user", "2fa-ip": "limit_2fa_ip",
    "register-ip": "limit_register_ip", "device-user": "limit_device_user",
    "device-ip": "limit_device_ip", "device-start-ip": "limit_device_start_ip",
}
"""
The rate-limit buckets (L{oauthd.protocol.limits.Rule} names) and the keys
that set them.
"""


def _one_of(*allowed: str) -> Callable[[str, str], str]:
    def check(key: str, value: str) -> str:
        if value not in allowed:
            raise ConfigError(f"{key}: expected one of {', '.join(allowed)}, got {value[:40]!r}")
        return value

    return check


def _check_eventlog(key: str, value: str) -> str:
    # Never echo the value: the URI may carry a password.
    if value and not value.startswith(("postgresql://", "postgres://")):
        raise ConfigError(f"{key}: expected a postgresql:// URI, or \"\" for the data directory's journal")
    return value


def _check_node_id(key: str, value: str) -> str:
    if value and not (len(value) <= 64 and all(c.isascii() and (c.isalnum() or c in "._-") for c in value)):
        raise ConfigError(f"{key}: expected at most 64 letters, digits, '.', '_' or '-', got {value[:70]!r}")
    return value


SETTINGS: dict[str, Setting] = {
    "listen": Setting(
        list, _each_endpoint, "HTTP endpoint(s), Twisted endpoint strings", str
    ),
    "control": Setting(str, _check_endpoint, "admin control socket endpoint"),
    "data": Setting(str, lambda k, v: v, "data directory"),
    "issuer": Setting(str, _check_issuer, "issuer URL"),
    "scopes": Setting(list, _check_scopes, "scopes clients may be granted", str),
    "bcrypt_cost": Setting(int, _in_range(4, 16), "bcrypt cost for passwords"),
    "hash_threads": Setting(int, _in_range(1, 64), "threads for password hashing"),
    "max_body": Setting(int, _in_range(1024, 16 << 20), "largest request body"),
    "admin_uids": Setting(list, _check_uids, "uids allowed on the control socket", int),
    "admin_group": Setting(str, _check_group, "group allowed on the control socket"),
    "session_ttl": Setting(int, _in_range(60, 31 * 86400), "session lifetime in seconds"),
    "trusted_proxies": Setting(
        list, _check_networks, "proxies whose X-Forwarded-For is believed", str
    ),
    "access_log": Setting(bool, lambda k, v: v, "log every HTTP request"),
    "audit_rotate_bytes": Setting(int, _in_range(64 << 10, 1 << 40), "audit file size that rotates it"),
    "audit_keep_bytes": Setting(int, _in_range(1 << 20, 1 << 50), "most bytes of audit files kept"),
    "audit_keep_days": Setting(int, _in_range(1, 36500), "days rotated audit files are kept"),
    "audit_backlog": Setting(int, _in_range(100, 10_000_000), "audit events held while writes fail"),
    "refresh_family_lifetime": Setting(
        int, _in_range(3600, 10 * 365 * 86400), "seconds a refresh family lives at most"
    ),
    "header_timeout": Setting(int, _in_range(1, 300), "seconds for a request's headers"),
    "body_timeout": Setting(int, _in_range(1, 3600), "seconds for a request's body"),
    "idle_timeout": Setting(int, _in_range(1, 3600), "seconds an idle connection is kept"),
    "max_connections": Setting(int, _in_range(1, 1 << 20), "HTTP connections open at once"),
    "authorization_code_ttl": Setting(int, _in_range(1, 600), "authorization code lifetime in seconds"),
    "browser_session_idle": Setting(int, _in_range(300, 366 * 86400), "browser session idle lifetime"),
    "browser_session_max_age": Setting(int, _in_range(300, 366 * 86400), "browser session lifetime"),
    "key_publish_delay": Setting(int, _in_range(0, 7 * 86400), "seconds a new key is published before it signs"),
    "key_rotation_days": Setting(int, _in_range(0, 3650), "days between scheduled key rotations (0: off)"),
    "id_token_ttl": Setting(int, _in_range(60, 86400), "ID token lifetime in seconds"),
    "id_token_alg": Setting(str, _one_of("RS256", "ES256", "EdDSA"), "default ID token algorithm"),
    "registration": Setting(str, _one_of("closed", "open"), "dynamic client registration policy"),
    "registration_scopes": Setting(list, _check_scopes, "scopes a registered client may ask for", str),
    "registration_max_clients": Setting(
        int, _in_range(0, 1_000_000), "most dynamically registered clients at once"
    ),
    "device_code_ttl": Setting(int, _in_range(60, 3600), "device code lifetime in seconds"),
    "device_poll_interval": Setting(int, _in_range(1, 60), "seconds between a device's polls"),
    **{key: Setting(list, _rate, f"rate limit {name}: [burst, seconds to forgive one]", int)
       for name, key in RULE_KEYS.items()},
    "limit_pace_wait": Setting(int, _in_range(1, 60), "longest wait for a username's pace"),
    "limit_known_days": Setting(int, _in_range(0, 366), "days a user's address is known"),
    "limit_entries": Setting(int, _in_range(1000, 10_000_000), "most rate-limit buckets"),
    "eventlog": Setting(str, _check_eventlog, "a postgresql:// URI of a shared event log [default: the data directory's journal]"),
    "node_id": Setting(str, _check_node_id, "this node's id in a shared event log [default: made once, kept in DATA/node-id]"),
    "eventlog_max_lag": Setting(int, _in_range(1, 3600), "seconds bearer checks are served without reaching the shared log"),
    "eventlog_secret_key_file": Setting(str, lambda k, v: v, "file of the key encrypting the shared log (0600; needed with eventlog)"),
}


@frozen
class Reloaded:
    """
    What a reload did.

    @ivar changed: each key now running with a new value: key, old, new
        (shown as in the file).
    @ivar restart: the keys whose new value waits for a restart.
    """

    changed: tuple[tuple[str, str, str], ...] = ()
    restart: tuple[str, ...] = ()


def _typed(key: str, value: object) -> object:
    setting = SETTINGS[key]
    # bool is an int in Python; a TOML true is not a number.
    if not isinstance(value, setting.kind) or (isinstance(value, bool) and setting.kind is not bool):
        raise ConfigError(
            f"{key}: expected {setting.kind.__name__}, got {type(value).__name__}"
        )
    if setting.item_type is not None:
        assert isinstance(value, list)
        for item in value:
            if not isinstance(item, setting.item_type):
                raise ConfigError(
                    f"{key}: expected a list of {setting.item_type.__name__}"
                )
    return setting.check(key, value)


def read_config_file(path: str) -> dict[str, object]:
    """
    Read a TOML config file into a plain dict; every failure is a
    L{ConfigError} naming the file.
    """
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None
    for key in raw:
        if key not in SETTINGS:
            raise ConfigError(f"{path}: unknown key {key!r}")
    return raw


def build_config(
    values: Mapping[str, object], environ: Mapping[str, str] = os.environ
) -> Config:
    """
    Validate C{values} (from the file, overridden by the command line) and fill
    the defaults, some of which depend on others: the control socket lives in
    the data directory and the issuer names the first listener's port.
    """
    checked: dict[str, Any] = {}
    for key, value in values.items():
        if key not in SETTINGS:
            raise ConfigError(f"unknown key {key!r}")
        checked[key] = _typed(key, value)
    listen = checked.setdefault(
        "listen", (f"tcp:{DEFAULT_PORT}:interface=127.0.0.1",)
    )
    data = checked.setdefault("data", default_data_dir(environ))
    checked.setdefault("control", f"unix:{_escape(os.path.join(data, SOCKET_NAME))}:mode=600")
    checked.setdefault("issuer", f"http://127.0.0.1:{_port_of(listen[0])}")
    scopes = checked.setdefault("scopes", tuple(sorted(DEFAULT_SCOPES)))
    # An older config that names its own scopes still loads: the default
    # keeps only the ones it has.
    checked.setdefault("registration_scopes", tuple(s for s in _REGISTRATION_SCOPES if s in scopes))
    config = Config(**checked)
    for scope in config.registration_scopes:
        if scope not in config.scopes:
            raise ConfigError(f"registration_scopes: {scope!r} is not one of the scopes")
    return config


def _escape(path: str) -> str:
    return path.replace("\\", "\\\\").replace(":", "\\:")


def _port_of(endpoint: str) -> int:
    parts = endpoint.split(":")
    if len(parts) > 1 and parts[0] in ("tcp", "ssl", "tcp6") and parts[1].isdigit():
        return int(parts[1])
    return DEFAULT_PORT


def is_loopback_endpoint(endpoint: str) -> bool:
    """
    Whether a server endpoint description accepts connections only from this
    machine: a UNIX socket, or TCP bound to a loopback interface.
    """
    kind, _, rest = endpoint.partition(":")
    if kind == "unix":
        return True
    if kind not in ("tcp", "tcp6", "ssl"):
        return False
    interface = ""
    for part in rest.replace("\\:", "\x00").split(":"):
        if part.startswith("interface="):
            interface = part[len("interface="):].replace("\x00", ":")
    return is_loopback_host(interface)


def is_loopback_host(host: str) -> bool:
    """
    Whether a host name or address names this machine only.
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
