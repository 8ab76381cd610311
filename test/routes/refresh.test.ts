import { decodeJwt } from 'jose'
import t from 'tap'
import { SessionRepository } from '../../src/storage/session-repository.js'
import { build, TestClock } from '../helpers/app.js'
import { STRONG_PASSWORD, signUpAndLogin } from '../helpers/flows.js'
import { testRedisUrl } from '../helpers/services.js'
import { startSmtpServer } from '../helpers/smtp.js'

const HOUR = 3600
const DAY = 86400

t.test('refresh-token rotation over HTTP', async (t) => {
  const smtp = await startSmtpServer()
  t.teardown(() => smtp.close())
  // Start in the past so access tokens stay valid for the real clock of the verifier.
  const clock = new TestClock(Date.now() - 120_000)
  const { app } = await build(t, { SMTP_URL: smtp.url }, { clock })
  const refresh = (refreshToken: string) =>
    app.inject({
      method: 'POST',
      url: '/v1/auth/token',
      payload: { grant_type: 'refresh_token', refresh_token: refreshToken },
    })
  const me = (accessToken: string) =>
    app.inject({ method: 'GET', url: '/v1/me', headers: { authorization: `Bearer ${accessToken}` } })

  await t.test('ten concurrent refreshes of one token yield exactly one successor', async (t) => {
    const login = await signUpAndLogin(app, smtp, 'concurrent@example.com')
    const answers = await Promise.all(Array.from({ length: 10 }, () => refresh(login.refresh_token)))
    t.same(
      answers.map((answer) => answer.statusCode),
      Array(10).fill(200),
    )
    const successors = new Set(answers.map((answer) => answer.json().refresh_token))
    t.equal(successors.size, 1, 'one successor, no fork')
    const [successor] = [...successors] as [string]
    t.not(successor, login.refresh_token)
    const next = await refresh(successor)
    t.equal(next.statusCode, 200, 'the successor rotates')
  })

  await t.test(
    'a retry within the grace window gets the same successor; reuse after it ends the session',
    async (t) => {
      const login = await signUpAndLogin(app, smtp, 'grace@example.com')
      const first = await refresh(login.refresh_token)
      t.equal(first.statusCode, 200)
      const successor = first.json().refresh_token

      clock.advance(5)
      const retry = await refresh(login.refresh_token)
      t.equal(retry.statusCode, 200, 'an honest retry within 10 s')
      t.equal(retry.json().refresh_token, successor, 'the same successor')
      t.not(retry.json().access_token, first.json().access_token, 'a new access token')

      const second = await refresh(successor)
      t.equal(second.statusCode, 200, 'the retry revoked nothing')
      const newest = second.json()

      clock.advance(6)
      const reuse = await refresh(login.refresh_token)
      t.equal(reuse.statusCode, 400)
      t.same(reuse.json(), { error: 'invalid_grant', error_description: reuse.json().error_description })
      t.equal(reuse.headers['cache-control'], 'no-store')

      const afterReuse = await refresh(newest.refresh_token)
      t.equal(afterReuse.statusCode, 400, 'the newest token of the family is revoked too')
      t.equal(afterReuse.json().error, 'invalid_grant')
      const bearer = await me(newest.access_token)
      t.equal(bearer.statusCode, 401, "the family's access tokens are refused at once")

      const events = await app.services.database.db.query.auditEvents.findMany({
        where: (event, { eq }) => eq(event.type, 'auth.refresh_reuse_detected'),
      })
      t.equal(events.length, 1, 'an audit event is written')
      t.equal(events[0]?.userId, decodeJwt(login.access_token).sub)
      t.equal(events[0]?.outcome, 'failure')
      const notice = await smtp.waitFor(
        (message) => message.to.includes('grace@example.com') && /ended as a precaution/.test(message.raw),
      )
      t.ok(notice, 'the owner is told by email')
    },
  )

  await t.test('idle and absolute lifetimes', async (t) => {
    const plain = await signUpAndLogin(app, smtp, 'plain@example.com')
    let token = plain.refresh_token
    for (let hour = 0; hour < 22; hour += 11) {
      clock.advance(11 * HOUR)
      const answer = await refresh(token)
      t.equal(answer.statusCode, 200, `used after 11 h idle (at ${hour + 11} h)`)
      token = answer.json().refresh_token
    }
    clock.advance(2 * HOUR + 1)
    t.equal((await refresh(token)).statusCode, 400, 'the 24 h absolute lifetime ends it, however active')

    const idle = await signUpAndLogin(app, smtp, 'idle@example.com')
    clock.advance(12 * HOUR + 1)
    t.equal((await refresh(idle.refresh_token)).statusCode, 400, '12 h unused ends a session')

    const remembered = await signUpAndLogin(app, smtp, 'remember@example.com', undefined, { remember: true })
    clock.advance(6 * DAY)
    const stillThere = await refresh(remembered.refresh_token)
    t.equal(stillThere.statusCode, 200, 'remember-me survives 6 days idle')
    let rememberToken = stillThere.json().refresh_token
    for (let day = 6; day < 24; day += 6) {
      clock.advance(6 * DAY)
      const answer = await refresh(rememberToken)
      t.equal(answer.statusCode, 200, `remember-me refreshed at day ${day + 6}`)
      rememberToken = answer.json().refresh_token
    }
    clock.advance(6 * DAY + 1)
    t.equal((await refresh(rememberToken)).statusCode, 400, 'remember-me ends at 30 days, however active')

    const rememberIdle = await signUpAndLogin(app, smtp, 'remember-idle@example.com', undefined, {
      remember: true,
    })
    clock.advance(7 * DAY + 1)
    t.equal((await refresh(rememberIdle.refresh_token)).statusCode, 400, 'remember-me ends after 7 days idle')
  })
})

