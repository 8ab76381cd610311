/**
 * The signing key ring: the pure time rule (`keyState`) for every transition, then KeyRing over a
 * real signing_keys table (PostgreSQL with TEST_DATABASE_URL, else PGlite) with an injected clock.
 * One database serves the whole file (PGlite is slow to open); each subtest empties the table.
 */
import { generateKeyPairSync, type KeyObject } from 'node:crypto'
import { sql } from 'drizzle-orm'
import {
  calculateJwkThumbprint,
  createLocalJWKSet,
  decodeProtectedHeader,
  exportJWK,
  type JWK,
  jwtVerify,
  SignJWT,
} from 'jose'
import t, { type Test } from 'tap'
import { unseal } from '../../src/domain/crypto.js'
import { KeyRing, type KeyRingOptions, type KeyTimes, keyState } from '../../src/domain/key-ring.js'
import { type DatabaseHandle, openDatabase } from '../../src/storage/database.js'
import { signingKeys } from '../../src/storage/schema.js'
import { SigningKeyRepository } from '../../src/storage/signing-key-repository.js'
import { createTestDatabase, TEST_KEY_ENCRYPTION_KEY, TestClock } from '../helpers/app.js'

const SECOND = 1000
const JWKS_MAX_AGE = 300
const ACCESS_TOKEN_TTL = 900
const ENCRYPTION_KEY = Buffer.from(TEST_KEY_ENCRYPTION_KEY, 'hex')
/** A fixed, whole-second start so database timestamps round-trip exactly. */
const START = Date.UTC(2030, 0, 1, 12, 0, 0)

t.test('keyState: the time rule, transition by transition', async (t) => {
  const ttl = 100 * SECOND
  const one: KeyTimes[] = [{ kid: 'a', activatesAt: 1000 * SECOND }]
  t.equal(keyState(one, 0, 999 * SECOND, ttl), 'next', 'before its activation a key is next')
  t.equal(keyState(one, 0, 1000 * SECOND - 1, ttl), 'next', 'one millisecond before: still next')
  t.equal(keyState(one, 0, 1000 * SECOND, ttl), 'signing', 'at its activation it signs')
  t.equal(keyState(one, 0, 10_000_000 * SECOND, ttl), 'signing', 'with no successor it signs forever')

  const two: KeyTimes[] = [
    { kid: 'a', activatesAt: 1000 * SECOND },
    { kid: 'b', activatesAt: 2000 * SECOND },
  ]
  const states = (keys: KeyTimes[], now: number) => keys.map((_, index) => keyState(keys, index, now, ttl))
  t.same(states(two, 500 * SECOND), ['next', 'next'])
  t.same(states(two, 1000 * SECOND), ['signing', 'next'], 'the new key is published before it signs')
  t.same(states(two, 2000 * SECOND - 1), ['signing', 'next'])
  t.same(states(two, 2000 * SECOND), ['retiring', 'signing'], 'the successor takes over at its activation')
  t.same(states(two, 2000 * SECOND + ttl - 1), ['retiring', 'signing'], 'retiring for the token lifetime')
  t.same(states(two, 2000 * SECOND + ttl), ['retired', 'signing'], 'then retired')
  t.same(states(two, 1_000_000 * SECOND), ['retired', 'signing'])

  // Three keys: each retires ACCESS_TOKEN_TTL after *its own* successor activated.
  const three: KeyTimes[] = [
    { kid: 'a', activatesAt: 1000 * SECOND },
    { kid: 'b', activatesAt: 1050 * SECOND },
    { kid: 'c', activatesAt: 1120 * SECOND },
  ]
  t.same(states(three, 1000 * SECOND), ['signing', 'next', 'next'])
  t.same(states(three, 1050 * SECOND), ['retiring', 'signing', 'next'])
  t.same(states(three, 1120 * SECOND), ['retiring', 'retiring', 'signing'])
  t.same(states(three, 1150 * SECOND), ['retired', 'retiring', 'signing'], 'a: 1050 + 100 s')
  t.same(states(three, 1220 * SECOND - 1), ['retired', 'retiring', 'signing'])
  t.same(states(three, 1220 * SECOND), ['retired', 'retired', 'signing'], 'b: 1120 + 100 s')

  // The rule does not depend on the ring having already dropped retired keys.
  const tail = three.slice(1)
  t.same(states(tail, 1150 * SECOND), ['retiring', 'signing'])
})

