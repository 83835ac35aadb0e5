// A relying party on panva's oauth4webapi (the flow, strictly checked) and
// jose (the ID tokens' signatures against the JWKS), driven by
// tests/test_interop_oidc.py, which plays the browser: this script prints
// one JSON object per line ({"step": ...}) and reads the browser's answers
// from stdin, one JSON object per line.
//
//   node rp.mjs ISSUER CLIENT_ID REDIRECT_URI POST_LOGOUT_REDIRECT_URI

import * as oauth from 'oauth4webapi'
import * as jose from 'jose'
import { createInterface } from 'node:readline'

const [issuer, clientId, redirectUri, postLogoutRedirectUri] = process.argv.slice(2)
const insecure = { [oauth.allowInsecureRequests]: true } // the daemon listens on plain loopback http
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]()

setTimeout(() => {
  console.error('rp.mjs: no answer from the browser in time')
  process.exit(2)
}, 60_000).unref()

function say(step, fields = {}) {
  process.stdout.write(JSON.stringify({ step, ...fields }) + '\n')
}

async function hear() {
  const { value, done } = await lines.next()
  if (done) throw new Error('the browser went away')
  return JSON.parse(value)
}

function check(condition, message) {
  if (!condition) throw new Error(message)
}

const as = await oauth.processDiscoveryResponse(
  new URL(issuer), await oauth.discoveryRequest(new URL(issuer), { ...insecure, algorithm: 'oidc' }))
for (const field of ['jwks_uri', 'end_session_endpoint', 'userinfo_endpoint']) {
  check(typeof as[field] === 'string', `discovery lacks ${field}`)
}
const client = { client_id: clientId }
const jwks = jose.createRemoteJWKSet(new URL(as.jwks_uri))
const algorithms = as.id_token_signing_alg_values_supported

async function verified(idToken) {
  const { payload, protectedHeader } = await jose.jwtVerify(
    idToken, jwks, { issuer, audience: clientId, algorithms })
  check(typeof protectedHeader.kid === 'string', 'the ID token names no kid')
  return payload
}

// Code + PKCE (S256) with a nonce.
const verifier = oauth.generateRandomCodeVerifier()
const nonce = oauth.generateRandomNonce()
const state = oauth.generateRandomState()
const authorize = new URL(as.authorization_endpoint)
for (const [name, value] of Object.entries({
  client_id: clientId, redirect_uri: redirectUri, response_type: 'code',
  scope: 'openid profile email', state, nonce,
  code_challenge: await oauth.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256',
})) authorize.searchParams.set(name, value)
say('authorize', { url: authorize.href })

const { callback } = await hear()
const params = oauth.validateAuthResponse(as, client, new URL(callback), state)
const tokens = await oauth.processAuthorizationCodeResponse(as, client,
  await oauth.authorizationCodeGrantRequest(as, client, oauth.None(), params, redirectUri, verifier, insecure),
  { expectedNonce: nonce, requireIdToken: true })
const claims = oauth.getValidatedIdTokenClaims(tokens)
const signed = await verified(tokens.id_token)
check(signed.nonce === nonce && signed.sub === claims.sub, 'the verified ID token differs')
check(typeof signed.sid === 'string', 'the ID token has no sid')

const userinfo = await oauth.processUserInfoResponse(as, client, claims.sub,
  await oauth.userInfoRequest(as, client, tokens.access_token, insecure))

const refreshed = await oauth.processRefreshTokenResponse(as, client,
  await oauth.refreshTokenGrantRequest(as, client, oauth.None(), tokens.refresh_token, insecure))
check(refreshed.access_token !== tokens.access_token, 'refresh gave the same access token')
if (refreshed.id_token) {
  const again = await verified(refreshed.id_token)
  check(again.sub === claims.sub && again.auth_time === claims.auth_time, 'the refreshed ID token differs')
}
await oauth.processUserInfoResponse(as, client, claims.sub,
  await oauth.userInfoRequest(as, client, refreshed.access_token, insecure))

// RP-initiated logout: the browser goes to the end-session endpoint.
const logoutState = oauth.generateRandomState()
const logout = new URL(as.end_session_endpoint)
for (const [name, value] of Object.entries({
  id_token_hint: tokens.id_token, post_logout_redirect_uri: postLogoutRedirectUri, state: logoutState,
  client_id: clientId, ui_locales: 'en',
})) logout.searchParams.set(name, value)
say('logout', { url: logout.href, state: logoutState })

say('done', { sub: claims.sub, sid: signed.sid, userinfo, refreshed_id_token: Boolean(refreshed.id_token) })
process.exit(0)
