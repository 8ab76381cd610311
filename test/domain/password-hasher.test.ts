import t from 'tap'
import { PasswordHasher } from '../../src/domain/password-hasher.js'
import { ProblemError } from '../../src/errors.js'

// The lowest parameters the configuration allows: real argon2id, but quick.
const params = { memoryKib: 19456, timeCost: 2 }
const password = 'glacier umbrella fossil lantern'

function parsePhc(hash: string) {
  const [, id, version, paramList, salt, digest] = hash.split('$')
  const values = Object.fromEntries((paramList ?? '').split(',').map((pair) => pair.split('=')))
  return { id, version, m: Number(values.m), t: Number(values.t), p: Number(values.p), salt, digest }
}

t.test('hashes with argon2id at the configured cost and parallelism 1', async (t) => {
  const hasher = new PasswordHasher(params)
  const hash = await hasher.hash(password)
  const phc = parsePhc(hash)
  t.equal(phc.id, 'argon2id')
  t.equal(phc.version, 'v=19')
  t.ok(phc.m >= 19456, `m=${phc.m}`)
  t.ok(phc.t >= 2, `t=${phc.t}`)
  t.equal(phc.p, 1)
  t.not(await hasher.hash(password), hash, 'a fresh salt every time')
})

t.test('verify accepts the password and refuses another', async (t) => {
  const hasher = new PasswordHasher(params)
  const hash = await hasher.hash(password)
  t.same(await hasher.verify(hash, password), { ok: true, needsRehash: false })
  t.same(await hasher.verify(hash, `${password}!`), { ok: false, needsRehash: false })
  t.same(await hasher.verify(hash, password.toUpperCase()), { ok: false, needsRehash: false })
})

t.test('the pepper is part of the hash', async (t) => {
  const a = new PasswordHasher({ ...params, pepper: 'pepper-A-0123456789' })
  const b = new PasswordHasher({ ...params, pepper: Buffer.from('pepper-B-0123456789') })
  const none = new PasswordHasher(params)
  const hash = await a.hash(password)
  t.equal((await a.verify(hash, password)).ok, true)
  t.equal((await b.verify(hash, password)).ok, false, 'another pepper')
  t.equal((await none.verify(hash, password)).ok, false, 'no pepper')
  t.equal(
    (await a.verify(await none.hash(password), password)).ok,
    false,
    'unpeppered hash, peppered verifier',
  )
})

t.test('needsRehash when the stored parameters differ from the current ones', async (t) => {
  const old = new PasswordHasher(params)
  const stronger = new PasswordHasher({ memoryKib: 19456, timeCost: 3 })
  const bigger = new PasswordHasher({ memoryKib: 20480, timeCost: 2 })
  const hash = await old.hash(password)
  t.same(await stronger.verify(hash, password), { ok: true, needsRehash: true })
  t.same(await bigger.verify(hash, password), { ok: true, needsRehash: true })
  t.same(await old.verify(hash, password), { ok: true, needsRehash: false })
  t.same(await stronger.verify(hash, 'wrong password here'), { ok: false, needsRehash: false })
})

t.test('NFKC-equivalent passwords verify', async (t) => {
  const hasher = new PasswordHasher(params)
  const hash = await hasher.hash('ｇｌａｃｉｅｒ　ｕｍｂｒｅｌｌａ')
  t.equal((await hasher.verify(hash, 'glacier umbrella')).ok, true)
  const composed = await hasher.hash('caf\u00e9 au lait 2024')
  t.equal((await hasher.verify(composed, 'cafe\u0301 au lait 2024')).ok, true, 'composed and decomposed é')
})

t.test('verifyDummy costs a real verification and never succeeds', async (t) => {
  const hasher = new PasswordHasher(params)
  const hash = await hasher.hash(password)
  await hasher.verifyDummy(password) // builds the dummy hash once
  const timed = async (work: () => Promise<unknown>) => {
    const start = performance.now()
    await work()
    return performance.now() - start
  }
  let real = 0
  let dummy = 0
  for (let i = 0; i < 3; i++) {
    real += await timed(() => hasher.verify(hash, 'not the password'))
    dummy += await timed(() => hasher.verifyDummy('not the password'))
  }
  // Loose bounds: the point is "same order of work", and the machine may be busy.
  t.ok(dummy > real / 3 && dummy < real * 3, `dummy ${dummy.toFixed(0)} ms vs real ${real.toFixed(0)} ms`)
  t.equal(await hasher.verifyDummy(password), undefined)
})