t.test(
  'roles live in the session store: refresh reads no user, sign-in closes the race with a change',
  async (t) => {
    const smtp = await startSmtpServer()
    t.teardown(() => smtp.close())
    const { app } = await build(t, { SMTP_URL: smtp.url })
    const { sessions, users } = app.services
    const refresh = (refreshToken: string) =>
      app.inject({
        method: 'POST',
        url: '/v1/auth/token',
        payload: { grant_type: 'refresh_token', refresh_token: refreshToken },
      })
    const context = { ip: '127.0.0.1', userAgent: 'test', requestId: 'r1' }

    const login = await signUpAndLogin(app, smtp, 'roles-in-store@example.com')
    const userId = decodeJwt(login.access_token).sub!
    const sid = decodeJwt(login.access_token).sid as string
    t.same((await sessions.liveWithProfile(sid))?.session.roles, ['user'], 'the session holds the roles')

    // Roles changed behind the service's back (no session update): refresh still issues the
    // session's copy, which shows that it reads no user row.
    await users.update(userId, { roles: ['user', 'support'] })
    const stale = await refresh(login.refresh_token)
    t.equal(stale.statusCode, 200)
    t.same(decodeJwt(stale.json().access_token).roles, ['user'])
    t.equal(await sessions.userChanged(userId, { roles: ['user', 'support'] }), 1, 'one live session updated')
    const updated = await refresh(stale.json().refresh_token)
    t.same(decodeJwt(updated.json().access_token).roles, ['user', 'support'])

    // A sign-in that read the user before a role change and a disabling: the session it makes
    // must carry the new roles, and must not outlive the disabling.
    const before = (await users.findById(userId))!
    await users.update(userId, { roles: ['user', 'admin'] })
    const started = await sessions.start({ user: before, scope: '*', amr: ['pwd'], remember: false, context })
    const claims = decodeJwt(started.response.access_token)
    t.same(claims.roles, ['user', 'admin'], 'the token carries the roles read after the session was stored')
    t.same((await sessions.liveWithProfile(claims.sid as string))?.session.roles, ['user', 'admin'])

    await users.update(userId, { disabledAt: new Date() })
    await t.rejects(sessions.start({ user: before, scope: '*', amr: ['pwd'], remember: false, context }), {
      code: 'account_disabled',
    })
    const unrevoked = await new SessionRepository(app.services.database.db).listOpenIds(userId, new Date())
    t.same(
      unrevoked.sort(),
      [sid, claims.sid].sort(),
      'the session made after the disabling was ended at once',
    )
  },
)

