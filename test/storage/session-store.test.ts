/**
 * One contract for both SessionStore implementations: memory always, Redis when TEST_REDIS_URL
 * (or REDIS_URL) is set. The clock is injected (explicit `now` values, based on the wall clock
 * so Redis key expiry stays in the future); nothing sleeps.
 */
import { randomBytes, randomUUID } from 'node:crypto'
import { Redis } from 'ioredis'
import t, { type Test } from 'tap'
import { MemorySessionStore } from '../../src/storage/memory-session-store.js'
import { RedisSessionStore } from '../../src/storage/redis-session-store.js'
import {
  type RotateOutcome,
  type SessionStore,
  SPENT_HISTORY,
  type StoredSession,
} from '../../src/storage/session-store.js'
import { testRedisUrl } from '../helpers/services.js'

const SECOND = 1000
const HOUR = 3600 * SECOND
const DAY = 24 * HOUR
const GRACE = 30 * SECOND

interface Harness {
  store: SessionStore
  /** `n` stores over the same data, each on its own connection where that means anything. */
  peers(n: number): SessionStore[]
  cleanup(): Promise<void>
}

type Factory = () => Promise<Harness>

const hash = (): string => randomBytes(32).toString('base64url')
const sealed = (): string => `sealed.${randomBytes(24).toString('base64url')}`

/** A session created at `now`: 12 h idle / 24 h absolute, or 7 d / 30 d with remember-me. */
function newSession(now: number, remember = false): StoredSession {
  return {
    id: randomUUID(),
    userId: randomUUID(),
    scope: 'openid profile email',
    amr: ['pwd', 'otp'],
    authTime: Math.floor(now / 1000),
    remember,
    createdAt: now,
    lastUsedAt: now,
    idleTtl: remember ? (7 * DAY) / SECOND : (12 * HOUR) / SECOND,
    expiresAt: now + (remember ? 30 * DAY : DAY),
    roles: ['user', 'support'],
  }
}

function rotation(sessionId: string, presentedHash: string, now: number) {
  return { sessionId, presentedHash, successorHash: hash(), successorSealed: sealed(), now, graceMs: GRACE }
}

function sessionOf(t: Test, result: RotateOutcome): StoredSession {
  if (result.outcome === 'unknown' || result.outcome === 'expired') {
    t.fail(`expected an outcome with a session, got ${result.outcome}`)
    throw new Error(result.outcome)
  }
  return result.session
}