// ---------------------------------------------------------------------------------------------
// KeyRing over a real table.

const databaseUrl = await createTestDatabase(t)
const database = await openDatabase({ url: databaseUrl, dataDir: ':memory:' })
t.teardown(() => database.close())
await database.migrate()

/** Another "server": its own connection pool with PostgreSQL; PGlite has one connection only. */
async function peerDatabase(t: Test): Promise<DatabaseHandle> {
  if (!databaseUrl) return database
  const handle = await openDatabase({ url: databaseUrl, dataDir: ':memory:', maxConnections: 2 })
  t.teardown(() => handle.close())
  return handle
}

function keyRing(clock: TestClock, options: Partial<KeyRingOptions> & { db?: DatabaseHandle } = {}): KeyRing {
  const { db = database, ...rest } = options
  return new KeyRing({
    repository: new SigningKeyRepository(db.db),
    encryptionKey: ENCRYPTION_KEY,
    alg: 'RS256',
    clock,
    jwksMaxAgeSeconds: JWKS_MAX_AGE,
    accessTokenTtlSeconds: ACCESS_TOKEN_TTL,
    rotationIntervalSeconds: 0,
    ...rest,
  })
}

async function rows() {
  return database.db.select().from(signingKeys).orderBy(signingKeys.activatesAt)
}

const kids = (ring: KeyRing) => ring.jwks().keys.map((key) => key.kid)

/** Signs a token with the ring's signing key; returns it with the kid that signed. */
async function signWith(ring: KeyRing, clock: TestClock): Promise<{ token: string; kid: string }> {
  const { kid, alg, privateKey } = ring.signingKey()
  const now = Math.floor(clock.now() / 1000)
  const token = await new SignJWT({ sub: 'someone' })
    .setProtectedHeader({ alg, kid, typ: 'at+jwt' })
    .setIssuedAt(now)
    .setExpirationTime(now + ACCESS_TOKEN_TTL)
    .sign(privateKey)
  return { token, kid }
}

/** Verifies like an integrator would: with the published key set only. */
async function verifiesWithJwks(ring: KeyRing, token: string, clock: TestClock): Promise<boolean> {
  try {
    await jwtVerify(token, createLocalJWKSet(ring.jwks()), { currentDate: new Date(clock.now()) })
    return true
  } catch {
    return false
  }
}

t.beforeEach(async () => {
  await database.db.execute(sql`delete from signing_keys`)
})

t.test('initialise creates exactly one key that signs at once', async (t) => {
  const clock = new TestClock(START)
  const ring = keyRing(clock)
  await ring.initialise()

  const [row, ...others] = await rows()
  t.equal(others.length, 0, 'exactly one key')
  t.equal(row!.createdAt.getTime(), START)
  t.equal(row!.activatesAt.getTime(), START, 'the first key needs no publication delay')
  t.equal(row!.retiredAt, null)
  t.equal(row!.alg, 'RS256')

  const signing = ring.signingKey()
  t.equal(signing.kid, row!.kid, 'it signs at once')
  t.equal(signing.alg, 'RS256')
  t.same(kids(ring), [row!.kid])
  const jwk = ring.jwks().keys[0]!
  t.match(jwk, { kty: 'RSA', alg: 'RS256', use: 'sig', kid: row!.kid })
  for (const member of ['d', 'p', 'q', 'dp', 'dq', 'qi'])
    t.notOk(member in jwk, `no private member ${member}`)
  t.equal(await calculateJwkThumbprint(jwk), jwk.kid, 'kid is the RFC 7638 thumbprint')
  t.ok(ring.verificationKey(row!.kid), 'and verifies')
  t.equal(ring.verificationKey('unknown'), undefined)

  const { token } = await signWith(ring, clock)
  t.ok(await verifiesWithJwks(ring, token, clock), 'a token it signs verifies from the JWKS alone')

  const again = keyRing(clock)
  await again.initialise()
  t.equal((await rows()).length, 1, 'initialising over a table with a key adds none')
  t.equal(again.signingKey().kid, row!.kid, 'a second instance signs with the same key')
})

