import { createHash, randomBytes } from 'node:crypto'
import { decodeJwt } from 'jose'
import { Secret, TOTP } from 'otpauth'
import t from 'tap'
import { build, TestClock } from '../helpers/app.js'
import { STRONG_PASSWORD, signUpAndLogin } from '../helpers/flows.js'
import {
  CLIENT_ID,
  CLIENT_SECRET,
  callback,
  cookieFrom,
  followProvider,
  followProviderToForm,
  startOpenIdProvider,
  startSignIn,
} from '../helpers/oidc.js'
import { startSmtpServer } from '../helpers/smtp.js'

const APP_CALLBACK = 'https://app.example/callback'
const NATIVE_CALLBACK = 'latchkeyapp://callback'

const pkce = () => {
  const verifier = randomBytes(32).toString('base64url')
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') }
}

t.test('social login through a real OpenID Provider (oidc-provider)', async (t) => {
  const op = await startOpenIdProvider(t, ['op', 'corp', 'posting'])
  const smtp = await startSmtpServer()
  t.teardown(() => smtp.close())
  const clock = new TestClock(Math.floor((Date.now() - 400_000) / 30_000) * 30_000 + 1_000)
  const { app } = await build(
    t,
    {
      SMTP_URL: smtp.url,
      REDIRECT_ALLOWLIST: `${APP_CALLBACK},${NATIVE_CALLBACK}`,
      OIDC_PROVIDERS: JSON.stringify([
        { id: 'op', issuer: op.issuer, client_id: CLIENT_ID, client_secret: CLIENT_SECRET },
        {
          id: 'corp',
          issuer: op.issuer,
          client_id: CLIENT_ID,
          client_secret: CLIENT_SECRET,
          allowed_domains: ['corp.example'],
        },
        {
          id: 'posting',
          issuer: op.issuer,
          client_id: CLIENT_ID,
          client_secret: CLIENT_SECRET,
          response_mode: 'form_post',
        },
      ]),
    },
    { clock },
  )
  const exchange = (payload: Record<string, string>) =>
    app.inject({
      method: 'POST',
      url: '/v1/auth/token',
      payload: { grant_type: 'authorization_code', ...payload },
    })
  /** The whole browser round trip; answers the app's redirect target the callback chose. */
  const signIn = async (providerId: string, query: Record<string, string> = {}) => {
    const { providerUrl, binding } = await startSignIn(app, providerId, {
      redirect_to: APP_CALLBACK,
      ...query,
    })
    const back = await followProvider(providerUrl)
    const response = await callback(app, back, binding)
    if (response.statusCode !== 302)
      throw new Error(`callback answered ${response.statusCode}: ${response.body}`)
    return { target: new URL(String(response.headers.location)), back, binding, response }
  }

  await t.test('a new user signs in with the authorization code flow and PKCE', async (t) => {
    op.signInAs('alice-sub', { email: 'Alice@Example.com', email_verified: true })
    const client = pkce()
    const { providerUrl, binding } = await startSignIn(app, 'op', {
      redirect_to: APP_CALLBACK,
      code_challenge: client.challenge,
      code_challenge_method: 'S256',
    })
    t.equal(providerUrl.origin, op.issuer)
    const params = providerUrl.searchParams
    t.equal(params.get('response_type'), 'code')
    t.equal(params.get('client_id'), CLIENT_ID)
    t.equal(params.get('redirect_uri'), 'http://latchkey.test/v1/auth/oidc/op/callback')
    t.equal(params.get('code_challenge_method'), 'S256')
    t.match(params.get('code_challenge'), /^[A-Za-z0-9_-]{43}$/)
    t.not(
      params.get('code_challenge'),
      client.challenge,
      'the provider gets our own PKCE pair, not the app’s',
    )
    t.ok(Buffer.from(params.get('state') ?? '', 'base64url').length >= 16, 'state has at least 128 bits')
    t.ok(Buffer.from(params.get('nonce') ?? '', 'base64url').length >= 16, 'nonce has at least 128 bits')
    t.match(params.get('scope'), /openid/)

    const tokenCallsBefore = op.calls.token
    const back = await followProvider(providerUrl)
    const response = await callback(app, back, binding)
    t.equal(response.statusCode, 302)
    t.equal(op.calls.token, tokenCallsBefore + 1, 'the code was exchanged at the provider')
    t.match(response.headers['set-cookie'], /__Host-oidc_binding=;/, 'the binding cookie is cleared')
    const target = new URL(String(response.headers.location))
    t.equal(`${target.origin}${target.pathname}`, APP_CALLBACK)
    const code = target.searchParams.get('code')
    t.match(code, /^[A-Za-z0-9_-]{43}$/)

    const missingVerifier = await exchange({ code: code! })
    t.equal(missingVerifier.statusCode, 400)
    t.equal(missingVerifier.json().error, 'invalid_grant', 'a code bound to a challenge needs its verifier')

    // The failed attempt spent the code; a fresh round trip gets another.
    const again = await startSignIn(app, 'op', {
      redirect_to: APP_CALLBACK,
      code_challenge: client.challenge,
    })
    const againBack = await callback(app, await followProvider(again.providerUrl), again.binding)
    const code2 = new URL(String(againBack.headers.location)).searchParams.get('code')!
    const wrongVerifier = await exchange({ code: code2, code_verifier: pkce().verifier })
    t.equal(wrongVerifier.json().error, 'invalid_grant')

    const third = await startSignIn(app, 'op', {
      redirect_to: APP_CALLBACK,
      code_challenge: client.challenge,
    })
    const thirdBack = await callback(app, await followProvider(third.providerUrl), third.binding)
    const code3 = new URL(String(thirdBack.headers.location)).searchParams.get('code')!
    const tokens = await exchange({ code: code3, code_verifier: client.verifier })
    t.equal(tokens.statusCode, 200)
    t.equal(tokens.headers['cache-control'], 'no-store')
    const body = tokens.json()
    t.ok(body.refresh_token)
    const claims = decodeJwt(body.access_token)
    t.same(claims.amr, ['fed'])
    const replayed = await exchange({ code: code3, code_verifier: client.verifier })
    t.equal(replayed.statusCode, 400)
    t.equal(replayed.json().error, 'invalid_grant', 'a hand-off code is single use')

    const me = await app.inject({
      method: 'GET',
      url: '/v1/me',
      headers: { authorization: `Bearer ${body.access_token}` },
    })
    t.equal(me.json().email, 'alice@example.com')
    t.equal(me.json().email_verified, true)
    t.same(me.json().identities, [{ provider: 'op', subject: 'alice-sub' }])
    const user = await app.services.users.findByEmail('alice@example.com')
    t.equal(user?.passwordHash, null, 'no password')

    // The refresh token works like any other.
    const refreshed = await app.inject({
      method: 'POST',
      url: '/v1/auth/token',
      payload: { grant_type: 'refresh_token', refresh_token: body.refresh_token },
    })
    t.equal(refreshed.statusCode, 200)
    t.same(decodeJwt(refreshed.json().access_token).amr, ['fed'])
  })

  await t.test('the same identity signs in again to the same account', async (t) => {
    op.signInAs('alice-sub', { email: 'alice-new-address@example.com', email_verified: true })
    const { target } = await signIn('op')
    const tokens = await exchange({ code: target.searchParams.get('code')! })
    t.equal(tokens.statusCode, 200, 'no verifier needed when the app sent no challenge')
    const alice = await app.services.users.findByEmail('alice@example.com')
    t.equal(decodeJwt(tokens.json().access_token).sub, alice?.id, 'keyed on (iss, sub), not on email')
    t.notOk(await app.services.users.findByEmail('alice-new-address@example.com'))

    const { target: second } = await signIn('op')
    const downgrade = await exchange({
      code: second.searchParams.get('code')!,
      code_verifier: pkce().verifier,
    })
    t.equal(downgrade.json().error, 'invalid_grant', 'a verifier for a code issued without a challenge')
  })

  await t.test('the state is checked before the provider is called', async (t) => {
    op.signInAs('bob-sub', { email: 'bob@example.com', email_verified: true })
    const { providerUrl, binding } = await startSignIn(app, 'op', { redirect_to: APP_CALLBACK })
    const back = await followProvider(providerUrl)
    const calls = op.calls.token
    const url = new URL(back, 'http://latchkey.test')

    const noState = new URL(url)
    noState.searchParams.delete('state')
    const missing = await callback(app, noState.pathname + noState.search, binding)
    t.equal(missing.statusCode, 400)
    t.equal(missing.json().code, 'invalid_token')

    const altered = new URL(url)
    altered.searchParams.set('state', `${url.searchParams.get('state')}x`)
    t.equal((await callback(app, altered.pathname + altered.search, binding)).statusCode, 400)

    const otherBrowser = await callback(app, back, undefined)
    t.equal(otherBrowser.statusCode, 400, 'without the binding cookie')
    t.match(otherBrowser.json().detail, /another browser/)
    t.equal(op.calls.token, calls, 'the provider token endpoint was not called')

    // The attempt from another browser used the state up: the real browser cannot finish either.
    const replay = await callback(app, back, binding)
    t.equal(replay.statusCode, 400)

    const fresh = await startSignIn(app, 'op', { redirect_to: APP_CALLBACK })
    const freshBack = await followProvider(fresh.providerUrl)
    const wrongCookie = await callback(app, freshBack, fresh.binding.slice(1))
    t.equal(wrongCookie.statusCode, 400, 'a cookie of another sign-in')

    const good = await startSignIn(app, 'op', { redirect_to: APP_CALLBACK })
    const goodBack = await followProvider(good.providerUrl)
    t.equal((await callback(app, goodBack, good.binding)).statusCode, 302)
    const replayed = await callback(app, goodBack, good.binding)
    t.equal(replayed.statusCode, 400, 'a used state is refused')
    t.equal(op.calls.token, calls + 1, 'only the good callback reached the provider')

    // A callback of one provider presented at another's callback.
    const mixed = await startSignIn(app, 'op', { redirect_to: APP_CALLBACK })
    const mixedBack = await followProvider(mixed.providerUrl)
    const atCorp = await callback(app, mixedBack.replace('/oidc/op/', '/oidc/corp/'), mixed.binding)
    t.equal(atCorp.statusCode, 400)
    t.equal(op.calls.token, calls + 1)
  })

  await t.test('browser mode: the hand-off answers with the refresh cookie', async (t) => {
    op.signInAs('alice-sub', { email: 'alice@example.com', email_verified: true })
    const { target } = await signIn('op')
    const response = await app.inject({
      method: 'POST',
      url: '/v1/auth/token',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: new URLSearchParams({
        grant_type: 'authorization_code',
        code: target.searchParams.get('code')!,
        use_cookie: 'true',
      }).toString(),
    })
    t.equal(response.statusCode, 200)
    t.notOk(response.json().refresh_token, 'not in the body')
    t.match(response.headers['set-cookie'], /__Host-refresh_token=[^;]+; .*HttpOnly/)
  })

  await t.test('response_mode=form_post (Sign in with Apple style)', async (t) => {
    op.signInAs('alice-sub', { email: 'alice@example.com', email_verified: true })
    const authorize = await app.inject({
      method: 'GET',
      url: `/v1/auth/oidc/posting/authorize?redirect_to=${encodeURIComponent(APP_CALLBACK)}`,
    })
    const providerUrl = new URL(String(authorize.headers.location))
    t.equal(providerUrl.searchParams.get('response_mode'), 'form_post')
    t.match(authorize.headers['set-cookie'], /SameSite=None/, 'the cookie travels with a cross-site post')
    const binding = cookieFrom(authorize.headers['set-cookie'], '__Host-oidc_binding')!
    const { path, form } = await followProviderToForm(providerUrl)
    t.equal(path, '/v1/auth/oidc/posting/callback')
    t.ok(form.get('code') && form.get('state'))
    const posted = await app.inject({
      method: 'POST',
      url: path,
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        cookie: `__Host-oidc_binding=${binding}`,
      },
      payload: form.toString(),
    })
    t.equal(posted.statusCode, 302)
    const code = new URL(String(posted.headers.location)).searchParams.get('code')!
    const tokens = await exchange({ code })
    const alice = await app.services.users.findByEmail('alice@example.com')
    t.equal(
      decodeJwt(tokens.json().access_token).sub,
      alice?.id,
      'the same identity as through the query mode',
    )
    const replay = await app.inject({
      method: 'POST',
      url: path,
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        cookie: `__Host-oidc_binding=${binding}`,
      },
      payload: form.toString(),
    })
    t.equal(replay.statusCode, 400)
  })

  await t.test('a disabled account cannot sign in socially', async (t) => {
    op.signInAs('kate-sub', { email: 'kate@example.com', email_verified: true })
    const first = await signIn('op')
    const kate = await app.services.users.findByEmail('kate@example.com')
    await app.services.users.update(kate!.id, { disabledAt: new Date() })
    t.equal((await exchange({ code: first.target.searchParams.get('code')! })).json().error, 'invalid_grant')
    t.equal((await signIn('op')).target.searchParams.get('error'), 'account_disabled')
  })

  await t.test('provider errors go back to the app', async (t) => {
    const { binding, providerUrl } = await startSignIn(app, 'op', { redirect_to: NATIVE_CALLBACK })
    const state = providerUrl.searchParams.get('state')!
    const denied = await callback(
      app,
      `/v1/auth/oidc/op/callback?error=access_denied&state=${state}`,
      binding,
    )
    t.equal(denied.statusCode, 302)
    t.equal(denied.headers.location, `${NATIVE_CALLBACK}?error=access_denied`)
  })

  await t.test('open redirects are refused', async (t) => {
    for (const target of [
      'https://evil.example',
      '//evil.example',
      '/\\evil.example',
      'https://app.example.evil.example/callback',
      'https://app.example/callback/../evil',
      'https://app.example/callback?next=https://evil.example',
      'https://app.example/callbackx',
      'HTTPS://APP.EXAMPLE/callback',
      'latchkeyapp://callback.evil',
      '',
    ]) {
      const response = await app.inject({
        method: 'GET',
        url: `/v1/auth/oidc/op/authorize?${new URLSearchParams({ redirect_to: target })}`,
      })
      t.equal(response.statusCode, 400, target)
      t.equal(response.json().code, target === '' ? 'validation_failed' : 'invalid_redirect', target)
      t.notOk(response.headers.location)
    }
    const native = await startSignIn(app, 'op', { redirect_to: NATIVE_CALLBACK })
    t.equal(native.providerUrl.origin, op.issuer, 'a custom scheme on the allowlist is fine')
    const unknown = await app.inject({
      method: 'GET',
      url: `/v1/auth/oidc/nope/authorize?redirect_to=${encodeURIComponent(APP_CALLBACK)}`,
    })
    t.equal(unknown.statusCode, 404)
    const plain = await app.inject({
      method: 'GET',
      url: `/v1/auth/oidc/op/authorize?${new URLSearchParams({ redirect_to: APP_CALLBACK, code_challenge: pkce().challenge, code_challenge_method: 'plain' })}`,
    })
    t.equal(plain.statusCode, 400, 'only S256')
  })

  await t.test('linking to an existing account needs verified emails on both sides', async (t) => {
    const password = await signUpAndLogin(app, smtp, 'carol@example.com')
    const passwordMe = () =>
      app.inject({
        method: 'GET',
        url: '/v1/me',
        headers: { authorization: `Bearer ${password.access_token}` },
      })
    t.same(
      (await passwordMe()).json().identities,
      [],
      'the password session sees no identity (and caches that)',
    )
    op.signInAs('carol-unverified', { email: 'carol@example.com', email_verified: false })
    const refused = await signIn('op')
    t.equal(refused.target.searchParams.get('error'), 'account_exists')
    t.notOk(refused.target.searchParams.get('code'))
    const carol = await app.services.users.findByEmail('carol@example.com')
    t.same(await app.services.identities.listForUser(carol!.id), [], 'nothing linked')

    op.signInAs('carol-sub', { email: 'carol@example.com', email_verified: true })
    const linked = await signIn('op')
    const tokens = await exchange({ code: linked.target.searchParams.get('code')! })
    t.equal(decodeJwt(tokens.json().access_token).sub, carol!.id, 'linked to the password account')
    const linkEvents = await app.services.administration.auditEvents({
      userId: carol!.id,
      type: 'identity.linked',
      limit: 10,
    })
    t.match(linkEvents.items, [{ outcome: 'success', actor_id: carol!.id, details: { provider: 'op' } }])
    const refusals = await app.services.administration.auditEvents({
      userId: carol!.id,
      type: 'auth.login_failed',
      limit: 10,
    })
    t.ok(
      refusals.items.some(
        (event) => (event.details as { reason?: string }).reason === 'link_refused_unverified_email',
      ),
      'the refused link is in the audit log',
    )
    const identities = await app.services.identities.listForUser(carol!.id)
    t.same(
      identities.map((identity) => [identity.provider, identity.issuer, identity.subject]),
      [['op', op.issuer, 'carol-sub']],
    )
    t.same(
      (await passwordMe()).json().identities,
      [{ provider: 'op', subject: 'carol-sub' }],
      'the earlier session sees the link at once',
    )

    // An unverified password account is not linked, even to a verified identity.
    await app.inject({
      method: 'POST',
      url: '/v1/auth/signup',
      payload: { email: 'dave@example.com', password: STRONG_PASSWORD },
    })
    op.signInAs('dave-sub', { email: 'dave@example.com', email_verified: true })
    t.equal((await signIn('op')).target.searchParams.get('error'), 'account_exists')

    op.signInAs('erin-sub', { email: 'erin@example.com', email_verified: false })
    t.equal(
      (await signIn('op')).target.searchParams.get('error'),
      'email_not_verified',
      'no account is made from an unverified email',
    )
    t.notOk(await app.services.users.findByEmail('erin@example.com'))
  })

  await t.test('allowed_domains restricts who may sign in', async (t) => {
    op.signInAs('frank-sub', { email: 'frank@gmail.example', email_verified: true })
    t.equal((await signIn('corp')).target.searchParams.get('error'), 'domain_not_allowed')
    op.signInAs('gina-sub', { email: 'gina@corp.example', email_verified: false })
    t.equal(
      (await signIn('corp')).target.searchParams.get('error'),
      'domain_not_allowed',
      'an unverified address proves nothing',
    )
    op.signInAs('hank-sub', { email: 'hank@corp.example', email_verified: true })
    const allowed = await signIn('corp')
    t.equal((await exchange({ code: allowed.target.searchParams.get('code')! })).statusCode, 200)
  })

  await t.test('MFA still applies after social login', async (t) => {
    op.signInAs('ivy-sub', { email: 'ivy@example.com', email_verified: true })
    const first = await exchange({ code: (await signIn('op')).target.searchParams.get('code')! })
    const bearer = { authorization: `Bearer ${first.json().access_token}` }
    const enrol = await app.inject({ method: 'POST', url: '/v1/me/mfa/totp', headers: bearer, payload: {} })
    const totp = new TOTP({ secret: Secret.fromBase32(enrol.json().secret) })
    const activated = await app.inject({
      method: 'POST',
      url: '/v1/me/mfa/totp/activate',
      headers: bearer,
      payload: { code: totp.generate({ timestamp: clock.now() }) },
    })
    t.equal(activated.statusCode, 200)

    const challenged = await exchange({ code: (await signIn('op')).target.searchParams.get('code')! })
    t.equal(challenged.statusCode, 403)
    const challenge = challenged.json()
    t.equal(challenge.error, 'mfa_required')
    t.ok(challenge.mfa_token)
    t.same(challenge.methods, ['totp', 'recovery_code'])
    t.notOk(challenge.access_token, 'nothing issued')
    const verified = await app.inject({
      method: 'POST',
      url: '/v1/auth/mfa/verify',
      payload: { mfa_token: challenge.mfa_token, code: totp.generate({ timestamp: clock.now() + 30_000 }) },
    })
    t.equal(verified.statusCode, 200)
    t.same(decodeJwt(verified.json().access_token).amr, ['fed', 'otp', 'mfa'])
  })

  await t.test('unlinking keeps another way in', async (t) => {
    op.signInAs('jack-sub', { email: 'jack@example.com', email_verified: true })
    const jack = await exchange({ code: (await signIn('op')).target.searchParams.get('code')! })
    const jackBearer = { authorization: `Bearer ${jack.json().access_token}` }
    const lastWay = await app.inject({ method: 'DELETE', url: '/v1/me/identities/op', headers: jackBearer })
    t.equal(lastWay.statusCode, 403, 'the only way in')
    t.equal(lastWay.json().code, 'forbidden')
    const unknown = await app.inject({ method: 'DELETE', url: '/v1/me/identities/corp', headers: jackBearer })
    t.equal(unknown.statusCode, 404)

    const carol = await app.inject({
      method: 'POST',
      url: '/v1/auth/login',
      payload: { email: 'carol@example.com', password: STRONG_PASSWORD },
    })
    const carolBearer = { authorization: `Bearer ${carol.json().access_token}` }
    const before = await app.inject({ method: 'GET', url: '/v1/me', headers: carolBearer })
    t.same(before.json().identities, [{ provider: 'op', subject: 'carol-sub' }])
    const unlinked = await app.inject({ method: 'DELETE', url: '/v1/me/identities/op', headers: carolBearer })
    t.equal(unlinked.statusCode, 204)
    const carolUser = await app.services.users.findByEmail('carol@example.com')
    t.same(await app.services.identities.listForUser(carolUser!.id), [], 'the identity row is gone')
    const unlinkEvents = await app.services.administration.auditEvents({
      userId: carolUser!.id,
      type: 'identity.unlinked',
      limit: 10,
    })
    t.match(unlinkEvents.items, [{ actor_id: carolUser!.id, details: { provider: 'op' } }])
    const me = await app.inject({ method: 'GET', url: '/v1/me', headers: carolBearer })
    t.same(me.json().identities, [])

    // Needs a fresh login.
    clock.advance(301)
    const stale = await app.inject({ method: 'DELETE', url: '/v1/me/identities/op', headers: jackBearer })
    t.equal(stale.statusCode, 401)
    t.equal(stale.json().code, 'fresh_login_required')
  })
})