function contract(t: Test, make: Factory): void {
  /** A fresh harness per test, torn down when it ends. */
  const setup = async (t: Test): Promise<Harness> => {
    const h = await make()
    t.teardown(() => h.cleanup())
    return h
  }

  t.test('create then get returns the session; ping answers', async (t) => {
    const { store } = await setup(t)
    const t0 = Date.now()
    const s = newSession(t0, true)
    await store.create(s, hash())
    t.same(await store.get(s.id, t0), s)
    t.equal(await store.get(randomUUID(), t0), null)
    await store.ping()
  })

  t.test('create refuses a duplicate id and leaves the original alone', async (t) => {
    const { store } = await setup(t)
    const t0 = Date.now()
    const s = newSession(t0)
    const r0 = hash()
    await store.create(s, r0)
    const other = hash()
    await t.rejects(store.create({ ...s, userId: 'intruder' }, other))
    t.equal((await store.get(s.id, t0))?.userId, s.userId)
    t.equal(await store.standing(s.id, r0, t0), 'current')
    t.equal(await store.standing(s.id, other, t0), null)
  })

  t.test('create → rotate → rotate chain', async (t) => {
    const { store } = await setup(t)
    const t0 = Date.now()
    const s = newSession(t0)
    const r0 = hash()
    await store.create(s, r0)

    const first = rotation(s.id, r0, t0 + 60 * SECOND)
    const a = await store.rotate(first)
    t.equal(a.outcome, 'rotated')
    t.same(sessionOf(t, a), { ...s, lastUsedAt: t0 + 60 * SECOND })

    const second = rotation(s.id, first.successorHash, t0 + HOUR)
    const b = await store.rotate(second)
    t.equal(b.outcome, 'rotated')
    t.same(sessionOf(t, b), { ...s, lastUsedAt: t0 + HOUR })
    t.equal(
      b.outcome === 'rotated' && b.previousLastUsedAt,
      t0 + 60 * SECOND,
      'reports when it was used before',
    )

    t.equal((await store.get(s.id, t0 + HOUR))?.lastUsedAt, t0 + HOUR)
    t.equal(await store.standing(s.id, second.successorHash, t0 + HOUR), 'current')
    t.equal(await store.standing(s.id, first.successorHash, t0 + HOUR), 'previous')
    t.equal(await store.standing(s.id, r0, t0 + HOUR), 'spent')

    const third = await store.rotate(rotation(s.id, second.successorHash, t0 + 2 * HOUR))
    t.equal(third.outcome, 'rotated')
  })

  t.test('a retry within the grace window gets the same sealed successor and changes nothing', async (t) => {
    const { store } = await setup(t)
    const t0 = Date.now()
    const s = newSession(t0)
    const r0 = hash()
    await store.create(s, r0)
    const t1 = t0 + 5 * SECOND
    const first = rotation(s.id, r0, t1)
    t.equal((await store.rotate(first)).outcome, 'rotated')

    const retry = rotation(s.id, r0, t1 + GRACE) // the window's last millisecond
    const again = await store.rotate(retry)
    t.same(again, {
      outcome: 'replayed',
      session: { ...s, lastUsedAt: t1 },
      successorSealed: first.successorSealed,
    })

    t.equal((await store.get(s.id, t1 + GRACE))?.lastUsedAt, t1, 'lastUsedAt unchanged')
    t.equal(await store.standing(s.id, first.successorHash, t1 + GRACE), 'current')
    t.equal(await store.standing(s.id, retry.successorHash, t1 + GRACE), null, 'retry candidate not stored')
    t.equal(await store.standing(s.id, r0, t1 + GRACE), 'previous')

    const next = await store.rotate(rotation(s.id, first.successorHash, t1 + GRACE + 1))
    t.equal(next.outcome, 'rotated', 'the first successor still rotates')
  })

  t.test('ten concurrent rotations of one token: one rotated, nine replayed with the winner', async (t) => {
    const h = await setup(t)
    const t0 = Date.now()
    const s = newSession(t0)
    const r0 = hash()
    await h.store.create(s, r0)
    const now = t0 + SECOND
    const inputs = Array.from({ length: 10 }, () => rotation(s.id, r0, now))
    const stores = h.peers(10)
    const results = await Promise.all(inputs.map((input, i) => stores[i]!.rotate(input)))

    const rotated = results.flatMap((r, i) => (r.outcome === 'rotated' ? [i] : []))
    t.equal(rotated.length, 1, 'exactly one rotated')
    const winner = inputs[rotated[0]!]!
    const replayed = results.filter((r) => r.outcome === 'replayed')
    t.equal(replayed.length, 9, 'nine replayed')
    for (const r of replayed) {
      if (r.outcome === 'replayed') t.equal(r.successorSealed, winner.successorSealed)
    }
    t.equal(await h.store.standing(s.id, winner.successorHash, now), 'current')
    for (const input of inputs) {
      if (input !== winner) t.equal(await h.store.standing(s.id, input.successorHash, now), null)
    }
    t.equal((await h.store.rotate(rotation(s.id, winner.successorHash, now + 1))).outcome, 'rotated')
  })

  t.test('the previous token after the grace window revokes the session', async (t) => {
    const { store } = await setup(t)
    const t0 = Date.now()
    const s = newSession(t0)
    const r0 = hash()
    await store.create(s, r0)
    const t1 = t0 + 10 * SECOND
    const first = rotation(s.id, r0, t1)
    t.equal((await store.rotate(first)).outcome, 'rotated')

    const late = t1 + GRACE + 1
    const reuse = await store.rotate(rotation(s.id, r0, late))
    t.same(reuse, { outcome: 'reused', session: { ...s, lastUsedAt: t1 } })

    t.same(await store.rotate(rotation(s.id, first.successorHash, late)), { outcome: 'unknown' })
    t.equal(await store.get(s.id, late), null)
    t.equal(await store.standing(s.id, first.successorHash, late), null)
  })

  t.test('a token two generations old revokes the session, even inside the grace window', async (t) => {
    const { store } = await setup(t)
    const t0 = Date.now()
    const s = newSession(t0)
    const r0 = hash()
    await store.create(s, r0)
    const first = rotation(s.id, r0, t0 + HOUR)
    t.equal((await store.rotate(first)).outcome, 'rotated')
    const second = rotation(s.id, first.successorHash, t0 + 2 * HOUR)
    t.equal((await store.rotate(second)).outcome, 'rotated')

    const reuse = await store.rotate(rotation(s.id, r0, t0 + 2 * HOUR + 1))
    t.same(reuse, { outcome: 'reused', session: { ...s, lastUsedAt: t0 + 2 * HOUR } })
    t.equal(await store.get(s.id, t0 + 2 * HOUR + 1), null)
    t.same(await store.rotate(rotation(s.id, second.successorHash, t0 + 2 * HOUR + 2)), {
      outcome: 'unknown',
    })
  })

  t.test('a hash the session never issued changes nothing', async (t) => {
    const { store } = await setup(t)
    const t0 = Date.now()
    const s = newSession(t0)
    const r0 = hash()
    await store.create(s, r0)
    const first = rotation(s.id, r0, t0 + SECOND)
    await store.rotate(first)

    const later = t0 + 2 * HOUR
    for (let i = 0; i < 3; i++) {
      t.same(await store.rotate(rotation(s.id, hash(), later)), { outcome: 'unknown' })
    }
    t.same(await store.get(s.id, later), { ...s, lastUsedAt: t0 + SECOND }, 'session untouched')
    t.equal(await store.standing(s.id, first.successorHash, later), 'current')
    t.equal(await store.standing(s.id, r0, later), 'previous')
    t.same(
      await store.rotate(rotation(randomUUID(), r0, later)),
      { outcome: 'unknown' },
      'unknown session id',
    )
    t.equal((await store.rotate(rotation(s.id, first.successorHash, later))).outcome, 'rotated')
  })

  for (const remember of [false, true]) {
    const idle = remember ? 7 * DAY : 12 * HOUR
    const absolute = remember ? 30 * DAY : DAY
    const label = remember ? 'remember-me (7d idle / 30d absolute)' : 'plain (12h idle / 24h absolute)'

    t.test(`idle expiry, ${label}`, async (t) => {
      const { store } = await setup(t)
      const t0 = Date.now()
      const s = newSession(t0, remember)
      const r0 = hash()
      await store.create(s, r0)
      t.ok(await store.get(s.id, t0 + idle), 'live on the idle deadline')
      t.equal(await store.standing(s.id, r0, t0 + idle), 'current')
      t.equal(await store.get(s.id, t0 + idle + 1), null, 'gone a millisecond later')
      t.equal(await store.standing(s.id, r0, t0 + idle + 1), null)
      t.same(await store.rotate(rotation(s.id, r0, t0 + idle + 1)), { outcome: 'expired', sessionId: s.id })
      t.same(await store.rotate(rotation(s.id, r0, t0 + SECOND)), { outcome: 'unknown' }, 'removed')
    })

    t.test(`rotation extends the idle lifetime but never the absolute one, ${label}`, async (t) => {
      const { store } = await setup(t)
      const t0 = Date.now()
      const s = newSession(t0, remember)
      let token = hash()
      await store.create(s, token)
      // Rotate just inside each idle window until the absolute deadline is within reach.
      const step = idle - HOUR
      let now = t0
      while (now + step < t0 + absolute) {
        now += step
        const input = rotation(s.id, token, now)
        const result = await store.rotate(input)
        t.equal(result.outcome, 'rotated', `rotated at +${(now - t0) / HOUR}h`)
        token = input.successorHash
      }
      t.ok(now > t0 + idle, 'rotations carried the session past its first idle deadline')
      t.ok(await store.get(s.id, t0 + absolute), 'live on the absolute deadline')
      t.ok(now + idle > t0 + absolute, 'the idle window would reach past the absolute deadline')
      t.equal(await store.get(s.id, t0 + absolute + 1), null, 'gone after the absolute deadline')
      t.same(await store.rotate(rotation(s.id, token, t0 + absolute + 1)), {
        outcome: 'expired',
        sessionId: s.id,
      })
      t.equal(await store.get(s.id, t0 + SECOND), null, 'removed')
    })

    t.test(`absolute expiry without idling, ${label}`, async (t) => {
      const { store } = await setup(t)
      const t0 = Date.now()
      const s = { ...newSession(t0, remember), lastUsedAt: t0 + absolute - HOUR }
      const r0 = hash()
      await store.create(s, r0)
      t.ok(await store.get(s.id, t0 + absolute))
      t.equal(await store.get(s.id, t0 + absolute + 1), null)
      t.same(await store.rotate(rotation(s.id, r0, t0 + absolute + 1)), {
        outcome: 'expired',
        sessionId: s.id,
      })
    })
  }

  t.test('reauthenticate changes auth_time and amr of a live session, and nothing else', async (t) => {
    const { store } = await setup(t)
    const t0 = Date.now()
    const s = newSession(t0)
    const r0 = hash()
    await store.create(s, r0)
    t.equal(await store.reauthenticate(s.id, s.authTime + 600, ['pwd', 'otp', 'mfa'], t0 + 1000), true)
    t.same(await store.get(s.id, t0 + 1000), { ...s, authTime: s.authTime + 600, amr: ['pwd', 'otp', 'mfa'] })
    const next = await store.rotate(rotation(s.id, r0, t0 + 2000))
    t.equal(next.outcome, 'rotated', 'the refresh token is untouched')
    t.same(sessionOf(t, next).amr, ['pwd', 'otp', 'mfa'], 'a refresh keeps the new authentication')
    t.equal(await store.reauthenticate(randomUUID(), 1, ['pwd'], t0), false, 'no such session')
    const late = s.expiresAt + 1
    t.equal(await store.reauthenticate(s.id, 1, ['pwd'], late), false, 'an expired session stays expired')
  })

  t.test('userChanged replaces the roles of a live session; rotations and retries carry them', async (t) => {
    const { store } = await setup(t)
    const t0 = Date.now()
    const s = newSession(t0)
    const r0 = hash()
    await store.create(s, r0)
    t.equal(await store.userChanged(s.id, ['user', 'admin']), true)
    t.same((await store.get(s.id, t0))?.roles, ['user', 'admin'])
    const first = rotation(s.id, r0, t0 + SECOND)
    t.same(sessionOf(t, await store.rotate(first)).roles, ['user', 'admin'], 'rotated')
    t.same(
      sessionOf(t, await store.rotate({ ...first, now: t0 + 2 * SECOND })).roles,
      ['user', 'admin'],
      'replayed',
    )
    t.equal(await store.userChanged(s.id, ['user']), true)
    t.same(sessionOf(t, await store.rotate(rotation(s.id, r0, t0 + HOUR))).roles, ['user'], 'reused')
    t.equal(await store.userChanged(s.id, ['user']), false, 'a revoked session is not brought back')
    t.equal(await store.get(s.id, t0 + HOUR), null)
    t.equal(await store.userChanged(randomUUID(), ['user']), false, 'no such session')
  })

  t.test('a session stored without roles reads as roles null', async (t) => {
    const { store } = await setup(t)
    const t0 = Date.now()
    const s = { ...newSession(t0), roles: null }
    const r0 = hash()
    await store.create(s, r0)
    t.equal((await store.get(s.id, t0))?.roles, null)
    t.equal(sessionOf(t, await store.rotate(rotation(s.id, r0, t0 + SECOND))).roles, null)
  })

  t.test('revoke ends the session', async (t) => {
    const { store } = await setup(t)
    const t0 = Date.now()
    const s = newSession(t0)
    const r0 = hash()
    await store.create(s, r0)
    t.equal(await store.revoke(s.id), true)
    t.equal(await store.get(s.id, t0), null)
    t.same(await store.rotate(rotation(s.id, r0, t0 + 1)), { outcome: 'unknown' })
    t.equal(await store.standing(s.id, r0, t0 + 1), null)
    t.equal(await store.revoke(s.id), false, 'a second revoke finds nothing')
  })

  t.test('the last SPENT_HISTORY spent tokens count as reuse; older ones change nothing', async (t) => {
    const { store } = await setup(t)
    const t0 = Date.now()
    const s = newSession(t0, true)
    const tokens = [hash()]
    await store.create(s, tokens[0]!)
    const total = SPENT_HISTORY + 5
    for (let i = 0; i < total; i++) {
      const step = rotation(s.id, tokens[i]!, t0 + (i + 1) * 60 * SECOND)
      t.equal((await store.rotate(step)).outcome, 'rotated')
      tokens.push(step.successorHash)
    }
    const later = t0 + (total + 60) * 60 * SECOND // past every grace window
    const oldestKept = total - SPENT_HISTORY
    t.equal(await store.standing(s.id, tokens[total]!, later), 'current')
    t.equal(await store.standing(s.id, tokens[total - 2]!, later), 'spent')
    t.equal(await store.standing(s.id, tokens[oldestKept]!, later), 'spent', 'the oldest one kept')
    t.equal(await store.standing(s.id, tokens[oldestKept - 1]!, later), null, 'one older is forgotten')
    t.equal(await store.standing(s.id, tokens[0]!, later), null)

    const forgotten = await store.rotate(rotation(s.id, tokens[0]!, later))
    t.equal(forgotten.outcome, 'unknown', 'a forgotten token is refused')
    t.ok(await store.get(s.id, later), 'and the session lives on')
    const reused = await store.rotate(rotation(s.id, tokens[oldestKept]!, later))
    t.equal(reused.outcome, 'reused', 'the oldest kept token is still reuse')
    t.equal(await store.get(s.id, later), null, 'which ends the session')
  })

  t.test('standing of current, previous, spent and unknown tokens', async (t) => {
    const { store } = await setup(t)
    const t0 = Date.now()
    const s = newSession(t0, true)
    const r0 = hash()
    await store.create(s, r0)
    t.equal(await store.standing(s.id, r0, t0), 'current')
    const first = rotation(s.id, r0, t0 + HOUR)
    await store.rotate(first)
    const second = rotation(s.id, first.successorHash, t0 + 2 * HOUR)
    await store.rotate(second)
    const much = t0 + 2 * HOUR + 3 * DAY // long after the grace window
    t.equal(await store.standing(s.id, second.successorHash, much), 'current')
    t.equal(await store.standing(s.id, first.successorHash, much), 'previous', 'previous at any age')
    t.equal(await store.standing(s.id, r0, much), 'spent')
    t.equal(await store.standing(s.id, hash(), much), null)
    t.equal(await store.standing(randomUUID(), r0, much), null)
    t.equal((await store.get(s.id, much))?.lastUsedAt, t0 + 2 * HOUR, 'standing changes nothing')
  })
}

