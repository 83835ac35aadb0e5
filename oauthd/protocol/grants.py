"""
The protocol layer behind the HTTP edge: client authentication, the token
endpoint's grants (RFC 6749), bearer-token checks (RFC 6750), revocation (RFC
7009), introspection (RFC 7662), userinfo (OpenID Connect Core 5.3) and
PhotoPrism's login sessions.

Each entry point takes a request the edge has already parsed (parameters as
text, the client credentials offered, the bearer token presented, the
client's address) and answers with a JSON-ready dict, or fails with an
L{OAuthError} whose C{context} carries the audit fields; the edge renders
both and logs every refusal once. Every change is committed through the
store, and the answer fires only once the change is durable.

Nothing here does I/O of its own: time comes from the authority's clock,
bcrypt runs in the hasher's pool, and the rate limiter is in memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from attrs import frozen

from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure

from oauthd.protocol import errors

from oauthd.protocol import scopes

from oauthd.protocol import tokens
from oauthd.protocol.authority import Authority, derived_label
from oauthd.protocol.errors import OAuthError
from oauthd.interfaces import MAX_PASSWORD_BYTES, HasherBusy
from oauthd.protocol.limits import CLIENT, LOGIN_IP, TOKEN_IP, USERNAME, RateLimiter, Rule, ip_key
from oauthd.state.model import (
    ACCESS,
    APP_PASSWORD,
    REFRESH,
    SESSION,
    USED_REFRESH,
    Client,
    Record,
    State,
    Token,
    User,
)

Body = dict[str, object]
Params = Mapping[str, str]

GRANT_TYPES = frozenset({"client_credentials", "password", "refresh_token"})
"""
The grant types the token endpoint serves (the others in
L{oauthd.protocol.authority.GRANT_TYPES} get C{unsupported_grant_type} until built).
"""

CLIENT_AUTH_METHODS = frozenset({"client_secret_basic", "client_secret_post", "none"})

CLAIMS = frozenset({"sub", "preferred_username", "name", "email"})
"""
The OpenID claims userinfo can return.
"""

BEARER_KINDS = frozenset({ACCESS, APP_PASSWORD, SESSION})
"""
Token kinds that may be presented as a bearer token; a refresh token may not.
"""

MAX_SESSIONS = 20
"""
The most live login sessions per user; logging in once more ends the oldest.
"""

MAX_PARAMETER = 4096
"""
The longest parameter value read; longer ones are refused before any work.
"""

WRONG_LOGIN = "the username or password is wrong"


@frozen
class ClientAuth:
    """
    The client credentials a request offered.

    @ivar basic: client id and secret from C{Authorization: Basic}, already
        form-decoded (RFC 6749 section 2.3.1).
    @ivar client_id: the C{client_id} body parameter.
    @ivar client_secret: the C{client_secret} body parameter.
    """

    basic: tuple[str, str] | None = None
    client_id: str = ""
    client_secret: str = ""


def safe_text(value: str, limit: int = 40) -> str:
    """
    C{value} cut short and reduced to the characters RFC 6749 allows in an
    C{error_description} (printable ASCII but C{"} and C{\\}), so user input
    echoed in an error can break neither JSON nor a header.
    """
    out = "".join(c if " " <= c <= "~" and c not in '"\\' else "?" for c in value[:limit])
    return out + ("..." if len(value) > limit else "")


def second_factor_required(user: User) -> bool:
    """
    Whether C{user} has turned on two-factor authentication.

    The seam for TOTP, which comes later: such a user may then log in at the
    token endpoint only with an app password (PhotoPrism's rule), and a
    session login will ask for the code. No user has it yet.
    """
    return False


def _valid_username(name: str) -> bool:
    return 1 <= len(name) <= 64 and all(c.isascii() and (c.isalnum() or c in "._@-") for c in name)


def _intersect(a: str, b: str) -> str:
    """
    The scope both C{a} and C{b} grant, canonical.
    """
    if scopes.ALL in scopes.names(a):
        return b
    if scopes.ALL in scopes.names(b):
        return a
    return " ".join(sorted(scopes.names(a) & scopes.names(b)))


def _deny(error: OAuthError, **context: object) -> OAuthError:
    error.context.update((k, v) for k, v in context.items() if v not in (None, ""))
    return error


class Grants:
    """
    The token endpoint and its neighbours.

    @ivar authority: clients, users, tokens and the store.
    @ivar limiter: the failure rate limits.
    """

    def __init__(self, authority: Authority, limiter: RateLimiter) -> None:
        self.authority = authority
        self.limiter = limiter

    @property
    def state(self) -> State:
        return self.authority.state

    # -- shared steps --------------------------------------------------------

    def _refuse(self, error: OAuthError, ip: str, charges: list[tuple[Rule, str]],
                **context: object) -> OAuthError:
        """
        Count a failed attempt against each bucket and return the error to
        raise: C{error}, or a 429 if a bucket was already empty.
        """
        retry = max((self.limiter.retry_after(rule, key) for rule, key in charges), default=0)
        if not retry:
            # Only a caller not yet limited is charged: one already answered
            # 429 must not be able to fill the limiter with new buckets (and
            # so push out everyone else's).
            for rule, key in charges:
                self.limiter.charge(rule, key)
        if retry:
            limited = errors.too_many_requests(retry)
            context = {"reason": error.description, **context}
            return _deny(limited, ip=ip, limit=",".join(r.name for r, _ in charges), **context)
        return _deny(error, ip=ip, **context)

    def _guard(self, charges: list[tuple[Rule, str]], ip: str, **context: object) -> None:
        """
        Refuse at once, before any check, while a bucket is empty: for
        secrets a person chooses, whose check must not run then.
        """
        retry = max(self.limiter.retry_after(rule, key) for rule, key in charges)
        if retry:
            raise _deny(errors.too_many_requests(retry), ip=ip,
                        limit=",".join(r.name for r, _ in charges), **context)

    def _durable(self, records: list[Record], **context: object) -> Deferred[None]:
        """
        Commit C{records}; fires once they are on disk, or fails with
        C{temporarily_unavailable} if the journal cannot take them, audited
        with C{context} (who and what the change was for).
        """

        def failed(failure: Failure) -> Failure:
            error = errors.temporarily_unavailable("the change could not be recorded; try again")
            return Failure(_deny(error, reason="journal: " + type(failure.value).__name__, **context))

        return self.authority.store.commit(records).addErrback(failed)

    def _requested_scope(self, params: Params, allowed: str, default: str, **context: object) -> str:
        """
        The normalized C{scope} parameter, which must lie within C{allowed};
        C{default} when absent (RFC 6749 section 3.3).
        """
        raw = params.get("scope", "")
        if not raw.strip():
            return default
        try:
            scope = self.authority.scope(raw)
        except scopes.ScopeError as e:
            raise _deny(errors.invalid_scope(safe_text(str(e), 100)), **context) from None
        if not scopes.within(scope, allowed):
            raise _deny(errors.invalid_scope("the requested scope exceeds what may be granted"),
                        scope=scope, **context)
        return scope

    def _lookup(self, secret: str) -> Token | None:
        """
        The live token (of any kind) whose secret is C{secret}.
        """
        return self.authority.authenticate_token(secret)

    def _app_password_of(self, token: Token) -> Token | None:
        """
        The live app password a token was obtained with, if its label links
        it to one.
        """
        if not token.label.startswith("from ") or not token.user:
            return None
        for other in self.state.user_tokens(token.user, self.authority.now()):
            if other.kind == APP_PASSWORD and derived_label(other) == token.label:
                return other
        return None

    def _capped(self, lifetime: int, app: Token | None) -> int:
        """
        C{lifetime}, shortened so a token obtained with an app password ends
        no later than the app password.
        """
        if app is None or not app.lifetime:
            return lifetime
        return max(1, min(lifetime, app.expires_at - self.authority.now()))

    # -- client authentication (RFC 6749 section 2.3) ----------------------

    def identify_client(self, auth: ClientAuth, ip: str) -> Client | None:
        """
        The client a request comes from, authenticated: a confidential
        client by its secret (Basic or in the body, never both), a public one
        by its id alone. C{None} if the request offered no client
        credentials at all.

        @raise OAuthError: C{invalid_request} for two methods at once,
            C{invalid_client} (401) for anything that does not authenticate,
            or 429 once the failure limits are reached.
        """
        basic = auth.basic is not None
        if auth.basic is not None:
            if auth.client_secret:
                raise errors.invalid_request("use one client authentication method, not two")
            client_id, secret = auth.basic
            if auth.client_id and auth.client_id != client_id:
                raise errors.invalid_request("client_id differs from the Authorization header")
        elif auth.client_id:
            client_id, secret = auth.client_id, auth.client_secret
        elif auth.client_secret:
            raise errors.invalid_request("client_secret was sent without client_id")
        else:
            return None
        client = self.state.clients.get(client_id)
        if secret:
            found = self.authority.authenticate_client(client_id, secret)
            if found is not None:
                return found
            if client is None:
                reason = "unknown client"
            elif not client.enabled:
                reason = "client disabled"
            elif client.public:
                reason = "a public client sent a secret"
            else:
                reason = "wrong client secret"
        elif client is not None and client.public and client.enabled:
            return client
        else:
            reason = "no client secret" if client is not None else "unknown client"
        charges = [(LOGIN_IP, ip_key(ip))]
        if client is not None:
            charges.append((CLIENT, client.id))
        raise self._refuse(
            errors.invalid_client("client authentication failed", basic), ip, charges,
            client=client.id if client is not None else "", reason=reason,
        )

    # -- the token endpoint (RFC 6749 sections 4-6) -----------------------

    def token(self, params: Params, auth: ClientAuth, ip: str) -> Deferred[Body]:
        """
        Answer a token request; fires with the RFC 6749 section 5.1 body
        (plus PhotoPrism's C{status}, C{session_id} and C{client_name}) once
        what it issued is durable.
        """
        grant_type = params.get("grant_type", "")
        if grant_type and grant_type not in GRANT_TYPES:
            raise errors.unsupported_grant_type(f"grant type {safe_text(grant_type)} is not supported")
        client = self.identify_client(auth, ip)
        if client is None:
            raise _deny(errors.invalid_client("client authentication is required", False), ip=ip)
        if not grant_type:
            if client.public:
                raise _deny(errors.invalid_request("grant_type is required"), client=client.id)
            # PhotoPrism: an authenticated request without a grant type asks
            # for client credentials.
            grant_type = "client_credentials"
        if grant_type not in client.grant_types:
            raise _deny(
                errors.unauthorized_client(f"this client may not use the {grant_type} grant"),
                ip=ip, client=client.id, grant=grant_type,
            )
        if grant_type == "client_credentials":
            return self._client_credentials(client, params, ip)
        if grant_type == "password":
            return Deferred.fromCoroutine(self._password(client, params, ip))
        return self._refresh(client, params, ip)

    def _issued(
        self, records: list[Record], client: Client, grant_type: str, ip: str,
        access: str, token: Token, refresh: str = "",
    ) -> Deferred[Body]:
        body: Body = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": token.lifetime,
            "scope": token.scope,
        }
        if refresh:
            body["refresh_token"] = refresh
        body["status"] = "success"
        body["session_id"] = tokens.session_id(access)
        body["client_name"] = client.name

        context = {"client": client.id, "user": token.user, "token": token.handle, "grant": grant_type}

        def done(_: object) -> Body:
            self.authority.audit("token.issue", "ok", ip=ip, scope=token.scope,
                                 refresh="yes" if refresh else "", **context)
            return body

        return self._durable(records, **context).addCallback(done)

    def _client_credentials(self, client: Client, params: Params, ip: str) -> Deferred[Body]:
        if client.public:
            raise _deny(errors.unauthorized_client("a public client cannot use client_credentials"),
                        client=client.id)
        scope = self._requested_scope(params, client.scope, client.scope, client=client.id)
        if client.user:
            owner = self.state.users.get(client.user)
            if owner is None or owner.disabled:
                raise _deny(errors.unauthorized_client("the client's user is disabled"),
                            client=client.id, user=client.user)
        secret, record = self.authority.mint(
            ACCESS, scope=scope, lifetime=client.access_ttl, client_id=client.id,
            user=client.user,
        )
        records = self.authority.token_limit_records(client)
        records.append(record)
        token = _token_of(record)
        return self._issued(records, client, "client_credentials", ip, secret, token)

    def _family_limit_records(self, client: Client, user: str) -> list[Record]:
        """
        Revocations of the user's least recently used grants at C{client}, so
        that one more leaves at most C{client.max_tokens}.
        """
        if client.max_tokens < 0:
            return []
        recent: dict[str, None] = {}
        for t in self.state.user_tokens(user, self.authority.now()):
            if t.client_id == client.id and t.grant:
                recent.pop(t.grant, None)
                recent[t.grant] = None
        excess = len(recent) + 1 - client.max_tokens
        return [["grant-", g] for g in list(recent)[:max(0, excess)]]

    async def _password(self, client: Client, params: Params, ip: str) -> Body:
        username, password = self._credentials(params)
        scope = self._requested_scope(params, client.scope, client.scope, client=client.id)
        user, app = await self._login(username, password, ip, client=client.id)
        current = self.state.clients.get(client.id)
        if current is None or not current.enabled:
            raise _deny(errors.invalid_client("the client was disabled", False),
                        ip=ip, client=client.id)
        client = current
        if "password" not in client.grant_types:
            raise _deny(errors.unauthorized_client("the client may not use the password grant"),
                        ip=ip, client=client.id)
        # The client may have changed while the password was checked.
        scope = self._requested_scope(params, client.scope, client.scope, client=client.id)
        if app is not None:
            if params.get("scope", "").strip():
                if not scopes.within(scope, app.scope):
                    raise _deny(errors.invalid_scope("the scope exceeds the app password's"),
                                ip=ip, client=client.id, user=user.name, token=app.handle)
            else:
                scope = _intersect(scope, app.scope)
                if not scope:
                    raise _deny(errors.invalid_scope("the app password grants no scope this client may have"),
                                ip=ip, client=client.id, user=user.name, token=app.handle)
        grant = self.authority.new_grant_id()
        label = derived_label(app) if app is not None else ""
        records = self._family_limit_records(client, user.name)
        secret, record = self.authority.mint(
            ACCESS, scope=scope, lifetime=self._capped(client.access_ttl, app),
            client_id=client.id, user=user.name, grant=grant, label=label,
        )
        records.append(record)
        refresh = ""
        if "refresh_token" in client.grant_types:
            refresh, refresh_record = self.authority.mint(
                REFRESH, scope=scope, lifetime=self._capped(client.refresh_ttl, app),
                client_id=client.id, user=user.name, grant=grant, label=label,
            )
            records.append(refresh_record)
        return await self._issued(records, client, "password", ip, secret, _token_of(record), refresh)

    def _credentials(self, params: Params) -> tuple[str, str]:
        username = params.get("username", "")
        password = params.get("password", "")
        if not username:
            raise errors.invalid_request("username is required")
        if not password:
            raise errors.invalid_request("password is required")
        if len(password.encode("utf-8", "surrogatepass")) > MAX_PASSWORD_BYTES:
            raise errors.invalid_request(f"passwords are limited to {MAX_PASSWORD_BYTES} bytes")
        return username.strip().lower(), password

    async def _login(self, name: str, password: str, ip: str, **context: object) -> tuple[User, Token | None]:
        """
        The user C{name} if C{password} is the user's own password or one of
        the user's app passwords, and that app password.

        The audit names the user only if one by that name exists: a name
        that matches no one may be a password typed into the wrong field.
        """
        known = name if name in self.state.users else ""
        charges = [(LOGIN_IP, ip_key(ip)), (USERNAME, name[:64])]
        if tokens.is_app_password(password):
            # Unguessable: always checked, never blocked when right.
            app = self._lookup(password)
            user = self.state.users.get(name)
            if (app is not None and app.kind == APP_PASSWORD and app.user == name
                    and user is not None and not user.disabled):
                return user, app
            raise self._refuse(errors.invalid_grant(WRONG_LOGIN), ip, charges,
                               user=known, reason="wrong app password", **context)
        self._guard(charges, ip, user=known, **context)
        if not _valid_username(name):
            raise self._refuse(errors.invalid_grant(WRONG_LOGIN), ip, charges,
                               reason="malformed username", **context)
        try:
            checked = await self.authority.check_password(name, password)
        except HasherBusy:
            raise _deny(errors.temporarily_unavailable("too many logins at once; try again"),
                        ip=ip, user=known, **context) from None
        if checked is None:
            raise self._refuse(errors.invalid_grant(WRONG_LOGIN), ip, charges,
                               user=known, reason="wrong password or unknown user", **context)
        if second_factor_required(checked):
            raise _deny(errors.invalid_grant(
                "this account uses two-factor authentication: log in with an app password"),
                ip=ip, user=name, **context)
        return checked, None

    def _refresh(self, client: Client, params: Params, ip: str) -> Deferred[Body]:
        presented = params.get("refresh_token", "")
        if not presented:
            raise errors.invalid_request("refresh_token is required")
        token = self._lookup(presented) if tokens.is_access_token(presented) else None
        if token is None or token.kind not in (REFRESH, USED_REFRESH):
            raise self._refuse(
                errors.invalid_grant("the refresh token is invalid, expired or revoked"),
                ip, [(TOKEN_IP, ip_key(ip))], client=client.id,
            )
        if token.client_id != client.id:
            raise self._refuse(
                errors.invalid_grant("the refresh token was issued to another client"),
                ip, [(TOKEN_IP, ip_key(ip))], client=client.id, token=token.handle,
            )
        if token.kind == USED_REFRESH:
            return self._reused(token, client, ip)
        scope = self._requested_scope(params, token.scope, token.scope,
                                      client=client.id, user=token.user)
        if not scopes.within(scope, client.scope):
            raise _deny(errors.invalid_scope("the client may no longer be granted this scope"),
                        client=client.id, user=token.user, scope=scope)
        app = None
        if token.label:
            app = self._app_password_of(token)
            if app is None:
                raise _deny(errors.invalid_grant("the app password this grant came from is revoked"),
                            client=client.id, user=token.user, token=token.handle)
        records: list[Record] = [["used", tokens.key_hex(token.key)]]
        if client.max_tokens >= 0:
            live = [t for t in self.state.grant_tokens(token.grant, self.authority.now())
                    if t.kind == ACCESS]
            for old in live[:max(0, len(live) + 1 - client.max_tokens)]:
                records.append(["tok-", tokens.key_hex(old.key)])
        secret, record = self.authority.mint(
            ACCESS, scope=scope, lifetime=self._capped(client.access_ttl, app),
            client_id=client.id, user=token.user, grant=token.grant, label=token.label,
        )
        # The new refresh token keeps the grant's scope (RFC 6749 section 6):
        # a narrower access token now does not narrow later ones.
        refresh, refresh_record = self.authority.mint(
            REFRESH, scope=token.scope, lifetime=self._capped(client.refresh_ttl, app),
            client_id=client.id, user=token.user, grant=token.grant, label=token.label,
        )
        records += [record, refresh_record]
        return self._issued(records, client, "refresh_token", ip, secret, _token_of(record), refresh)

    def _reused(self, token: Token, client: Client, ip: str) -> Deferred[Body]:
        """
        A used refresh token came back: whoever holds it, the grant is
        compromised, so every token of the family is revoked (RFC 9700
        section 4.14.2) before the refusal is sent.
        """
        context = {"client": client.id, "user": token.user, "token": token.handle}
        error = _deny(
            errors.invalid_grant("the refresh token was already used; the grant is revoked"),
            ip=ip, reason="refresh token reuse", **context,
        )

        def revoked(_: object) -> Body:
            self.authority.audit("token.revoke", "ok", ip=ip, grant=token.grant,
                                 reason="refresh token reuse", **context)
            raise error

        return self._durable([["grant-", token.grant]], grant=token.grant, **context).addCallback(revoked)

    # -- bearer tokens (RFC 6750) ------------------------------------------

    def bearer(self, presented: str | None, ip: str) -> Token:
        """
        The live token a request presented as its bearer credential.

        @raise OAuthError: 401 with a bare Bearer challenge if none was
            presented; 401 C{invalid_token} if it is malformed, unknown,
            expired, revoked or not a bearer token; 429 once the address has
            failed too often.
        """
        if presented is None:
            raise errors.missing_token()
        token = self.authority.authenticate_token(presented)
        if token is None or token.kind not in BEARER_KINDS:
            raise self._refuse(
                errors.invalid_token("the access token is invalid, expired or revoked"),
                ip, [(TOKEN_IP, ip_key(ip))],
            )
        return token

    # -- revocation (RFC 7009) ----------------------------------------------

    def revoke(self, params: Params, auth: ClientAuth, presented: str | None, ip: str) -> Deferred[Body]:
        """
        Revoke a token. A client authenticates (or a public one identifies
        itself) and may revoke only its own tokens; without client
        credentials, PhotoPrism's way: the token in the header revokes itself
        (empty body), or names another token of the same user to revoke (by
        value, session id or handle) if it has full scope.

        Whatever is named, found or not, the answer is 200 (RFC 7009 section
        2.2): only the audit log tells them apart. C{token_type_hint} is not
        needed: every token is found by its value alone.
        """
        target = params.get("token", "")
        client = self.identify_client(auth, ip)
        if client is not None:
            if not target:
                raise _deny(errors.invalid_request("token is required"), client=client.id)
            token = self._lookup(target)
            if token is None:
                self.authority.audit("token.revoke", "ok", client=client.id, ip=ip, reason="unknown token")
                return succeed({"status": "deleted"})
            if token.client_id != client.id:
                self.authority.audit("token.revoke", "denied", client=client.id, ip=ip, token=token.handle,
                      reason="another client's token")
                return succeed({"status": "deleted"})
            return self._revoke(token, ip, client.id, {"status": "deleted"})
        if presented is None:
            raise _deny(errors.invalid_client("client authentication is required", False), ip=ip)
        caller = self.bearer(presented, ip)
        if not target:
            return self._revoke(caller, ip, "self", {
                "status": "deleted", "session_id": tokens.session_id(presented)})
        token = self._find_own(target, caller)
        if token is None:
            self.authority.audit("token.revoke", "denied", ip=ip, user=caller.user, by=caller.handle,
                  reason="unknown token or not the caller's")
            return succeed({"status": "deleted"})
        return self._revoke(token, ip, caller.handle, {"status": "deleted"})

    def _find_own(self, reference: str, caller: Token) -> Token | None:
        """
        The token named by C{reference} (its value, session id or handle) if
        C{caller} may revoke it: itself, or any of its user's tokens if the
        caller has full scope. Handles are looked up among the caller's
        user's tokens only, never by a scan of all.
        """
        key = tokens.key_from_session_id(reference)
        if key is not None:
            token = self.state.token(key, self.authority.now())
        elif tokens.is_handle(reference):
            token = caller if caller.handle == reference else None
            if token is None and caller.user:
                token = next((t for t in self.state.user_tokens(caller.user, self.authority.now())
                              if t.handle == reference), None)
        else:
            token = self._lookup(reference)
        if token is None:
            return None
        if token.key == caller.key:
            return token
        if caller.user and token.user == caller.user and scopes.ALL in scopes.names(caller.scope):
            return token
        return None

    def _revoke(self, token: Token, ip: str, by: str, body: Body) -> Deferred[Body]:
        records = self.authority.revocation_records(token)
        context = {"client": token.client_id, "user": token.user, "token": token.handle}

        def done(_: object) -> Body:
            self.authority.audit("token.revoke", "ok", ip=ip, kind=token.kind, by=by,
                                 family="yes" if records[0][0] == "grant-" else "", **context)
            return body

        return self._durable(records, **context).addCallback(done)

    # -- introspection (RFC 7662) -------------------------------------------

    def introspect(self, params: Params, auth: ClientAuth, presented: str | None, ip: str) -> Body:
        """
        Describe a token to an authenticated confidential client, or to a
        bearer with the C{introspect} scope. A live token gets its details;
        anything else exactly C{{"active": false}}.

        Misses are not charged to the rate limits: a resource server passes
        on whatever tokens its own clients send.
        """
        client = self.identify_client(auth, ip)
        if client is not None:
            if client.public:
                raise _deny(errors.invalid_client("a public client cannot introspect",
                                                  auth.basic is not None),
                            ip=ip, client=client.id)
        elif presented is not None:
            caller = self.bearer(presented, ip)
            # Named explicitly: "*" (every login session has it) does not
            # open other people's tokens to inspection.
            if "introspect" not in scopes.names(caller.scope):
                raise _deny(errors.insufficient_scope("introspect"), ip=ip, token=caller.handle)
        else:
            raise _deny(errors.invalid_client("client authentication is required", False), ip=ip)
        target = params.get("token", "")
        if not target:
            raise errors.invalid_request("token is required")
        token = self._lookup(target)
        if token is None or token.kind == USED_REFRESH:
            return {"active": False}
        body: Body = {
            "active": True,
            "scope": token.scope,
            "client_id": token.client_id,
            "username": token.user,
            "token_type": "refresh_token" if token.kind == REFRESH else "Bearer",
            "exp": token.expires_at,
            "iat": token.issued_at,
            "sub": token.user or token.client_id,
            "iss": self.authority.config.issuer,
        }
        return {k: v for k, v in body.items() if v not in ("", 0)}

    # -- userinfo (OpenID Connect Core 5.3) ----------------------------------

    def userinfo(self, presented: str | None, ip: str) -> Body:
        """
        The claims about the user a token is bound to, as its scope allows:
        C{sub} always, C{preferred_username} and C{name} with C{profile},
        C{email} with C{email}. The token needs the C{openid} scope.

        A token bound to no user (client credentials) is refused with 401
        C{invalid_token}: RFC 6750 section 3.1's "invalid for other
        reasons"; there is no user to describe.
        """
        token = self.bearer(presented, ip)
        user = self.state.users.get(token.user) if token.user else None
        if user is None or user.disabled:
            raise _deny(errors.invalid_token("the access token is not bound to a user"),
                        ip=ip, token=token.handle, client=token.client_id)
        if not scopes.permits(token.scope, "openid"):
            raise _deny(errors.insufficient_scope("openid"), ip=ip, token=token.handle)
        claims: Body = {"sub": user.name}
        if scopes.permits(token.scope, "profile"):
            claims["preferred_username"] = user.name
            if user.full_name:
                claims["name"] = user.full_name
        if scopes.permits(token.scope, "email") and user.email:
            claims["email"] = user.email
        return claims

    # -- PhotoPrism sessions ------------------------------------------------

    async def create_session(self, params: Params, ip: str) -> Body:
        """
        Log in with a username and password or app password and get a
        short-lived session token (PhotoPrism's C{POST /api/v1/session}).
        A session from an app password has its scope and ends no later; one
        from the password has full scope.
        """
        username, password = self._credentials(params)
        user, app = await self._login(username, password, ip)
        scope = app.scope if app is not None else scopes.ALL
        now = self.authority.now()
        live = [t for t in self.state.user_tokens(user.name, now) if t.kind == SESSION]
        records: list[Record] = [
            ["tok-", tokens.key_hex(t.key)] for t in live[:max(0, len(live) + 1 - MAX_SESSIONS)]
        ]
        lifetime = self._capped(self.authority.config.session_ttl, app)
        secret, record = self.authority.mint(
            SESSION, scope=scope, lifetime=lifetime, user=user.name,
            label=derived_label(app) if app is not None else "",
        )
        records.append(record)
        token = _token_of(record)
        context = {"user": user.name, "token": token.handle}
        await self._durable(records, **context)
        self.authority.audit("session.create", "ok", ip=ip, via=app.handle if app is not None else "password",
                             **context)
        return {
            "status": "success",
            "id": secret,
            "session_id": tokens.session_id(secret),
            "access_token": secret,
            "token_type": "Bearer",
            "expires_in": lifetime,
            "scope": scope,
            "provider": "application" if app is not None else "local",
            "user": {
                "Name": user.name, "DisplayName": user.full_name, "Email": user.email,
                "Role": user.role,
            },
        }

    def delete_session(self, presented: str | None, ip: str, reference: str | None = None) -> Deferred[Body]:
        """
        Log out: end the session presented (PhotoPrism's C{DELETE
        /api/v1/session}); C{reference}, if given, must name that same
        session (its session id or handle).
        """
        token = self.bearer(presented, ip)
        assert presented is not None
        if token.kind != SESSION:
            raise _deny(OAuthError("invalid_request",
                                   "the token is not a login session; revoke it at /api/v1/oauth/revoke"),
                        ip=ip, token=token.handle)
        session_id = tokens.session_id(presented)
        if reference is not None and reference not in (session_id, token.handle):
            raise _deny(OAuthError("access_denied", "only your own session can be ended here", 403),
                        ip=ip, token=token.handle, user=token.user)
        return self._revoke(token, ip, "self", {"status": "deleted", "session_id": session_id})


def _token_of(record: Record) -> Token:
    """
    The token a C{tok} record issues (before it is committed), for building
    the answer.
    """
    fields: list[Any] = record[1:]
    return Token(int(fields[0], 16), *fields[1:])