t.test('a session refreshed more often than once a minute stays listed past its idle timeout', async (t) => {
  const smtp = await startSmtpServer()
  t.teardown(() => smtp.close())
  // The clock runs ahead of real time here, so the list is read through the service (a bearer
  // token from the future would not verify); Redis expires keys on real time, later still.
  const clock = new TestClock()
  const { app } = await build(t, { SMTP_URL: smtp.url, SESSION_IDLE_TTL: '300' }, { clock })
  const tokens = await signUpAndLogin(app, smtp, 'busy@example.com')
  const { sub, sid } = decodeJwt(tokens.access_token) as { sub: string; sid: string }
  let refreshToken = tokens.refresh_token
  // Every 25 s for ten minutes: twice the idle timeout, never a minute between two uses.
  for (let elapsed = 0; elapsed < 600; elapsed += 25) {
    clock.advance(25)
    const answer = await app.inject({
      method: 'POST',
      url: '/v1/auth/token',
      payload: { grant_type: 'refresh_token', refresh_token: refreshToken },
    })
    t.equal(answer.statusCode, 200, `refresh at ${elapsed + 25} s`)
    refreshToken = answer.json().refresh_token
  }
  const listed = await app.services.sessions.list(sub, sid)
  t.same(
    listed.map((entry) => entry.id),
    [sid],
    'the live session is listed',
  )
  const lastUsed = Date.parse(listed[0]?.last_used_at ?? '')
  t.ok(
    clock.now() - lastUsed <= 60_000,
    `its last use lags by a minute at most (${clock.now() - lastUsed} ms)`,
  )
})

t.test('sessions that ended by expiring are not revoked again, nor told of user changes', async (t) => {
  const smtp = await startSmtpServer()
  t.teardown(() => smtp.close())
  // Ends at real time, where Redis expires keys: the second sign-in is live there too.
  const clock = new TestClock(Date.now() - (DAY + HOUR) * 1000)
  const { app } = await build(t, { SMTP_URL: smtp.url }, { clock })
  const { sessions, database } = app.services
  const old = await signUpAndLogin(app, smtp, 'long-lived@example.com')
  const userId = decodeJwt(old.access_token).sub!
  clock.advance(DAY + HOUR) // past the 24 h absolute lifetime: it ended without a revocation
  const fresh = await app.inject({
    method: 'POST',
    url: '/v1/auth/login',
    payload: { email: 'long-lived@example.com', password: STRONG_PASSWORD },
  })
  t.equal(fresh.statusCode, 200)
  const freshSid = decodeJwt(fresh.json().access_token).sid as string

  const repository = new SessionRepository(database.db)
  t.same(await repository.listOpenIds(userId, new Date(clock.now())), [freshSid], 'only the live one')
  t.equal(await sessions.userChanged(userId), 1, 'one session told of the change')
  t.equal(
    await sessions.revokeAllForUser(userId, { reason: 'password_changed', actorId: userId }),
    1,
    'one session revoked',
  )
  const revoked = await database.db.query.auditEvents.findMany({
    where: (events, { eq }) => eq(events.type, 'session.revoked'),
  })
  t.same(
    revoked.map((event) => (event.details as { session_id?: string }).session_id),
    [freshSid],
    'no revocation is recorded for the session that had expired',
  )
  t.equal(
    (await repository.findById(decodeJwt(old.access_token).sid as string))?.revokedAt,
    null,
    'the expired session is left as it ended',
  )
})