t.test('concurrent initialisation of several instances creates one key', async (t) => {
  const clock = new TestClock(START)
  const peers = await Promise.all([0, 1, 2].map(() => peerDatabase(t)))
  const rings = [keyRing(clock), ...peers.map((db) => keyRing(clock, { db }))]
  await Promise.all(rings.map((ring) => ring.initialise()))
  const all = await rows()
  t.equal(all.length, 1, 'one key for all')
  for (const ring of rings) t.equal(ring.signingKey().kid, all[0]!.kid)
})

t.test('rotation: published at once, signs after JWKS_MAX_AGE, old key retires after the TTL', async (t) => {
  const clock = new TestClock(START)
  const first = keyRing(clock)
  await first.initialise()
  const second = keyRing(clock, { db: await peerDatabase(t) })
  await second.initialise()
  const oldKid = first.signingKey().kid
  t.equal(second.signingKey().kid, oldKid)

  clock.advance(60)
  const rotated = await first.rotate()
  t.not(rotated.kid, oldKid)
  t.equal(
    rotated.activatesAt.getTime(),
    clock.now() + JWKS_MAX_AGE * SECOND,
    'activates at now + JWKS_MAX_AGE',
  )
  t.same(kids(first), [rotated.kid, oldKid], 'the new key is in the JWKS at once, newest first')
  t.equal(first.signingKey().kid, oldKid, 'but does not sign yet')
  t.equal(first.verificationKey(rotated.kid), undefined, 'and verifies nothing yet: it signed nothing')
  t.ok(first.verificationKey(oldKid))
  const [before] = await first.list().then((list) => list.filter((key) => key.kid === rotated.kid))
  t.equal(before?.state, 'next')

  // Another server sees it on its next refresh, without restart.
  t.same(kids(second), [oldKid], 'the other instance has not re-read the table yet')
  await second.refresh()
  t.same(kids(second), [rotated.kid, oldKid], 'after refresh() the other instance publishes it too')
  t.equal(second.signingKey().kid, oldKid)

  // A token signed by the old key just before the switch.
  clock.advance(JWKS_MAX_AGE - 1)
  t.equal(first.signingKey().kid, oldKid, 'one second before activation: the old key still signs')
  const lastOld = await signWith(first, clock)
  t.equal(lastOld.kid, oldKid)

  clock.advance(1)
  t.equal(first.signingKey().kid, rotated.kid, 'at activation the new key signs')
  t.equal(second.signingKey().kid, rotated.kid, 'on every instance, from the times alone')
  const fresh = await signWith(first, clock)
  t.equal(decodeProtectedHeader(fresh.token).kid, rotated.kid)
  t.ok(await verifiesWithJwks(second, fresh.token, clock), 'another instance verifies the new key')
  t.ok(second.verificationKey(rotated.kid))
  t.same(kids(first), [rotated.kid, oldKid], 'the replaced key stays published')
  t.ok(first.verificationKey(oldKid), 'and keeps verifying')

  const replacedAt = rotated.activatesAt.getTime()
  // It expires at replacedAt - 1 s + ACCESS_TOKEN_TTL: just before the old key leaves.
  clock.current = replacedAt + (ACCESS_TOKEN_TTL - 2) * SECOND
  t.ok(await verifiesWithJwks(first, lastOld.token, clock), 'the last old token verifies until it expires')
  clock.current = replacedAt + ACCESS_TOKEN_TTL * SECOND - 1
  t.ok(first.verificationKey(oldKid))
  t.same(kids(first), [rotated.kid, oldKid])

  clock.current = replacedAt + ACCESS_TOKEN_TTL * SECOND
  t.same(kids(first), [rotated.kid], 'ACCESS_TOKEN_TTL after the replacement the old key leaves the JWKS')
  t.equal(first.verificationKey(oldKid), undefined, 'and verifies no more')
  t.equal(second.verificationKey(oldKid), undefined, 'on every instance, before any refresh')
  const unrefreshed = (await rows()).find((row) => row.kid === oldKid)
  t.equal(unrefreshed?.retiredAt, null, 'its row is marked on the next refresh')

  await first.refresh()
  const all = await rows()
  t.equal(all.length, 2, 'the row is kept')
  const retiredRow = all.find((row) => row.kid === oldKid)
  t.equal(retiredRow?.retiredAt?.getTime(), clock.now(), 'marked retired at refresh time')
  t.equal(all.find((row) => row.kid === rotated.kid)?.retiredAt, null)
  const listed = await first.list()
  t.same(
    listed.map((key) => [key.kid, key.state]),
    [
      [oldKid, 'retired'],
      [rotated.kid, 'signing'],
    ],
  )

  await second.refresh()
  t.same(kids(second), [rotated.kid])
  t.equal(second.signingKey().kid, rotated.kid)
  const restarted = keyRing(clock)
  await restarted.initialise()
  t.same(kids(restarted), [rotated.kid], 'a restarted instance does not load the retired key')
})

