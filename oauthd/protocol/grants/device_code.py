"""
The device code grant at the token endpoint (RFC 8628 section 3.4-3.5): a
device polls with the device code it got (L{oauthd.protocol.device}) until
its user approves or denies it, or it expires.

Each poll is recorded with its time, so one that comes sooner than the
code's interval gets C{slow_down} and makes the interval five seconds
longer. An approved code gives its tokens once, under the grant id it
carries (so its refresh tokens rotate as any grant's); a poll after that
gets C{invalid_grant}.
"""

from __future__ import annotations

from attrs import evolve

from oauthd.protocol import errors, scopes
from oauthd.protocol.browser import digest
from oauthd.protocol.context import Body, Context, Params
from oauthd.protocol.errors import OAuthError, deny
from oauthd.protocol.grants.answer import issued
from oauthd.protocol.id_tokens import access_token
from oauthd.protocol.issuing import family_limit_records, mint
from oauthd.protocol.limits import TOKEN_IP, ip_key, refuse
from oauthd.state.decision import Decision
from oauthd.state.device import APPROVED, DENIED, PENDING, DeviceCode, DevicePut
from oauthd.state.entities import REFRESH, Client
from oauthd.state.records import Record

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:device_code"
SLOW_DOWN_STEP = 5
MAX_INTERVAL = 60
"""
The interval stops growing here: beyond it a device polling too soon is
told C{slow_down} without a record, so hammering writes a bounded number.
"""
_MAX_CODE = 100


def decide(ctx: Context, client: Client, params: Params, ip: str) -> Decision[Body]:
    presented = params.get("device_code", "")
    if not presented:
        raise errors.invalid_request("device_code is required")
    code = ctx.state.authz.devices.codes.get(digest(presented[:_MAX_CODE]))
    if code is None or code.client_id != client.id:
        raise refuse(ctx.limiter,
                     errors.invalid_grant("the device code is invalid or was issued to another client"),
                     ip, [(TOKEN_IP, ip_key(ip))], client=client.id)
    context: dict[str, object] = {"client": client.id, "grant": code.grant}
    now = ctx.now()
    if not code.live(now):
        raise deny(device_error("expired_token", "the device code has expired"), ip=ip, **context)
    if code.status == DENIED:
        raise deny(device_error("access_denied", "the user denied the request"), ip=ip, **context)
    if code.status not in (PENDING, APPROVED):
        raise deny(errors.invalid_grant("the device code was already used"), ip=ip, **context)
    if code.polled_at and now < code.polled_at + code.interval:
        if code.interval >= MAX_INTERVAL:
            raise deny(device_error("slow_down", f"poll at most every {code.interval} seconds"),
                       ip=ip, **context)
        slower = evolve(code, polled_at=now, interval=code.interval + SLOW_DOWN_STEP)
        return _refused(slower, device_error(
            "slow_down", f"poll at most every {slower.interval} seconds"), ip, context)
    if code.status == PENDING:
        return _refused(evolve(code, polled_at=now), device_error(
            "authorization_pending", "the user has not yet approved the request"), ip, context)
    return _tokens(ctx, client, code, ip, context)


def _refused(code: DeviceCode, error: OAuthError, ip: str,
             context: dict[str, object]) -> Decision[Body]:
    # The poll's time is recorded before the refusal is sent, so the next
    # poll is measured from it.
    refusal = deny(error, ip=ip, **context)
    # The poll's record is dropped if another node recorded the user's
    # decision first: the device is told to poll again all the same.
    return Decision({}, [DevicePut(code)], (), refusal=refusal, context=context,
                    lost=lambda: Decision({}, refusal=refusal, context=context))


def _tokens(ctx: Context, client: Client, code: DeviceCode, ip: str,
            context: dict[str, object]) -> Decision[Body]:
    user = ctx.state.users.get(code.user)
    if user is None or user.disabled:
        raise deny(errors.invalid_grant("the user who approved the request is gone"), ip=ip, **context)
    if not scopes.within(code.scope, client.scope):
        raise deny(errors.invalid_grant("the client may no longer have the scope approved"),
                   ip=ip, **context)
    records: list[Record] = [DevicePut(evolve(code, status="redeemed", polled_at=ctx.now())),
                             *family_limit_records(ctx, client, code.user)]
    access = access_token(ctx, client, scope=code.scope, lifetime=client.access_ttl,
                          user=code.user, grant=code.grant)
    records.append(access.record)
    refresh = None
    if "refresh_token" in client.grant_types:
        refresh = mint(ctx, REFRESH, scope=code.scope, lifetime=client.refresh_ttl,
                       client_id=client.id, user=code.user, grant=code.grant)
        records.append(refresh.record)
    # Redeemed first on another node (the shared log's claim on the code).
    secret = refresh.secret if refresh else ""
    return issued(records, client, "device_code", ip, access, secret, lost=lambda: Decision[Body](
        {}, refusal=deny(errors.invalid_grant("the device code was already used"), ip=ip, **context),
        context=context))


def device_error(error: str, description: str) -> OAuthError:
    """
    RFC 8628 section 3.5's errors for a device's poll.
    """
    return OAuthError(error, description)
