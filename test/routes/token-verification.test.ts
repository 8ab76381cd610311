/**
 * Access tokens as a resource server sees them: a standard library verifies the issued token from
 * the JWKS alone, and GET /v1/me refuses every forged, altered or misdirected token with RFC 6750
 * answers. Validly-signed tokens with chosen claims are minted with the app's own signing key
 * (`keyRing.signingKey()`), so each refusal is for the claim under test and not the signature.
 */
import { createHmac, createPublicKey, randomUUID } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  exportJWK,
  generateKeyPair,
  type JWK,
  type JWTHeaderParameters,
  jwtVerify,
  SignJWT,
} from 'jose'
import t, { type Test } from 'tap'
import { build, TestClock } from '../helpers/app.js'
import { STRONG_PASSWORD, signUpAndLogin } from '../helpers/flows.js'
import { startSmtpServer } from '../helpers/smtp.js'

const RFC_8176_AMR = ['pwd', 'otp', 'mfa', 'hwk', 'fed']
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

const b64 = (value: unknown) =>
  Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url')

t.test('access token verification', async (t) => {
  const smtp = await startSmtpServer()
  t.teardown(() => smtp.close())
  const { app, config } = await build(t, { SMTP_URL: smtp.url })
  const email = 'verifier@example.com'
  const tokens = await signUpAndLogin(app, smtp, email)
  const issued = tokens.access_token
  const issuedClaims = decodeJwt(issued)
  const issuedHeader = decodeProtectedHeader(issued)
  const realKid = issuedHeader.kid!

  const me = (authorization?: string, url = '/v1/me') =>
    app.inject({ method: 'GET', url, headers: authorization === undefined ? {} : { authorization } })
  const bearer = (token: string) => me(`Bearer ${token}`)

  /** Signs `claims` with the server's current key; `header` overrides the protected header. */
  async function mint(claims: Record<string, unknown>, header: Partial<JWTHeaderParameters> = {}) {
    const { kid, alg, privateKey } = app.services.keyRing.signingKey()
    return new SignJWT(claims).setProtectedHeader({ alg, kid, typ: 'at+jwt', ...header }).sign(privateKey)
  }
  /** The issued token's claims, with a fresh jti and `changes` applied (undefined removes). */
  function claimsWith(changes: Record<string, unknown> = {}): Record<string, unknown> {
    const claims: Record<string, unknown> = { ...issuedClaims, jti: randomUUID(), ...changes }
    for (const [name, value] of Object.entries(changes)) if (value === undefined) delete claims[name]
    return claims
  }
  const nowSeconds = () => Math.floor(Date.now() / 1000)

  async function refused(t: Test, response: Awaited<ReturnType<typeof me>>, what: string) {
    t.equal(response.statusCode, 401, `${what}: 401`)
    t.equal(response.headers['www-authenticate'], 'Bearer error="invalid_token"', `${what}: RFC 6750 header`)
    t.equal(response.headers['content-type'], 'application/problem+json; charset=utf-8')
    t.equal(response.json().code, 'invalid_token', `${what}: code`)
  }

  t.test('a standard library verifies the issued token from the JWKS alone', async (t) => {
    await app.listen({ port: 0, host: '127.0.0.1' })
    const { port } = app.server.address() as AddressInfo
    const jwksUrl = new URL(`http://127.0.0.1:${port}/.well-known/jwks.json`)

    const served = await fetch(jwksUrl)
    t.equal(served.status, 200)
    t.match(served.headers.get('cache-control'), /^public, max-age=\d+$/)
    const jwks = (await served.json()) as { keys: JWK[] }
    t.ok(
      jwks.keys.some((key) => key.kid === realKid),
      'the signing key is published',
    )
    for (const key of jwks.keys) {
      for (const member of ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k']) {
        t.notOk(member in key, `${key.kid}: no private member ${member}`)
      }
    }

    const { payload, protectedHeader } = await jwtVerify(issued, createRemoteJWKSet(jwksUrl), {
      typ: 'at+jwt',
      issuer: config.ISSUER,
      audience: config.ACCESS_TOKEN_AUDIENCE,
      algorithms: ['RS256'],
    })
    t.equal(protectedHeader.alg, 'RS256')
    t.equal(protectedHeader.typ, 'at+jwt')
    t.type(protectedHeader.kid, 'string')

    t.equal(payload.iss, config.ISSUER)
    t.match(payload.sub, UUID)
    t.equal(payload.aud, config.ACCESS_TOKEN_AUDIENCE, 'aud is the configured audience')
    for (const name of ['exp', 'iat', 'nbf', 'auth_time'] as const) {
      t.ok(Number.isSafeInteger(payload[name]), `${name} is an integer (NumericDate)`)
    }
    t.equal(payload.exp! - payload.iat!, config.ACCESS_TOKEN_TTL, 'lifetime is ACCESS_TOKEN_TTL')
    t.ok(payload.nbf! <= payload.iat!)
    t.ok((payload.auth_time as number) <= payload.iat!)
    t.ok(Math.abs(payload.iat! - nowSeconds()) < 60, 'iat is now')
    t.match(payload.jti, UUID)
    t.equal(payload.client_id, config.CLIENT_ID)
    t.equal(payload.scope, 'profile sessions', 'scope is a space-separated string')
    t.same(payload.roles, ['user'])
    t.match(payload.sid, UUID)
    t.ok(Array.isArray(payload.amr))
    for (const method of payload.amr as unknown[])
      t.ok(RFC_8176_AMR.includes(method as string), `amr ${method}`)
    t.same(payload.amr, ['pwd'])
  })

  t.test('a validly-signed token with every correct claim is accepted (control)', async (t) => {
    const response = await bearer(await mint(claimsWith()))
    t.equal(response.statusCode, 200)
    t.equal(response.json().email, email)
    t.equal((await bearer(issued)).statusCode, 200, 'and the issued token itself')
    const lowerCase = await me(`bearer ${await mint(claimsWith())}`)
    t.equal(lowerCase.statusCode, 200, 'the auth-scheme is case-insensitive (RFC 7235 §2.1)')
    const applicationTyp = await bearer(await mint(claimsWith(), { typ: 'application/at+jwt' }))
    t.equal(applicationTyp.statusCode, 200, 'typ application/at+jwt is the same media type (RFC 9068 §4)')
  })

  t.test('forged signatures and keys are refused', async (t) => {
    const [encodedHeader, encodedPayload, signature] = issued.split('.') as [string, string, string]

    const none = `${b64({ alg: 'none', kid: realKid, typ: 'at+jwt' })}.${encodedPayload}.`
    await refused(t, await bearer(none), 'alg none, no signature')
    const noneKeepingSignature = `${b64({ alg: 'none', kid: realKid, typ: 'at+jwt' })}.${encodedPayload}.${signature}`
    await refused(t, await bearer(noneKeepingSignature), 'alg none with a signature')
    await refused(t, await bearer(`${encodedHeader}.${encodedPayload}.`), 'RS256 header, signature stripped')

    const jwk = app.services.keyRing.jwks().keys.find((key) => key.kid === realKid)!
    const pem = createPublicKey({ key: jwk as never, format: 'jwk' }).export({ type: 'spki', format: 'pem' })
    t.equal(pem, app.services.keyRing.verificationKey(realKid)!.publicPem, 'the PEM the server verifies with')
    const hsSecrets: [string, string | Buffer][] = [
      ['the public key PEM', pem.toString()],
      ['the public key PEM without its final newline', pem.toString().trim()],
      ['the JWK n as text', jwk.n!],
      ['the JWK n as bytes', Buffer.from(jwk.n!, 'base64url')],
      ['the JWK as JSON', JSON.stringify(jwk)],
    ]
    for (const [name, secret] of hsSecrets) {
      const input = `${b64({ alg: 'HS256', kid: realKid, typ: 'at+jwt' })}.${encodedPayload}`
      const mac = createHmac('sha256', secret).update(input).digest('base64url')
      await refused(t, await bearer(`${input}.${mac}`), `HS256 keyed with ${name}`)
    }

    const foreign = await generateKeyPair('RS256')
    const foreignUnknownKid = await new SignJWT(claimsWith())
      .setProtectedHeader({ alg: 'RS256', kid: 'foreign-key', typ: 'at+jwt' })
      .sign(foreign.privateKey)
    await refused(t, await bearer(foreignUnknownKid), 'a foreign key with an unknown kid')
    const foreignRealKid = await new SignJWT(claimsWith())
      .setProtectedHeader({ alg: 'RS256', kid: realKid, typ: 'at+jwt' })
      .sign(foreign.privateKey)
    await refused(t, await bearer(foreignRealKid), 'a foreign key reusing the real kid')
    const foreignNoKid = await new SignJWT(claimsWith())
      .setProtectedHeader({ alg: 'RS256', typ: 'at+jwt' })
      .sign(foreign.privateKey)
    await refused(t, await bearer(foreignNoKid), 'a foreign key without kid')
    const embeddedJwk = await new SignJWT(claimsWith())
      .setProtectedHeader({
        alg: 'RS256',
        kid: realKid,
        typ: 'at+jwt',
        jwk: await exportJWK(foreign.publicKey),
      })
      .sign(foreign.privateKey)
    await refused(t, await bearer(embeddedJwk), 'a foreign key embedded in the header (jwk)')

    const { privateKey } = app.services.keyRing.signingKey()
    const noKid = await new SignJWT(claimsWith())
      .setProtectedHeader({ alg: 'RS256', typ: 'at+jwt' })
      .sign(privateKey)
    await refused(t, await bearer(noKid), 'the real key but no kid')

    const tamper = (changes: Record<string, unknown>) =>
      `${encodedHeader}.${b64({ ...issuedClaims, ...changes })}.${signature}`
    await refused(t, await bearer(tamper({ sub: randomUUID() })), 'sub changed, signature kept')
    await refused(t, await bearer(tamper({ scope: 'profile sessions admin:users' })), 'scope widened')
    await refused(t, await bearer(tamper({ roles: ['user', 'admin'] })), 'roles widened')
    await refused(t, await bearer(tamper({ exp: (issuedClaims.exp as number) + 86400 })), 'exp extended')
    await refused(
      t,
      await bearer(`${encodedHeader}.${encodedPayload}.${signature.slice(0, -4)}AAAA`),
      'bad signature',
    )
    const otherHeader = b64({ ...issuedHeader, kid: `${realKid}x` })
    await refused(t, await bearer(`${otherHeader}.${encodedPayload}.${signature}`), 'kid changed')
    await refused(t, await bearer('not.a.jwt'), 'garbage')
    await refused(t, await bearer(`${encodedHeader}.${encodedPayload}`), 'two parts')
  })

  t.test('validly-signed tokens with wrong claims are refused', async (t) => {
    const now = nowSeconds()
    const cases: [string, Record<string, unknown>, Partial<JWTHeaderParameters>?][] = [
      ['wrong aud', { aud: 'https://someone-else.example' }],
      ['aud list without ours', { aud: ['https://someone-else.example'] }],
      ['missing aud', { aud: undefined }],
      ['wrong iss', { iss: 'https://evil.example' }],
      ['iss with a trailing slash', { iss: `${config.ISSUER}/` }],
      ['missing iss', { iss: undefined }],
      ['expired a minute ago', { iat: now - 960, nbf: now - 960, exp: now - 60 }],
      ['not yet valid (nbf in 10 min)', { nbf: now + 600 }],
      ['missing exp', { exp: undefined }],
      ['missing iat', { iat: undefined }],
      ['missing nbf', { nbf: undefined }],
      ['missing jti', { jti: undefined }],
      ['missing sub', { sub: undefined }],
      ['missing scope', { scope: undefined }],
      ['missing sid', { sid: undefined }],
      ['exp not an integer', { exp: now + 600.5 }],
      ['iat not an integer', { iat: now + 0.5 }],
      ['nbf not an integer', { nbf: now - 0.5 }],
      ['exp a string', { exp: String(now + 600) }],
      ['iat a string', { iat: String(now) }],
      ['nbf a string', { nbf: String(now) }],
      ['auth_time a string', { auth_time: String(now) }],
      ['sid of no session', { sid: randomUUID() }],
      ['sid not a UUID', { sid: 'not-a-session' }],
      ['sid of this session, sub of someone else', { sub: randomUUID() }],
      ['roles not an array', { roles: 'admin' }],
      ['scope not a string', { scope: ['profile'] }],
      ["typ 'JWT'", {}, { typ: 'JWT' }],
      ['no typ', {}, { typ: undefined }],
      ["typ 'application/jwt'", {}, { typ: 'application/jwt' }],
    ]
    for (const [name, changes, header] of cases) {
      const token = await mint(claimsWith(changes), header)
      const decoded = decodeJwt(token)
      for (const [claim, value] of Object.entries(changes)) {
        t.same(decoded[claim], value, `${name}: minted as intended (${claim})`)
      }
      await refused(t, await bearer(token), name)
    }
  })

  t.test('an expired token says so', async (t) => {
    const now = nowSeconds()
    const response = await bearer(await mint(claimsWith({ iat: now - 960, nbf: now - 960, exp: now - 60 })))
    await refused(t, response, 'expired')
    t.match(response.json().detail, /expired/)
  })

  t.test('a token that passed once is refused once it expires (the verified-token cache)', async (t) => {
    const now = nowSeconds()
    // exp one second away; the check allows 5 s of clock skew after it.
    const shortLived = await mint(claimsWith({ iat: now, nbf: now, exp: now + 1 }))
    t.equal((await bearer(shortLived)).statusCode, 200, 'valid: checked in full and remembered')
    t.equal((await bearer(shortLived)).statusCode, 200, 'and again')
    await new Promise((resolve) => setTimeout(resolve, (now + 1 + 5 + 1) * 1000 - Date.now()))
    const response = await bearer(shortLived)
    await refused(t, response, 'expired after it was remembered')
    t.match(response.json().detail, /expired/, 'by the full check, which says why')
  })

  t.test('a missing or non-bearer credential is unauthenticated', async (t) => {
    const missing = await me()
    t.equal(missing.statusCode, 401)
    t.equal(missing.json().code, 'unauthenticated')
    t.equal(missing.headers['www-authenticate'], 'Bearer', 'no error attribute (RFC 6750 §3.1)')
    t.equal(missing.headers['content-type'], 'application/problem+json; charset=utf-8')

    const query = await me(undefined, `/v1/me?access_token=${encodeURIComponent(issued)}`)
    t.equal(query.statusCode, 401, 'the token is never taken from the query string')
    t.equal(query.json().code, 'unauthenticated')
    t.equal(query.headers['www-authenticate'], 'Bearer')

    const basic = await me(`Basic ${Buffer.from(`${email}:${STRONG_PASSWORD}`).toString('base64')}`)
    t.equal(basic.statusCode, 401, 'Basic credentials are not accepted')
    t.equal(basic.json().code, 'unauthenticated', 'an unsupported scheme is no bearer token at all')
    t.equal(basic.headers['www-authenticate'], 'Bearer', 'no error attribute (RFC 6750 §3.1)')
  })

  t.test('a token without the needed scope is 403 insufficient_scope', async (t) => {
    const token = await mint(claimsWith({ scope: 'sessions' }))
    const response = await bearer(token)
    t.equal(response.statusCode, 403)
    t.equal(response.json().code, 'insufficient_scope')
    t.equal(response.headers['www-authenticate'], 'Bearer error="insufficient_scope", scope="profile"')
    const sessions = await me(`Bearer ${token}`, '/v1/me/sessions')
    t.equal(sessions.statusCode, 200, 'the same token is valid where its scope suffices')
  })

  t.test("a revoked session's tokens are refused at once", async (t) => {
    const login = await app.inject({
      method: 'POST',
      url: '/v1/auth/login',
      payload: { email, password: STRONG_PASSWORD },
    })
    t.equal(login.statusCode, 200)
    const second = login.json() as { access_token: string; refresh_token: string }
    const minted = await mint(claimsWith({ sid: decodeJwt(second.access_token).sid }))
    t.equal((await bearer(second.access_token)).statusCode, 200)
    t.equal((await bearer(minted)).statusCode, 200, 'a minted token of that session works too')

    const logout = await app.inject({
      method: 'POST',
      url: '/v1/auth/logout',
      payload: { refresh_token: second.refresh_token },
    })
    t.equal(logout.statusCode, 204)
    await refused(t, await bearer(second.access_token), 'the issued token of a revoked session')
    await refused(t, await bearer(minted), 'a validly-signed token of a revoked session')
    t.equal((await bearer(issued)).statusCode, 200, 'the other session is untouched')
  })
})

