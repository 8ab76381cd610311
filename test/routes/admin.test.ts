import { decodeJwt } from 'jose'
import t from 'tap'
import { build } from '../helpers/app.js'
import { STRONG_PASSWORD, signUpAndLogin } from '../helpers/flows.js'
import { startSmtpServer } from '../helpers/smtp.js'

t.test('administration API', async (t) => {
  const smtp = await startSmtpServer()
  t.teardown(() => smtp.close())
  const { app } = await build(t, { SMTP_URL: smtp.url })
  const { users } = app.services
  const bearer = (token: string) => ({ authorization: `Bearer ${token}` })
  const login = async (email: string, extra: Record<string, unknown> = {}) => {
    const response = await app.inject({
      method: 'POST',
      url: '/v1/auth/login',
      payload: { email, password: STRONG_PASSWORD, ...extra },
    })
    return response
  }
  const refresh = (refreshToken: string) =>
    app.inject({
      method: 'POST',
      url: '/v1/auth/token',
      payload: { grant_type: 'refresh_token', refresh_token: refreshToken },
    })

  // The first administrator is made by the operator (latchkey users grant); here, directly.
  const member = await signUpAndLogin(app, smtp, 'member@example.com')
  await signUpAndLogin(app, smtp, 'root@example.com')
  const root = await users.findByEmail('root@example.com')
  await users.update(root!.id, { roles: ['user', 'admin'] })
  const rootLogin = (await login('root@example.com')).json()
  const rootToken: string = rootLogin.access_token
  t.match(decodeJwt(rootToken).scope, /admin:users admin:audit admin:keys/)
  const memberUser = await users.findByEmail('member@example.com')

  const routes: {
    method: 'GET' | 'PATCH' | 'DELETE' | 'POST'
    url: string
    scope: string
    payload?: object
  }[] = [
    { method: 'GET', url: '/v1/admin/users', scope: 'admin:users' },
    { method: 'GET', url: `/v1/admin/users/${memberUser!.id}`, scope: 'admin:users' },
    {
      method: 'PATCH',
      url: `/v1/admin/users/${memberUser!.id}`,
      scope: 'admin:users',
      payload: { disabled: false },
    },
    { method: 'DELETE', url: `/v1/admin/users/${memberUser!.id}/sessions`, scope: 'admin:users' },
    { method: 'POST', url: '/v1/admin/keys/rotate', scope: 'admin:keys' },
    { method: 'GET', url: '/v1/admin/audit-events', scope: 'admin:audit' },
  ]

  await t.test('every admin route refuses users, narrowed tokens and anonymous callers', async (t) => {
    const narrowed = (await login('root@example.com', { scope: 'profile sessions' })).json().access_token
    for (const route of routes) {
      const call = (headers: Record<string, string>) =>
        app.inject({
          method: route.method,
          url: route.url,
          headers,
          ...(route.payload ? { payload: route.payload } : {}),
        })
      const asUser = await call(bearer(member.access_token))
      t.equal(asUser.statusCode, 403, `${route.method} ${route.url} as a user`)
      t.equal(asUser.json().code, 'insufficient_scope')
      t.equal(
        asUser.headers['www-authenticate'],
        `Bearer error="insufficient_scope", scope="${route.scope}"`,
        'the RFC 6750 challenge names the scope',
      )
      const asNarrowedAdmin = await call(bearer(narrowed))
      t.equal(asNarrowedAdmin.statusCode, 403, `${route.method} ${route.url}: the role without the scope`)
      t.equal(asNarrowedAdmin.json().code, 'insufficient_scope')
      const anonymous = await call({})
      t.equal(anonymous.statusCode, 401)
    }
  })

  await t.test('listing and searching users: pages without duplicates or gaps', async (t) => {
    for (let index = 0; index < 7; index += 1) {
      await users.insert({ email: `page-${index}@list.example`, passwordHash: null })
    }
    await users.insert({ email: 'Page_X@Other.example', passwordHash: null })
    const seen: string[] = []
    let cursor: string | null = null
    let pages = 0
    do {
      const query: string = new URLSearchParams({
        email: 'page-',
        limit: '3',
        ...(cursor ? { cursor } : {}),
      }).toString()
      const response = await app.inject({
        method: 'GET',
        url: `/v1/admin/users?${query}`,
        headers: bearer(rootToken),
      })
      t.equal(response.statusCode, 200)
      t.equal(response.headers['cache-control'], 'no-store')
      const body = response.json()
      t.ok(body.items.length <= 3)
      seen.push(...body.items.map((item: { email: string }) => item.email))
      cursor = body.next_cursor
      pages += 1
    } while (cursor && pages < 10)
    t.equal(pages, 3)
    t.same(
      seen,
      Array.from({ length: 7 }, (_, index) => `page-${index}@list.example`),
      'every match once, in order',
    )
    const underscore = await app.inject({
      method: 'GET',
      url: '/v1/admin/users?email=page_',
      headers: bearer(rootToken),
    })
    t.same(
      underscore.json().items.map((item: { email: string }) => item.email),
      ['Page_X@Other.example'],
      '"_" is a character, not a wildcard; the prefix ignores case',
    )
    const all = await app.inject({
      method: 'GET',
      url: '/v1/admin/users?limit=200',
      headers: bearer(rootToken),
    })
    t.equal(all.json().items.length, 10)
    t.equal(all.json().next_cursor, null)
    const bad = await app.inject({
      method: 'GET',
      url: '/v1/admin/users?cursor=nonsense',
      headers: bearer(rootToken),
    })
    t.equal(bad.statusCode, 400)
    t.equal(bad.json().code, 'validation_failed')
  })

  await t.test('one user', async (t) => {
    const response = await app.inject({
      method: 'GET',
      url: `/v1/admin/users/${memberUser!.id}`,
      headers: bearer(rootToken),
    })
    t.equal(response.statusCode, 200)
    const body = response.json()
    t.same(Object.keys(body).sort(), [
      'created_at',
      'disabled',
      'email',
      'email_verified',
      'id',
      'last_login_at',
      'mfa',
      'roles',
      'session_count',
    ])
    t.equal(body.email, 'member@example.com')
    t.equal(body.email_verified, true)
    t.same(body.roles, ['user'])
    t.equal(body.disabled, false)
    t.same(body.mfa, { totp: false })
    t.ok(body.last_login_at)
    t.equal(body.session_count, 1)
    const missing = await app.inject({
      method: 'GET',
      url: '/v1/admin/users/00000000-0000-4000-8000-000000000000',
      headers: bearer(rootToken),
    })
    t.equal(missing.statusCode, 404)
    const malformed = await app.inject({
      method: 'GET',
      url: '/v1/admin/users/x',
      headers: bearer(rootToken),
    })
    t.equal(malformed.statusCode, 400)
  })

  await t.test('a role change shows in the next refresh', async (t) => {
    const before = decodeJwt(member.access_token)
    t.same(before.roles, ['user'])
    const granted = await app.inject({
      method: 'PATCH',
      url: `/v1/admin/users/${memberUser!.id}`,
      headers: bearer(rootToken),
      payload: { roles: ['admin'] },
    })
    t.equal(granted.statusCode, 200)
    t.same(granted.json().roles, ['user', 'admin'], 'user is kept')
    const refreshed = await refresh(member.refresh_token)
    const claims = decodeJwt(refreshed.json().access_token)
    t.same(claims.roles, ['user', 'admin'])
    t.equal(claims.scope, 'profile sessions admin:users admin:audit admin:keys', 'the new scopes too')
    const revokedRole = await app.inject({
      method: 'PATCH',
      url: `/v1/admin/users/${memberUser!.id}`,
      headers: bearer(rootToken),
      payload: { roles: ['user'] },
    })
    t.equal(revokedRole.statusCode, 200)
    const again = await refresh(refreshed.json().refresh_token)
    t.same(decodeJwt(again.json().access_token).roles, ['user'])
    t.equal(again.json().scope, 'profile sessions')
    member.refresh_token = again.json().refresh_token
    member.access_token = again.json().access_token
    const unknown = await app.inject({
      method: 'PATCH',
      url: `/v1/admin/users/${memberUser!.id}`,
      headers: bearer(rootToken),
      payload: { roles: ['root'] },
    })
    t.equal(unknown.statusCode, 400)
    const empty = await app.inject({
      method: 'PATCH',
      url: `/v1/admin/users/${memberUser!.id}`,
      headers: bearer(rootToken),
      payload: {},
    })
    t.equal(empty.statusCode, 400)
  })

  await t.test('disabling ends every session at once; enabling lets the user back in', async (t) => {
    const second = (await login('member@example.com')).json()
    const disabled = await app.inject({
      method: 'PATCH',
      url: `/v1/admin/users/${memberUser!.id}`,
      headers: bearer(rootToken),
      payload: { disabled: true },
    })
    t.equal(disabled.statusCode, 200)
    t.equal(disabled.json().disabled, true)
    t.equal(disabled.json().session_count, 0)
    for (const tokens of [member, second]) {
      const me = await app.inject({ method: 'GET', url: '/v1/me', headers: bearer(tokens.access_token) })
      t.equal(me.statusCode, 401, 'the access token is refused at once')
      const refreshed = await refresh(tokens.refresh_token)
      t.equal(refreshed.statusCode, 400)
      t.equal(refreshed.json().error, 'invalid_grant')
    }
    const refused = await login('member@example.com')
    t.equal(refused.statusCode, 403)
    t.equal(refused.json().code, 'account_disabled')
    const enabled = await app.inject({
      method: 'PATCH',
      url: `/v1/admin/users/${memberUser!.id}`,
      headers: bearer(rootToken),
      payload: { disabled: false },
    })
    t.equal(enabled.json().disabled, false)
    t.equal((await login('member@example.com')).statusCode, 200)
  })

  await t.test('administrators cannot lock themselves out; another administrator can', async (t) => {
    const self = `/v1/admin/users/${root!.id}`
    const disableSelf = await app.inject({
      method: 'PATCH',
      url: self,
      headers: bearer(rootToken),
      payload: { disabled: true },
    })
    t.equal(disableSelf.statusCode, 403)
    t.equal(disableSelf.json().code, 'forbidden')
    const demoteSelf = await app.inject({
      method: 'PATCH',
      url: self,
      headers: bearer(rootToken),
      payload: { roles: ['user'] },
    })
    t.equal(demoteSelf.statusCode, 403)
    t.same((await users.findById(root!.id))?.roles, ['user', 'admin'], 'nothing changed')

    await signUpAndLogin(app, smtp, 'second-admin@example.com')
    const secondAdmin = await users.findByEmail('second-admin@example.com')
    await users.update(secondAdmin!.id, { roles: ['user', 'admin'] })
    const secondToken = (await login('second-admin@example.com')).json().access_token
    const byOther = await app.inject({
      method: 'PATCH',
      url: `/v1/admin/users/${secondAdmin!.id}`,
      headers: bearer(rootToken),
      payload: { disabled: true },
    })
    t.equal(byOther.statusCode, 200)
    const afterDisable = await app.inject({
      method: 'GET',
      url: '/v1/admin/users',
      headers: bearer(secondToken),
    })
    t.equal(afterDisable.statusCode, 401, "a disabled administrator's token is refused")
  })

  await t.test('ending every session of a user', async (t) => {
    const tokens = (await login('member@example.com')).json()
    const ended = await app.inject({
      method: 'DELETE',
      url: `/v1/admin/users/${memberUser!.id}/sessions`,
      headers: bearer(rootToken),
    })
    t.equal(ended.statusCode, 204)
    t.equal((await refresh(tokens.refresh_token)).json().error, 'invalid_grant')
    const me = await app.inject({ method: 'GET', url: '/v1/me', headers: bearer(tokens.access_token) })
    t.equal(me.statusCode, 401)
    const missing = await app.inject({
      method: 'DELETE',
      url: '/v1/admin/users/00000000-0000-4000-8000-000000000000/sessions',
      headers: bearer(rootToken),
    })
    t.equal(missing.statusCode, 404)

    // The ownership rule: a user administrator may end anyone's session by id; a user, only theirs.
    const memberTokens = (await login('member@example.com')).json()
    const rootSessions = await app.inject({
      method: 'GET',
      url: '/v1/me/sessions',
      headers: bearer(rootToken),
    })
    const rootSessionId = rootSessions.json().items[0].id
    const notTheirs = await app.inject({
      method: 'DELETE',
      url: `/v1/me/sessions/${rootSessionId}`,
      headers: bearer(memberTokens.access_token),
    })
    t.equal(notTheirs.statusCode, 404, "another user's session is not found, not forbidden")
    const memberSessionId = decodeJwt(memberTokens.access_token).sid
    const byAdmin = await app.inject({
      method: 'DELETE',
      url: `/v1/me/sessions/${memberSessionId}`,
      headers: bearer(rootToken),
    })
    t.equal(byAdmin.statusCode, 204)
    t.equal((await refresh(memberTokens.refresh_token)).statusCode, 400)
  })

  await t.test('key rotation through the API', async (t) => {
    const before = (await app.inject({ method: 'GET', url: '/.well-known/jwks.json' })).json().keys.length
    const rotated = await app.inject({
      method: 'POST',
      url: '/v1/admin/keys/rotate',
      headers: bearer(rootToken),
    })
    t.equal(rotated.statusCode, 200)
    const { kid, activates_at: activatesAt } = rotated.json()
    t.ok(kid)
    t.ok(Date.parse(activatesAt) > Date.now(), 'it signs later, after JWKS_MAX_AGE')
    const jwks = (await app.inject({ method: 'GET', url: '/.well-known/jwks.json' })).json()
    t.equal(jwks.keys.length, before + 1)
    t.ok(
      jwks.keys.some((key: { kid: string }) => key.kid === kid),
      'published at once',
    )
  })

  await t.test('the audit log: filters and pages', async (t) => {
    const page = async (query: Record<string, string>) => {
      const response = await app.inject({
        method: 'GET',
        url: `/v1/admin/audit-events?${new URLSearchParams(query)}`,
        headers: bearer(rootToken),
      })
      t.equal(response.statusCode, 200, JSON.stringify(query))
      return response.json() as { items: Record<string, unknown>[]; next_cursor: string | null }
    }
    const memberEvents = await page({ user_id: memberUser!.id, limit: '200' })
    const types = new Set(memberEvents.items.map((event) => event.type))
    for (const type of [
      'user.signed_up',
      'user.email_verified',
      'auth.login_succeeded',
      'user.updated',
      'session.revoked',
    ])
      t.ok(types.has(type), `${type} is there`)
    t.ok(memberEvents.items.every((event) => event.user_id === memberUser!.id))
    const times = memberEvents.items.map((event) => Date.parse(String(event.created_at)))
    t.same(
      times,
      [...times].sort((a, b) => b - a),
      'newest first',
    )

    const updates = await page({ type: 'user.updated', user_id: memberUser!.id })
    t.ok(updates.items.length >= 4)
    const disabledEvent = updates.items.find(
      (event) => (event.details as { disabled?: boolean }).disabled === true,
    )
    t.ok(disabledEvent, 'the disabling is recorded')
    t.equal(disabledEvent?.actor_id, root!.id, 'with the administrator as actor')
    t.equal(disabledEvent?.outcome, 'success')
    t.match(disabledEvent, { ip: '127.0.0.1', user_agent: 'lightMyRequest', request_id: String })

    const failed = await page({ type: 'auth.login_failed' })
    t.ok(Array.isArray(failed.items))
    const rotation = await page({ type: 'key.rotated' })
    t.equal(rotation.items[0]?.actor_id, root!.id)

    // Paging the whole log two at a time meets every event once.
    const everything = await page({ limit: '200' })
    const ids: unknown[] = []
    let cursor: string | null = null
    let rounds = 0
    do {
      const next = await page({ limit: '2', ...(cursor ? { cursor } : {}) })
      ids.push(...next.items.map((event) => event.id))
      cursor = next.next_cursor
      rounds += 1
    } while (cursor && rounds < 500)
    t.same(
      ids,
      everything.items.map((event) => event.id),
      'no duplicates, no gaps',
    )

    const future = await page({ since: new Date(Date.now() + 3_600_000).toISOString() })
    t.same(future.items, [])
    const past = await page({ until: '2000-01-01T00:00:00Z' })
    t.same(past.items, [])
    const secretFree = JSON.stringify(everything.items)
    t.notMatch(secretFree, STRONG_PASSWORD, 'no password in any event')
    t.notMatch(secretFree, /eyJ[A-Za-z0-9_-]{10,}\./, 'no token in any event')
  })

  await t.test('retention deletes events older than AUDIT_RETENTION_DAYS', async (t) => {
    t.equal(app.config.AUDIT_RETENTION_DAYS, 365, 'a year by default')
    const repository = app.services.database.db
    const { auditEvents: table } = await import('../../src/storage/schema.js')
    await repository.insert(table).values({
      type: 'auth.logout',
      outcome: 'success',
      createdAt: new Date(Date.now() - 400 * 86_400_000),
      details: { marker: 'old' },
    })
    await repository.insert(table).values({
      type: 'auth.logout',
      outcome: 'success',
      createdAt: new Date(Date.now() - 300 * 86_400_000),
      details: { marker: 'recent' },
    })
    const { auditEvents: deleted } = await app.services.retention.run(Date.now())
    t.equal(deleted, 1)
    const left = await repository.query.auditEvents.findMany({
      where: (row, { eq }) => eq(row.type, 'auth.logout'),
    })
    t.same(left.map((row) => row.details.marker).filter(Boolean), ['recent'])
  })
})