t.test('never runs more than `concurrency` hashes at once', async (t) => {
  const hasher = new PasswordHasher({ ...params, concurrency: 2 })
  let peak = 0
  let peakQueue = 0
  const sample = setInterval(() => {
    peak = Math.max(peak, hasher.inFlight)
    peakQueue = Math.max(peakQueue, hasher.queueDepth)
  }, 1)
  const all = Promise.all(Array.from({ length: 10 }, (_, i) => hasher.hash(`${password} ${i}`)))
  peak = Math.max(peak, hasher.inFlight)
  peakQueue = Math.max(peakQueue, hasher.queueDepth)
  t.equal(hasher.inFlight, 2, 'two start at once')
  t.equal(hasher.queueDepth, 8, 'the rest wait')
  const hashes = await all
  clearInterval(sample)
  t.equal(new Set(hashes).size, 10)
  t.equal(peak, 2)
  t.equal(peakQueue, 8)
  t.equal(hasher.inFlight, 0)
  t.equal(hasher.queueDepth, 0)
})

t.test('a full queue answers service_unavailable with retry-after', async (t) => {
  const hasher = new PasswordHasher({ ...params, concurrency: 1, maxQueue: 2 })
  const accepted = [
    hasher.hash('one one one one'),
    hasher.hash('two two two two'),
    hasher.hash('three three'),
  ]
  t.equal(hasher.inFlight, 1)
  t.equal(hasher.queueDepth, 2)
  const refused = await hasher.hash('four four four').catch((error: unknown) => error)
  t.type(refused, ProblemError)
  t.equal((refused as ProblemError).code, 'service_unavailable')
  t.equal((refused as ProblemError).status, 503)
  t.same((refused as ProblemError).headers, { 'retry-after': '1' })
  const verifyRefused = await hasher.verify('$argon2id$x', 'x').catch((e: unknown) => e)
  t.equal((verifyRefused as ProblemError).code, 'service_unavailable', 'verify shares the limit')
  await Promise.all(accepted)
  t.equal(hasher.queueDepth, 0)
  t.ok(await hasher.hash('five five five'), 'accepts again once drained')
})

t.test('a hash that waits longer than maxWaitMs is refused, and never runs', async (t) => {
  // One slot; an argon2id hash at these parameters takes tens of milliseconds, so a wait of
  // 5 ms runs out before the slot is free.
  const hasher = new PasswordHasher({ ...params, concurrency: 1, maxWaitMs: 5 })
  let peak = 0
  const sample = setInterval(() => {
    peak = Math.max(peak, hasher.inFlight)
  }, 1)
  t.teardown(() => clearInterval(sample))
  const running = hasher.hash('the one that runs')
  const started = performance.now()
  const waited = await hasher.hash('the one that waits').catch((error: unknown) => error)
  const elapsed = performance.now() - started
  t.type(waited, ProblemError)
  t.equal((waited as ProblemError).code, 'service_unavailable')
  t.equal((waited as ProblemError).status, 503)
  t.same((waited as ProblemError).headers, { 'retry-after': '1' })
  t.ok(elapsed >= 4, `refused after its wait (${elapsed.toFixed(1)} ms), not at once`)
  t.equal(hasher.queueDepth, 0, 'it left the queue')
  t.equal(hasher.inFlight, 1, 'the first still runs')
  t.ok(await running)
  t.equal(hasher.inFlight, 0, 'the refused one never took the slot')
  t.equal(peak, 1)
  t.ok(await hasher.hash('the next one'), 'the slot serves the next caller')
})

t.test('waiting hashes are served in arrival order', async (t) => {
  const hasher = new PasswordHasher({ ...params, concurrency: 1 })
  const finished: number[] = []
  await Promise.all(
    Array.from({ length: 5 }, (_, i) => hasher.hash(`${password} ${i}`).then(() => finished.push(i))),
  )
  t.same(finished, [0, 1, 2, 3, 4])
})

t.test('rejects nonsensical limits', async (t) => {
  t.throws(() => new PasswordHasher({ ...params, concurrency: 0 }), RangeError)
  t.throws(() => new PasswordHasher({ ...params, maxQueue: -1 }), RangeError)
  t.throws(() => new PasswordHasher({ ...params, maxWaitMs: 0 }), RangeError)
})