t.test('the private half is sealed at rest', async (t) => {
  const clock = new TestClock(START)
  const ring = keyRing(clock)
  await ring.initialise()
  const [row] = await rows()
  t.match(row!.privateJwkSealed, /^v1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/)
  const privateJwk = JSON.parse(
    unseal(ENCRYPTION_KEY, row!.privateJwkSealed, `latchkey signing key ${row!.kid}`),
  ) as JWK
  t.type(privateJwk.d, 'string', 'the sealed value is the private JWK')
  for (const member of ['d', 'p', 'q', 'dp', 'dq', 'qi'] as const) {
    const value = privateJwk[member]!
    t.ok(value.length > 20)
    t.notOk(row!.privateJwkSealed.includes(value), `${member} is not stored in clear`)
    t.notOk(JSON.stringify(row!.publicJwk).includes(value), `${member} is not in the public JWK`)
  }

  // An imported key, whose private value the test knows from the start.
  const { privateKey } = generateKeyPairSync('ed25519')
  const { d } = await exportJWK(privateKey)
  const imported = await ring.import(privateKey.export({ type: 'pkcs8', format: 'pem' }).toString())
  const importedRow = (await rows()).find((candidate) => candidate.kid === imported.kid)!
  t.notOk(importedRow.privateJwkSealed.includes(d!), 'an imported key is sealed too')

  const stranger = keyRing(clock, { encryptionKey: Buffer.alloc(32, 7) })
  await t.rejects(stranger.initialise(), 'another KEY_ENCRYPTION_KEY cannot load the keys')
  t.equal((await rows()).length, 2, 'and adds none')

  // The seal is bound to the kid: a sealed value moved to another row does not open.
  await database.db.execute(
    sql`update signing_keys set private_jwk_sealed = ${row!.privateJwkSealed} where kid = ${imported.kid}`,
  )
  await t.rejects(keyRing(clock).initialise(), 'a sealed value swapped between rows does not load')
})

/** The kid a JWK thumbprint gives a public key. */
async function thumbprint(publicKey: KeyObject): Promise<string> {
  const { kty, n, e, crv, x, y } = await exportJWK(publicKey)
  const bare = Object.fromEntries(Object.entries({ kty, n, e, crv, x, y }).filter(([, v]) => v !== undefined))
  return calculateJwkThumbprint(bare as JWK)
}