t.test('sessions: list, revoke one, revoke the others, ownership', async (t) => {
  const smtp = await startSmtpServer()
  t.teardown(() => smtp.close())
  const { app } = await build(t, { SMTP_URL: smtp.url })
  const alice = await signUpAndLogin(app, smtp, 'alice@example.com')
  const login = (email: string) =>
    app.inject({
      method: 'POST',
      url: '/v1/auth/login',
      headers: { 'user-agent': 'second-device/1.0' },
      payload: { email, password: 'correct horse battery staple 42!', remember: true },
    })
  const aliceSecond = (await login('alice@example.com')).json()
  const aliceThird = (await login('alice@example.com')).json()
  const bob = await signUpAndLogin(app, smtp, 'bob@example.com')
  const auth = (token: string) => ({ authorization: `Bearer ${token}` })

  const list = await app.inject({ method: 'GET', url: '/v1/me/sessions', headers: auth(alice.access_token) })
  t.equal(list.statusCode, 200)
  const items = list.json().items
  t.equal(items.length, 3)
  t.equal(items.filter((item: { current: boolean }) => item.current).length, 1)
  const second = items.find((item: { id: string }) => item.id === decodeJwt(aliceSecond.access_token).sid)
  t.match(second, { user_agent: 'second-device/1.0', remember: true, ip: '127.0.0.1' })

  const paged = await app.inject({
    method: 'GET',
    url: '/v1/me/sessions?limit=2',
    headers: auth(alice.access_token),
  })
  t.equal(paged.json().items.length, 2)
  t.type(paged.json().next_cursor, 'string')
  const rest = await app.inject({
    method: 'GET',
    url: `/v1/me/sessions?limit=2&cursor=${paged.json().next_cursor}`,
    headers: auth(alice.access_token),
  })
  t.equal(rest.json().items.length, 1)
  t.equal(rest.json().next_cursor, null)

  const bobSid = decodeJwt(bob.access_token).sid as string
  const foreign = await app.inject({
    method: 'DELETE',
    url: `/v1/me/sessions/${bobSid}`,
    headers: auth(alice.access_token),
  })
  t.equal(foreign.statusCode, 404, "someone else's session is not found")
  t.equal(
    (await app.inject({ method: 'GET', url: '/v1/me', headers: auth(bob.access_token) })).statusCode,
    200,
  )

  const secondSid = decodeJwt(aliceSecond.access_token).sid as string
  const revoked = await app.inject({
    method: 'DELETE',
    url: `/v1/me/sessions/${secondSid}`,
    headers: auth(alice.access_token),
  })
  t.equal(revoked.statusCode, 204)
  t.equal(
    (await app.inject({ method: 'GET', url: '/v1/me', headers: auth(aliceSecond.access_token) })).statusCode,
    401,
  )

  const others = await app.inject({
    method: 'DELETE',
    url: '/v1/me/sessions',
    headers: auth(alice.access_token),
  })
  t.equal(others.statusCode, 204)
  t.equal(
    (await app.inject({ method: 'GET', url: '/v1/me', headers: auth(aliceThird.access_token) })).statusCode,
    401,
  )
  t.equal(
    (await app.inject({ method: 'GET', url: '/v1/me', headers: auth(alice.access_token) })).statusCode,
    200,
    'the current one continues',
  )
  const after = await app.inject({ method: 'GET', url: '/v1/me/sessions', headers: auth(alice.access_token) })
  t.equal(after.json().items.length, 1)
})

t.test('users, sessions and revocations survive a restart of the API', async (t) => {
  const smtp = await startSmtpServer()
  t.teardown(() => smtp.close())
  const dataDir = t.testdir()
  const first = await build(t, { SMTP_URL: smtp.url }, { dataDir })
  const kept = await signUpAndLogin(first.app, smtp, 'kept@example.com')
  const ended = (
    await first.app.inject({
      method: 'POST',
      url: '/v1/auth/login',
      payload: { email: 'kept@example.com', password: 'correct horse battery staple 42!' },
    })
  ).json()
  await first.app.inject({
    method: 'POST',
    url: '/v1/auth/logout',
    payload: { refresh_token: ended.refresh_token },
  })
  const jwks = (await first.app.inject({ method: 'GET', url: '/.well-known/jwks.json' })).json()
  await first.app.close()

  const second = await build(
    t,
    { SMTP_URL: smtp.url },
    {
      dataDir,
      redisPrefix: first.redisPrefix,
      ...(first.databaseUrl ? { databaseUrl: first.databaseUrl } : {}),
    },
  )
  const { app } = second
  t.same(
    (await app.inject({ method: 'GET', url: '/.well-known/jwks.json' })).json(),
    jwks,
    'the same signing key',
  )
  const login = await app.inject({
    method: 'POST',
    url: '/v1/auth/login',
    payload: { email: 'kept@example.com', password: 'correct horse battery staple 42!' },
  })
  t.equal(login.statusCode, 200, 'the user is still there')
  const afterRestart = login.json()
  const revokedRefresh = await app.inject({
    method: 'POST',
    url: '/v1/auth/token',
    payload: { grant_type: 'refresh_token', refresh_token: ended.refresh_token },
  })
  t.equal(revokedRefresh.statusCode, 400, 'a revocation survives the restart')

  const list = await app.inject({
    method: 'GET',
    url: '/v1/me/sessions',
    headers: { authorization: `Bearer ${afterRestart.access_token}` },
  })
  const ids = list.json().items.map((item: { id: string }) => item.id)
  t.notOk(ids.includes(decodeJwt(ended.access_token).sid), 'the revoked session is not listed')
  if (testRedisUrl) {
    t.ok(ids.includes(decodeJwt(kept.access_token).sid), "the earlier session's list entry survives")
    const refreshed = await app.inject({
      method: 'POST',
      url: '/v1/auth/token',
      payload: { grant_type: 'refresh_token', refresh_token: kept.refresh_token },
    })
    t.equal(refreshed.statusCode, 200, 'and its refresh token still rotates (Redis keeps the state)')
  } else {
    t.notOk(ids.includes(decodeJwt(kept.access_token).sid), 'the in-process store ends sessions at restart')
  }
})
