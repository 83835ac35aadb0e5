"""
The device authorization endpoint (RFC 8628 section 3.1-3.3) and the
decisions of its verification page: a client that cannot open a browser
gets a device code (to poll the token endpoint with,
L{oauthd.protocol.grants.device_code}) and a user code, which a user
logged in elsewhere enters to approve or deny it.

User codes are 8 letters of RFC 8628 section 6.1's base-20 alphabet (20**8,
about 2.6e10 codes), shown as C{XXXX-XXXX} and compared ignoring case,
dashes and spaces. Only a logged-in user may enter one, and wrong codes are
limited per user (L{DEVICE_USER}) and per source address (L{DEVICE_IP}),
never globally, so a guesser cannot block anyone else's code entry.
"""

from __future__ import annotations

from attrs import evolve

from oauthd.protocol import errors
from oauthd.protocol.browser import digest, new_secret, seen_records
from oauthd.protocol.clientauth import ClientAuth, required_client
from oauthd.protocol.context import Body, Context, Params
from oauthd.protocol.errors import deny
from oauthd.protocol.grants.answer import requested_scope
from oauthd.protocol.grants.device_code import GRANT_TYPE
from oauthd.protocol.limits import Rule, guard, ip_key, refuse
from oauthd.protocol.tokens import new_grant_id
from oauthd.state.authz_records import BrowserSession
from oauthd.state.decision import Decision, audit
from oauthd.state.device import APPROVED, DENIED, PENDING, DeviceCode, DevicePut

ENDPOINT_PATH = "/api/v1/oauth/device"
VERIFICATION_PATH = "/api/v1/oauth/device/verify"

ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
"""
RFC 8628 section 6.1: consonants only (no words), none easily confused.
"""

USER_CODE_LENGTH = 8

DEVICE_USER = Rule("device-user", 10, 360.0)
"""
Wrong user codes a logged-in user may enter: 10 at once, then one every
6 minutes (20 an hour at most).
"""

DEVICE_IP = Rule("device-ip", 20, 120.0)
"""
Wrong user codes from one address (an IPv6 /64): 20 at once, then one
every 2 minutes, whichever accounts it uses.
"""

DEVICE_START_IP = Rule("device-start-ip", 20, 30.0)
"""
Device codes started per source address: 20 at once, then one every 30 s.
A public client's id is no secret (a TV shows it), so without this anyone
could fill memory and the journal with pending codes.
"""


def normalize(user_code: str) -> str | None:
    """
    The user code as kept (upper case, no dashes or spaces), or C{None} if
    it cannot be one.
    """
    code = user_code[:40].upper().replace("-", "").replace(" ", "")
    if len(code) != USER_CODE_LENGTH or any(c not in ALPHABET for c in code):
        return None
    return code


def shown(code: str) -> str:
    return f"{code[:4]}-{code[4:]}"


def _new_user_code(ctx: Context) -> str:
    # A byte's 256 values are 12 times 20 plus 16: rejecting those 16 keeps
    # every letter equally likely.
    letters: list[str] = []
    while len(letters) < USER_CODE_LENGTH:
        for byte in ctx.random_bytes(USER_CODE_LENGTH):
            if byte < 240 and len(letters) < USER_CODE_LENGTH:
                letters.append(ALPHABET[byte % 20])
    return "".join(letters)


def start(ctx: Context, params: Params, auth: ClientAuth, ip: str) -> Decision[Body]:
    """
    Decide a device authorization request: the client, allowed the device
    code grant, asks for a scope within its own.
    """
    started = [(DEVICE_START_IP, ip_key(ip))]
    guard(ctx.limiter, started, ip)
    client = required_client(ctx, auth, ip)
    if GRANT_TYPE not in client.grant_types:
        raise deny(errors.unauthorized_client("this client may not use the device code grant"),
                   ip=ip, client=client.id, grant=GRANT_TYPE)
    scope = requested_scope(ctx, params, client.scope, client.scope, ip=ip, client=client.id)
    device_code = new_secret(ctx)
    user_code = _new_user_code(ctx)
    while ctx.state.authz.devices.by_user(digest(user_code)) is not None:
        user_code = _new_user_code(ctx)
    config = ctx.config
    code = DeviceCode(
        digest(device_code), digest(user_code), client.id, scope, new_grant_id(ctx.random_bytes),
        ctx.now(), config.device_code_ttl, config.device_poll_interval,
    )
    verification = config.issuer + VERIFICATION_PATH
    body: Body = {
        "device_code": device_code,
        "user_code": shown(user_code),
        "verification_uri": verification,
        "verification_uri_complete": f"{verification}?user_code={shown(user_code)}",
        "expires_in": code.lifetime,
        "interval": code.interval,
    }
    ctx.limiter.charge(DEVICE_START_IP, ip_key(ip))
    event = audit("device.start", "ok", ip=ip, client=client.id, scope=scope, grant=code.grant)
    return Decision(body, [DevicePut(code)], (event,), context={"client": client.id})


def pending(ctx: Context, browser: BrowserSession, user_code: str, ip: str) -> DeviceCode:
    """
    The pending device code a logged-in user entered.

    @raise OAuthError: C{invalid_grant} for a wrong, expired or used code
        (charged to the user and the address), 429 while either is limited.
    """
    charges = [(DEVICE_USER, browser.user), (DEVICE_IP, ip_key(ip))]
    guard(ctx.limiter, charges, ip, user=browser.user)
    code = normalize(user_code)
    found = None if code is None else ctx.state.authz.devices.by_user(digest(code))
    if found is None or not found.live(ctx.now()) or found.status != PENDING:
        raise refuse(ctx.limiter, errors.invalid_grant("the code is wrong, expired or already used"),
                     ip, charges, user=browser.user)
    return found


def answer(ctx: Context, browser: BrowserSession, user_code: str, approve: bool,
           ip: str) -> Decision[DeviceCode]:
    """
    The user approves or denies the device code they entered (and saw
    with its client and scope).
    """
    code = pending(ctx, browser, user_code, ip)
    decided = evolve(code, status=APPROVED if approve else DENIED, user=browser.user,
                     auth_time=browser.auth_time)
    event = audit("device.approve" if approve else "device.deny", "ok", ip=ip, user=browser.user,
                  client=code.client_id, scope=code.scope, grant=code.grant)
    # Approving is a use of the browser session, as a consent is.
    return Decision(decided, [DevicePut(decided), *seen_records(ctx, browser)], (event,),
                    context={"user": browser.user, "client": code.client_id})