t.test('import: RSA PEM, Ed25519 PEM and ES256 JWK keys become the next key', async (t) => {
  const clock = new TestClock(START)
  const ring = keyRing(clock)
  await ring.initialise()

  const cases = [
    {
      name: 'RSA 2048 PKCS#8 PEM',
      pair: generateKeyPairSync('rsa', { modulusLength: 2048 }),
      alg: 'RS256',
      material: (key: KeyObject) => key.export({ type: 'pkcs8', format: 'pem' }).toString(),
    },
    {
      name: 'Ed25519 PKCS#8 PEM',
      pair: generateKeyPairSync('ed25519'),
      alg: 'EdDSA',
      material: (key: KeyObject) => key.export({ type: 'pkcs8', format: 'pem' }).toString(),
    },
    {
      name: 'P-256 private JWK',
      pair: generateKeyPairSync('ec', { namedCurve: 'P-256' }),
      alg: 'ES256',
      material: (key: KeyObject) => JSON.stringify(key.export({ format: 'jwk' })),
    },
    {
      name: 'P-256 SEC1 PEM',
      pair: generateKeyPairSync('ec', { namedCurve: 'P-256' }),
      alg: 'ES256',
      material: (key: KeyObject) => key.export({ type: 'sec1', format: 'pem' }).toString(),
    },
  ] as const

  for (const { name, pair, alg, material } of cases) {
    const previous = ring.signingKey().kid
    const result = await ring.import(material(pair.privateKey))
    t.equal(result.alg, alg, `${name}: algorithm inferred`)
    t.equal(result.kid, await thumbprint(pair.publicKey), `${name}: kid is the thumbprint of the key`)
    t.equal(result.activatesAt.getTime(), clock.now() + JWKS_MAX_AGE * SECOND, `${name}: next key`)
    t.equal(kids(ring)[0], result.kid, `${name}: published at once`)
    t.match(ring.jwks().keys[0], { alg, use: 'sig', kid: result.kid })
    t.notOk('d' in ring.jwks().keys[0]!, `${name}: no private member published`)
    t.equal(ring.signingKey().kid, previous, `${name}: does not sign before JWKS_MAX_AGE`)

    clock.advance(JWKS_MAX_AGE)
    const signed = await signWith(ring, clock)
    t.equal(signed.kid, result.kid, `${name}: signs after JWKS_MAX_AGE`)
    t.equal(decodeProtectedHeader(signed.token).alg, alg)
    await t.resolves(
      jwtVerify(signed.token, pair.publicKey, { currentDate: new Date(clock.now()) }),
      `${name}: signatures verify with the operator's public key`,
    )
    t.equal(ring.verificationKey(result.kid)?.alg, alg)
    t.ok(await verifiesWithJwks(ring, signed.token, clock))
    clock.advance(60)
  }

  const duplicate = cases[1].material(cases[1].pair.privateKey)
  await t.rejects(ring.import(duplicate), /already in the ring/, 'the same key twice is refused')
  const weak = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey
  await t.rejects(ring.import(weak.export({ type: 'pkcs8', format: 'pem' }).toString()), /2048/)
  const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey
  await t.rejects(ring.import(p384.export({ type: 'pkcs8', format: 'pem' }).toString()), /unsupported/)
  const publicOnly = JSON.stringify(cases[2].pair.publicKey.export({ format: 'jwk' }))
  await t.rejects(ring.import(publicOnly), /not a private key/)
  await t.rejects(ring.import('not a key'), /neither PEM nor JSON/)
  await t.rejects(ring.import('-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----'), /PEM/)
  t.equal((await rows()).length, 1 + cases.length, 'refused imports add nothing')
})

t.test('KEY_ROTATION_INTERVAL: refresh() adds a key when the newest is older, once', async (t) => {
  const interval = 3600
  const clock = new TestClock(START)
  const first = keyRing(clock, { rotationIntervalSeconds: interval })
  const second = keyRing(clock, { rotationIntervalSeconds: interval, db: await peerDatabase(t) })
  await Promise.all([first.initialise(), second.initialise()])
  t.equal((await rows()).length, 1, 'initialisation makes only the first key')

  clock.advance(interval - 1)
  await first.refresh()
  t.equal((await rows()).length, 1, 'not before the interval has passed')

  clock.advance(1)
  await first.refresh()
  let all = await rows()
  t.equal(all.length, 2, 'a key is added once the newest is as old as the interval')
  const added = all[1]!
  t.equal(added.createdAt.getTime(), clock.now())
  t.equal(added.activatesAt.getTime(), clock.now() + JWKS_MAX_AGE * SECOND, 'published before it signs')
  t.equal(first.signingKey().kid, all[0]!.kid)
  await first.refresh()
  await second.refresh()
  t.equal((await rows()).length, 2, 'refreshing again (any instance) adds nothing')
  t.same(kids(second), kids(first))

  clock.advance(JWKS_MAX_AGE)
  t.equal(second.signingKey().kid, added.kid, 'the timed key signs after JWKS_MAX_AGE')

  // Both instances find the rotation due at the same moment.
  clock.current = added.createdAt.getTime() + interval * SECOND
  await Promise.all([first.refresh(), second.refresh(), first.refresh(), second.refresh()])
  all = await rows()
  t.equal(all.length, 3, 'concurrent refreshes perform the rotation once')
  t.equal(all.filter((row) => row.retiredAt === null).length, 2, 'the first key retired meanwhile')
  t.same(kids(first), kids(second))
  t.equal(kids(first).length, 2)

  // A restart long after the interval: one rotation, not one per missed interval.
  clock.advance(10 * interval)
  const restarted = keyRing(clock, { rotationIntervalSeconds: interval })
  await restarted.initialise()
  t.equal((await rows()).length, 4)
  t.equal(restarted.signingKey().kid, all[2]!.kid, 'the newest activated key signs meanwhile')
})