for (const alg of ['ES256', 'EdDSA'] as const) {
  t.test(
    `SIGNING_ALG=${alg}: tokens are ${alg}, published in the JWKS, accepted and refreshed`,
    async (t) => {
      const smtp = await startSmtpServer()
      t.teardown(() => smtp.close())
      const { app } = await build(t, { SMTP_URL: smtp.url, SIGNING_ALG: alg })
      const tokens = await signUpAndLogin(app, smtp, `${alg.toLowerCase()}@example.com`)
      const header = decodeProtectedHeader(tokens.access_token)
      t.equal(header.alg, alg)
      t.equal(header.typ, 'at+jwt')

      const jwks = (await app.inject({ method: 'GET', url: '/.well-known/jwks.json' })).json() as {
        keys: JWK[]
      }
      const published = jwks.keys.find((key) => key.kid === header.kid)
      t.equal(published?.alg, alg, 'the signing key is published with its algorithm')
      const { payload } = await jwtVerify(tokens.access_token, createLocalJWKSet(jwks), {
        algorithms: [alg],
        issuer: 'http://latchkey.test',
        typ: 'at+jwt',
      })
      t.equal(payload.scope, tokens.scope)

      const me = (token: string) =>
        app.inject({ method: 'GET', url: '/v1/me', headers: { authorization: `Bearer ${token}` } })
      t.equal((await me(tokens.access_token)).statusCode, 200)
      const refreshed = await app.inject({
        method: 'POST',
        url: '/v1/auth/token',
        payload: { grant_type: 'refresh_token', refresh_token: tokens.refresh_token },
      })
      t.equal(refreshed.statusCode, 200)
      const next = refreshed.json() as { access_token: string }
      t.equal(decodeProtectedHeader(next.access_token).alg, alg)
      t.equal((await me(next.access_token)).statusCode, 200)
    },
  )
}

