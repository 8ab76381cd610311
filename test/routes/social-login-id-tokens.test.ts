import { createHash, createSecretKey, randomUUID } from 'node:crypto'
import { decodeJwt, type JWTPayload, SignJWT } from 'jose'
import { Secret, TOTP } from 'otpauth'
import t, { type Test } from 'tap'
import { build } from '../helpers/app.js'
import {
  CLIENT_ID,
  CLIENT_SECRET,
  callback,
  createSigningKey,
  signIdToken,
  startOpenIdProvider,
  startScriptedProvider,
  startSignIn,
  unsignedIdToken,
} from '../helpers/oidc.js'

const APP_CALLBACK = 'https://app.example/callback'

t.test('ID token validation, native and web', async (t) => {
  // oidc-provider publishes the key the test gave it; the test signs native ID tokens with it.
  const op = await startOpenIdProvider(t, ['op'])
  const scripted = await startScriptedProvider(t)
  const { app, logs } = await build(t, {
    REDIRECT_ALLOWLIST: APP_CALLBACK,
    OIDC_PROVIDERS: JSON.stringify([
      { id: 'op', issuer: op.issuer, client_id: CLIENT_ID, client_secret: CLIENT_SECRET },
      {
        id: 'strict',
        issuer: op.issuer,
        client_id: CLIENT_ID,
        client_secret: CLIENT_SECRET,
        require_nonce: true,
      },
      {
        id: 'workspace',
        issuer: op.issuer,
        client_id: CLIENT_ID,
        client_secret: CLIENT_SECRET,
        allowed_domains: ['corp.example'],
      },
      { id: 'scripted', issuer: scripted.issuer, client_id: CLIENT_ID, client_secret: CLIENT_SECRET },
      { id: 'down', issuer: 'http://127.0.0.1:9', client_id: CLIENT_ID, client_secret: CLIENT_SECRET },
    ]),
  })
  const now = () => Math.floor(Date.now() / 1000)
  const claims = (extra: JWTPayload = {}): JWTPayload => ({
    iss: op.issuer,
    aud: CLIENT_ID,
    sub: `native-${randomUUID()}`,
    email: `${randomUUID()}@example.com`,
    email_verified: true,
    iat: now(),
    exp: now() + 600,
    jti: randomUUID(),
    ...extra,
  })
  const native = (idToken: string, extra: Record<string, unknown> = {}, provider = 'op') =>
    app.inject({
      method: 'POST',
      url: `/v1/auth/oidc/${provider}/id-token`,
      payload: { id_token: idToken, ...extra },
    })
  const refused = async (t: Test, idToken: string, detail: RegExp, extra = {}, provider = 'op') => {
    const response = await native(idToken, extra, provider)
    t.equal(response.statusCode, 401, `${detail}`)
    t.equal(response.json().code, 'invalid_token')
    t.match(response.json().detail, detail)
  }

  await t.test('a valid native ID token signs in, once', async (t) => {
    const token = await signIdToken(op.key, claims({ sub: 'native-kim', email: 'kim@example.com' }))
    const response = await native(token, { remember: true })
    t.equal(response.statusCode, 200)
    t.equal(response.headers['cache-control'], 'no-store')
    const access = decodeJwt(response.json().access_token)
    t.same(access.amr, ['fed'])
    const kim = await app.services.users.findByEmail('kim@example.com')
    t.equal(access.sub, kim?.id)
    t.equal(kim?.emailVerifiedAt instanceof Date, true)
    const identities = await app.services.identities.listForUser(kim!.id)
    t.same(
      identities.map((identity) => [identity.provider, identity.subject]),
      [['op', 'native-kim']],
    )
    await refused(t, token, /already used/)
    const withoutJti = await signIdToken(op.key, claims({ sub: 'native-kim', jti: undefined }))
    t.equal((await native(withoutJti)).statusCode, 200)
    await refused(t, withoutJti, /already used/, {}, 'op')
  })

  await t.test('each kind of bad ID token is 401 invalid_token', async (t) => {
    await refused(
      t,
      await signIdToken(op.key, claims({ iss: 'https://issuer.evil.example' })),
      /not issued by/,
    )
    await refused(
      t,
      await signIdToken(scripted.key, claims({ iss: scripted.issuer })),
      /another configured provider \("scripted"\)/,
    )
    await refused(t, await signIdToken(op.key, claims({ aud: undefined })), /aud/)
    await refused(t, await signIdToken(op.key, claims({ aud: 'someone-else' })), /aud/)
    await refused(t, await signIdToken(op.key, claims({ aud: [CLIENT_ID, 'other-client'] })), /azp/)
    t.equal(
      (await native(await signIdToken(op.key, claims({ aud: [CLIENT_ID, 'other'], azp: CLIENT_ID }))))
        .statusCode,
      200,
      'several audiences with azp naming this client',
    )
    await refused(t, unsignedIdToken(claims()), /algorithm "none"/)
    const hs256 = await new SignJWT(claims())
      .setProtectedHeader({ alg: 'HS256', kid: op.key.kid })
      .sign(createSecretKey(Buffer.from(CLIENT_SECRET)))
    await refused(t, hs256, /algorithm "HS256"/)
    const stranger = await createSigningKey(op.key.kid)
    await refused(t, await signIdToken(stranger, claims()), /signature/)
    await refused(t, await signIdToken(op.key, claims({ iat: now() - 7200, exp: now() - 3600 })), /expired/)
    await refused(t, await signIdToken(op.key, claims({ iat: now() + 3600, exp: now() + 7200 })), /iat/)
    await refused(t, await signIdToken(op.key, claims({ sub: undefined })), /sub/)
    await refused(t, await signIdToken(op.key, claims({ sub: '' })), /sub/)
    await refused(t, 'not-a-jwt', /not a signed JWT/)
    const tampered = (await signIdToken(op.key, claims())).split('.')
    tampered[1] = Buffer.from(JSON.stringify(claims({ sub: 'someone-else' }))).toString('base64url')
    await refused(t, tampered.join('.'), /signature/)
  })

  await t.test('nonces', async (t) => {
    await refused(t, await signIdToken(op.key, claims({ nonce: 'n-1' })), /send it/)
    await refused(t, await signIdToken(op.key, claims({ nonce: 'n-1' })), /does not match/, { nonce: 'n-2' })
    await refused(t, await signIdToken(op.key, claims()), /no nonce but one was given/, { nonce: 'n-1' })
    t.equal(
      (await native(await signIdToken(op.key, claims({ nonce: 'n-1' })), { nonce: 'n-1' })).statusCode,
      200,
    )
    const hashed = createHash('sha256').update('raw-nonce').digest('hex')
    t.equal(
      (await native(await signIdToken(op.key, claims({ nonce: hashed })), { nonce: 'raw-nonce' })).statusCode,
      200,
      'the claim may be the SHA-256 of the raw nonce (Sign in with Apple)',
    )
    await refused(t, await signIdToken(op.key, claims()), /requires one/, {}, 'strict')
  })

  await t.test('an unknown kid does not make the server fetch keys again and again', async (t) => {
    const before = op.calls.jwks
    const forged = await Promise.all(
      Array.from({ length: 20 }, async (_, index) => {
        const key = await createSigningKey(`unknown-${index}`)
        return signIdToken(key, claims())
      }),
    )
    const answers = await Promise.all(forged.map((token) => native(token)))
    t.ok(
      answers.every((answer) => answer.statusCode === 401),
      'all refused',
    )
    t.ok(op.calls.jwks - before <= 1, `at most one refetch (${op.calls.jwks - before})`)
  })

  await t.test('linking rules, MFA and scope apply to native sign-in', async (t) => {
    const unverified = await native(await signIdToken(op.key, claims({ email_verified: false })))
    t.equal(unverified.statusCode, 403)
    t.equal(unverified.json().code, 'email_not_verified')

    const entra = await native(
      await signIdToken(
        op.key,
        claims({ email_verified: undefined, xms_edov: true, email: 'entra@example.com' }),
      ),
    )
    t.equal(entra.statusCode, 200, "Entra's xms_edov vouches for the email")
    const apple = await native(await signIdToken(op.key, claims({ email_verified: 'true' })))
    t.equal(apple.statusCode, 200, 'Apple sends email_verified as a string')
    const bare = await native(await signIdToken(op.key, claims({ email_verified: undefined })))
    t.equal(bare.json().code, 'email_not_verified', 'an email nobody vouches for')

    // allowed_domains: the email's domain, and a hosted-domain claim (`hd`) when there is one.
    const workspace = async (extra: JWTPayload) =>
      native(
        await signIdToken(op.key, claims({ email: `${randomUUID()}@corp.example`, ...extra })),
        {},
        'workspace',
      )
    const otherHost = await workspace({ hd: 'other.example' })
    t.equal(otherHost.statusCode, 403)
    t.equal(
      otherHost.json().code,
      'domain_not_allowed',
      'an address at the domain, but another hosted domain',
    )
    t.equal((await workspace({ hd: 'corp.example' })).statusCode, 200, 'the hosted domain matches')
    t.equal((await workspace({})).statusCode, 200, 'no hd: the email domain decides (not Google)')
    const outside = await native(
      await signIdToken(op.key, claims({ email: 'someone@elsewhere.example' })),
      {},
      'workspace',
    )
    t.equal(outside.json().code, 'domain_not_allowed')

    const noEmail = await native(await signIdToken(op.key, claims({ email: undefined })))
    t.equal(noEmail.statusCode, 403)

    const sub = 'native-mfa'
    const first = await native(await signIdToken(op.key, claims({ sub, email: 'mfa-native@example.com' })))
    const bearer = { authorization: `Bearer ${first.json().access_token}` }
    const enrol = await app.inject({ method: 'POST', url: '/v1/me/mfa/totp', headers: bearer, payload: {} })
    const totp = new TOTP({ secret: Secret.fromBase32(enrol.json().secret) })
    await app.inject({
      method: 'POST',
      url: '/v1/me/mfa/totp/activate',
      headers: bearer,
      payload: { code: totp.generate() },
    })
    const challenged = await native(await signIdToken(op.key, claims({ sub })))
    t.equal(challenged.statusCode, 403)
    t.equal(challenged.json().code, 'mfa_required')
    t.ok(challenged.json().mfa_token)
    t.notOk(challenged.json().access_token)

    const wide = await native(await signIdToken(op.key, claims()), { scope: 'admin:users' })
    t.equal(wide.statusCode, 400)
    t.equal(wide.json().code, 'invalid_scope')
    const narrow = await native(await signIdToken(op.key, claims()), { scope: 'profile' })
    t.equal(narrow.json().scope, 'profile')

    t.equal((await native(await signIdToken(op.key, claims()), {}, 'unknown')).statusCode, 404)
  })

  await t.test('a provider that cannot be reached is a 503, not a hang or a 500', async (t) => {
    const authorize = await app.inject({
      method: 'GET',
      url: `/v1/auth/oidc/down/authorize?redirect_to=${encodeURIComponent(APP_CALLBACK)}`,
    })
    t.equal(authorize.statusCode, 503)
    t.equal(authorize.json().code, 'service_unavailable')
    t.ok(authorize.headers['retry-after'])
    const token = await signIdToken(op.key, claims({ iss: 'http://127.0.0.1:9' }))
    const nativeDown = await native(token, {}, 'down')
    t.equal(nativeDown.statusCode, 503)
  })

  await t.test('the web callback refuses bad ID tokens from the provider', async (t) => {
    /** One web round trip where the scripted provider answers `build(nonce)` as the ID token. */
    const roundTrip = async (build: (nonce: string) => Promise<string>) => {
      scripted.nextIdToken = build
      const { providerUrl, binding } = await startSignIn(app, 'scripted', { redirect_to: APP_CALLBACK })
      const nonce = providerUrl.searchParams.get('nonce')!
      const state = providerUrl.searchParams.get('state')!
      const response = await callback(
        app,
        `/v1/auth/oidc/scripted/callback?${new URLSearchParams({ code: nonce, state })}`,
        binding,
      )
      t.equal(response.statusCode, 302)
      return new URL(String(response.headers.location)).searchParams
    }
    const good = (nonce: string, extra: JWTPayload = {}) =>
      claims({
        iss: scripted.issuer,
        nonce,
        email: 'web-scripted@example.com',
        sub: 'web-scripted',
        ...extra,
      })

    const cases: [string, (nonce: string) => Promise<string>][] = [
      ['wrong nonce', () => signIdToken(scripted.key, good('another-nonce'))],
      ['no nonce', (nonce) => signIdToken(scripted.key, good(nonce, { nonce: undefined }))],
      ['wrong aud', (nonce) => signIdToken(scripted.key, good(nonce, { aud: 'someone-else' }))],
      ['missing aud', (nonce) => signIdToken(scripted.key, good(nonce, { aud: undefined }))],
      [
        'wrong iss',
        (nonce) => signIdToken(scripted.key, good(nonce, { iss: 'https://issuer.evil.example' })),
      ],
      [
        'another provider’s iss (mix-up)',
        (nonce) => signIdToken(scripted.key, good(nonce, { iss: op.issuer })),
      ],
      ['alg none', async (nonce) => unsignedIdToken(good(nonce))],
      ['bad signature', async (nonce) => signIdToken(await createSigningKey(scripted.key.kid), good(nonce))],
      [
        'expired',
        (nonce) => signIdToken(scripted.key, good(nonce, { iat: now() - 7200, exp: now() - 3600 })),
      ],
      ['missing sub', (nonce) => signIdToken(scripted.key, good(nonce, { sub: undefined }))],
      ['azp of another client', (nonce) => signIdToken(scripted.key, good(nonce, { azp: 'other-client' }))],
    ]
    for (const [name, buildToken] of cases) {
      const params = await roundTrip(buildToken)
      t.equal(params.get('error'), 'invalid_token', name)
      t.notOk(params.get('code'), name)
    }
    t.notOk(await app.services.users.findByEmail('web-scripted@example.com'), 'no account was made')
    t.match(logs.text, /another configured provider \(\\"op\\"\)/, 'the mix-up is named in the log')

    const accepted = await roundTrip((nonce) => signIdToken(scripted.key, good(nonce)))
    t.match(accepted.get('code'), /^[A-Za-z0-9_-]{43}$/, 'the same flow with a good token succeeds')
  })
})
