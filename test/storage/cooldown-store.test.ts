import { randomUUID } from 'node:crypto'
import { Redis } from 'ioredis'
import t, { type Test } from 'tap'
import {
  type CooldownStore,
  MemoryCooldownStore,
  RedisCooldownStore,
} from '../../src/storage/cooldown-store.js'
import { testRedisUrl } from '../helpers/services.js'

const MINUTE = 60_000
const DAY = 24 * 60 * MINUTE

function contract(t: Test, make: (t: Test) => Promise<CooldownStore>): void {
  t.test('counts an account’s failures and when each address last failed', async (t) => {
    const store = await make(t)
    const account = randomUUID()
    const now = Date.now()
    t.same(await store.get(account, '10.0.0.1'), { failures: 0, addressFailedAt: null })
    t.equal(await store.recordFailure(account, '10.0.0.1', now, DAY, 16 * MINUTE), 1)
    t.equal(await store.recordFailure(account, '10.0.0.2', now + 1000, DAY, 16 * MINUTE), 2)
    t.equal(await store.recordFailure(account, '10.0.0.1', now + 2000, DAY, 16 * MINUTE), 3)
    t.same(await store.get(account, '10.0.0.1'), { failures: 3, addressFailedAt: now + 2000 })
    t.same(await store.get(account, '10.0.0.2'), { failures: 3, addressFailedAt: now + 1000 })
    t.same(await store.get(account, '10.0.0.3'), { failures: 3, addressFailedAt: null })
    t.same(await store.get(randomUUID(), '10.0.0.1'), { failures: 0, addressFailedAt: null }, 'per account')
    await store.reset(account)
    t.same(await store.get(account, '10.0.0.3'), { failures: 0, addressFailedAt: null }, 'reset forgets')
    t.equal(await store.recordFailure(account, '10.0.0.3', now + 3000, DAY, 16 * MINUTE), 1, 'counts anew')
  })
}

t.test('memory', async (t) => {
  contract(t, async () => new MemoryCooldownStore())

  t.test('an address is forgotten once its time is past addressTtlMs', async (t) => {
    const store = new MemoryCooldownStore()
    const account = randomUUID()
    const start = Date.now()
    // An hour of failures from a new address every minute: only the last 16 minutes stay.
    for (let minute = 0; minute < 60; minute++) {
      await store.recordFailure(account, `10.0.${minute}.1`, start + minute * MINUTE, DAY, 16 * MINUTE)
    }
    t.equal(store.addressCount(account), 16)
    t.equal((await store.get(account, '10.0.59.1')).addressFailedAt, start + 59 * MINUTE)
    t.equal((await store.get(account, '10.0.0.1')).addressFailedAt, null)
    t.equal((await store.get(account, '10.0.0.1')).failures, 60, 'the count is the account’s')
  })
})

const redisUrl = testRedisUrl
if (redisUrl) {
  t.test('redis', async (t) => {
    const prefix = `lktest:${randomUUID()}:`
    const client = new Redis(redisUrl, { maxRetriesPerRequest: 2 })
    t.teardown(async () => {
      const keys = await client.keys(`${prefix}*`)
      if (keys.length > 0) await client.del(...keys)
      await client.quit()
    })
    const store = new RedisCooldownStore(client, prefix)
    contract(t, async () => store)

    t.test('each address has its own key, gone after addressTtlMs; the count lasts ttlMs', async (t) => {
      const account = randomUUID()
      const now = Date.now()
      for (let i = 0; i < 200; i++) await store.recordFailure(account, `10.1.${i}.1`, now, DAY, 16 * MINUTE)
      const keys = await client.keys(`${prefix}cooldown:{${account}}*`)
      t.equal(keys.length, 201, 'the count and one key per address')
      const addressTtl = await client.pttl(`${prefix}cooldown:{${account}}:a:10.1.7.1`)
      t.ok(addressTtl > 15 * MINUTE && addressTtl <= 16 * MINUTE, `address key expires in ${addressTtl} ms`)
      const countTtl = await client.pttl(`${prefix}cooldown:{${account}}:f`)
      t.ok(countTtl > DAY - MINUTE && countTtl <= DAY, `count expires in ${countTtl} ms`)
      await store.recordFailure(account, '10.2.0.1', now, DAY, 50)
      await new Promise((resolve) => setTimeout(resolve, 120))
      t.same(await store.get(account, '10.2.0.1'), { failures: 201, addressFailedAt: null }, 'expired')
    })

    t.test('reset also removes the hash an earlier release kept', async (t) => {
      const account = randomUUID()
      const legacy = `${prefix}cooldown:{${account}}`
      await client.hset(legacy, 'f', '7', 'a:10.0.0.1', String(Date.now()))
      await store.reset(account)
      t.equal(await client.exists(legacy), 0)
    })
  })
}