t.test('a token checked once is not checked again, until its key leaves the ring', async (t) => {
  const smtp = await startSmtpServer()
  t.teardown(() => smtp.close())
  const clock = new TestClock()
  const { app, config, logs } = await build(t, { SMTP_URL: smtp.url }, { clock })
  const tokens = await signUpAndLogin(app, smtp, 'cached@example.com')
  const me = () =>
    app.inject({ method: 'GET', url: '/v1/me', headers: { authorization: `Bearer ${tokens.access_token}` } })
  const refusals = () => logs.lines.filter((line) => line.includes('bearer token refused')).length

  t.equal((await me()).statusCode, 200, 'checked in full, and remembered')
  // A retired key: rotated, then its successor has signed for longer than a token lives.
  await app.services.keyRing.rotate()
  clock.advance(config.JWKS_MAX_AGE + 10)
  t.equal((await me()).statusCode, 200, 'the old key is retiring: its tokens still hold')
  clock.advance(config.ACCESS_TOKEN_TTL)
  t.equal(refusals(), 0)
  const refused = await me()
  t.equal(refused.statusCode, 401, 'once the key is retired, the remembered token is refused too')
  t.equal(refused.json().code, 'invalid_token')
  t.equal(refusals(), 1, 'by the full check, which no longer finds its key')
})