t.test('memory', async (t) => {
  contract(t, async () => {
    const store = new MemorySessionStore()
    return { store, peers: (n) => Array.from({ length: n }, () => store), cleanup: () => store.close() }
  })

  t.test('sweep drops dead sessions only', async (t) => {
    const store = new MemorySessionStore({ sweepIntervalMs: 0 })
    t.teardown(() => store.close())
    const t0 = Date.now()
    const plain = newSession(t0)
    const remembered = newSession(t0, true)
    await store.create(plain, hash())
    await store.create(remembered, hash())
    t.equal(store.sweep(t0 + 12 * HOUR), 0)
    t.equal(store.sweep(t0 + 12 * HOUR + 1), 1)
    t.equal(store.size, 1)
    t.ok(await store.get(remembered.id, t0 + 12 * HOUR + 1))
  })
})

const redisUrl = testRedisUrl
if (redisUrl) {
  t.test('redis', async (t) => {
    const make = async (): Promise<Harness & { client: Redis; prefix: string }> => {
      const prefix = `lktest:${randomUUID()}:`
      const clients: Redis[] = []
      const connect = (): Redis => {
        const client = new Redis(redisUrl, { maxRetriesPerRequest: 2 })
        clients.push(client)
        return client
      }
      const client = connect()
      const store = new RedisSessionStore(client, { prefix })
      return {
        store,
        client,
        prefix,
        peers: (n) => Array.from({ length: n }, () => new RedisSessionStore(connect(), { prefix })),
        async cleanup() {
          await store.close()
          let cursor = '0'
          do {
            const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 100)
            if (keys.length > 0) await client.del(...keys)
            cursor = next
          } while (cursor !== '0')
          await Promise.all(clients.map((c) => c.quit()))
        },
      }
    }

    contract(t, make)

    t.test('one hash per session, with a TTL of min(idle, absolute)', async (t) => {
      const h = await make()
      t.teardown(() => h.cleanup())
      const store = h.store as RedisSessionStore
      const t0 = Date.now()
      const near = (actual: number, expected: number, msg: string) =>
        t.ok(actual > 0 && Math.abs(actual - expected) < 10 * SECOND, `${msg}: ${actual} ≈ ${expected}`)

      const plain = newSession(t0)
      const r0 = hash()
      await store.create(plain, r0)
      const key = `${h.prefix}session:{${plain.id}}`
      t.equal(store.key(plain.id), key)
      t.equal(await h.client.type(key), 'hash')
      near(await h.client.pttl(key), 12 * HOUR - (Date.now() - t0), 'idle bounds a new plain session')

      const first = rotation(plain.id, r0, t0 + 11 * HOUR)
      await store.rotate(first)
      near(await h.client.pttl(key), 23 * HOUR - (Date.now() - t0), 'a rotation extends it')
      const fields = await h.client.hgetall(key)
      t.equal(fields.cur, first.successorHash)
      t.equal(fields.prev, r0)
      t.equal(fields.prev_at, String(t0 + 11 * HOUR))
      t.equal(fields.succ, first.successorSealed)
      t.equal(fields.spent, `${r0} `, 'the spent hashes, each followed by a space')
      t.equal(fields[`x:${r0}`], undefined, 'no field per spent token')
      t.equal(fields.last_used, String(t0 + 11 * HOUR))
      t.same(JSON.parse(fields.amr ?? ''), plain.amr)

      await store.rotate(rotation(plain.id, first.successorHash, t0 + 22 * HOUR))
      near(await h.client.pttl(key), DAY - (Date.now() - t0), 'but never past the absolute expiry')

      // Remember-me whose absolute deadline is nearer than its idle one.
      const short = { ...newSession(t0, true), expiresAt: t0 + 2 * HOUR }
      await store.create(short, hash())
      near(await h.client.pttl(store.key(short.id)), 2 * HOUR - (Date.now() - t0), 'absolute bounds it')

      const remembered = newSession(t0, true)
      await store.create(remembered, hash())
      near(await h.client.pttl(store.key(remembered.id)), 7 * DAY - (Date.now() - t0), 'remember-me idle')

      t.equal(await store.revoke(plain.id), true)
      t.equal(await h.client.exists(key), 0, 'revoke deletes the key')
    })

    t.test('a session stays small however often it rotates', async (t) => {
      const h = await make()
      t.teardown(() => h.cleanup())
      const store = h.store as RedisSessionStore
      const t0 = Date.now()
      const s = newSession(t0, true)
      let current = hash()
      await store.create(s, current)
      const key = store.key(s.id)
      for (let i = 0; i < 3 * SPENT_HISTORY; i++) {
        const step = rotation(s.id, current, t0 + (i + 1) * SECOND)
        await store.rotate(step)
        current = step.successorHash
      }
      const fields = await h.client.hgetall(key)
      t.equal(Object.keys(fields).filter((name) => name.startsWith('x:')).length, 0)
      t.equal(fields.spent?.length, SPENT_HISTORY * 44, 'SPENT_HISTORY hashes of 43 characters and a space')
      t.ok((await h.client.hlen(key)) <= 16, `${await h.client.hlen(key)} fields`)
      const bytes = Number(await h.client.call('MEMORY', 'USAGE', key, 'SAMPLES', '0'))
      t.ok(bytes < 8192, `${bytes} bytes after ${3 * SPENT_HISTORY} rotations`)
    })

    t.test('tokens spent before the history was kept (x: fields) are still reuse', async (t) => {
      const h = await make()
      t.teardown(() => h.cleanup())
      const store = h.store as RedisSessionStore
      const t0 = Date.now()
      const s = newSession(t0, true)
      const r0 = hash()
      await store.create(s, r0)
      const legacy = hash()
      await h.client.hset(store.key(s.id), `x:${legacy}`, String(t0))
      const later = t0 + HOUR
      t.equal(await store.standing(s.id, legacy, later), 'spent')
      t.equal((await store.rotate(rotation(s.id, legacy, later))).outcome, 'reused')
      t.equal(await store.get(s.id, later), null)
    })

    t.test('close() leaves the caller’s client open', async (t) => {
      const h = await make()
      t.teardown(() => h.cleanup())
      await h.store.close()
      t.equal(await h.client.ping(), 'PONG')
    })
  })
}
