import t from 'tap'
import { kidOf, VerifiedTokenCache } from '../../src/domain/verified-tokens.js'

interface Claims {
  exp: number
  sub: string
  roles: string[]
}

function cache(options: { now: () => number; usable?: Set<string>; max?: number }) {
  const usable = options.usable ?? new Set(['k1'])
  return new VerifiedTokenCache<Claims>({
    maxEntries: options.max ?? 10,
    clockToleranceSeconds: 5,
    keyUsable: (kid) => usable.has(kid),
    now: options.now,
  })
}

t.test('a verified token is remembered by its exact text until exp plus the tolerance', async (t) => {
  let now = 1_000_000
  const tokens = cache({ now: () => now })
  t.equal(tokens.get('a.b.c'), undefined, 'nothing before it is verified')
  tokens.set('a.b.c', 'k1', { exp: 1_100, sub: 'u', roles: ['user'] })
  t.same(tokens.get('a.b.c'), { exp: 1_100, sub: 'u', roles: ['user'] })
  t.equal(tokens.get('a.b.c '), undefined, 'not another text')
  t.equal(tokens.get('a.b.C'), undefined)
  now = 1_104_999
  t.ok(tokens.get('a.b.c'), 'within the 5 s tolerance after exp')
  now = 1_105_000
  t.equal(tokens.get('a.b.c'), undefined, 'not once exp + tolerance has passed')
  t.equal(tokens.size, 0, 'and it is forgotten')
})

t.test('a token whose key no longer verifies is not taken from the cache', async (t) => {
  const usable = new Set(['k1', 'k2'])
  const tokens = cache({ now: () => 0, usable })
  tokens.set('one', 'k1', { exp: 100, sub: 'u', roles: [] })
  tokens.set('two', 'k2', { exp: 100, sub: 'u', roles: [] })
  usable.delete('k1')
  t.equal(tokens.get('one'), undefined, 'its key was retired')
  t.ok(tokens.get('two'), 'the other key still verifies')
})

t.test('bounded: the oldest token makes room; the claims are frozen', async (t) => {
  const tokens = cache({ now: () => 0, max: 3 })
  for (const name of ['a', 'b', 'c']) tokens.set(name, 'k1', { exp: 100, sub: name, roles: ['user'] })
  tokens.set('b', 'k1', { exp: 100, sub: 'b', roles: ['user'] })
  t.equal(tokens.size, 3, 'setting a remembered token again takes no room')
  const claims = tokens.set('d', 'k1', { exp: 100, sub: 'd', roles: ['user'] })
  t.equal(tokens.size, 3)
  t.equal(tokens.get('a'), undefined, 'the oldest went')
  t.ok(tokens.get('d'))
  t.ok(Object.isFrozen(claims) && Object.isFrozen(claims.roles), 'shared by requests, so frozen')
  t.throws(() => claims.roles.push('admin'))
})

t.test('kidOf reads the protected header', async (t) => {
  const header = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')
  t.equal(kidOf(`${header({ alg: 'RS256', kid: 'abc' })}.e30.sig`), 'abc')
  t.equal(kidOf(`${header({ alg: 'RS256' })}.e30.sig`), undefined)
  t.equal(kidOf(`${header({ kid: 7 })}.e30.sig`), undefined)
  t.equal(kidOf('not-json.e30.sig'), undefined)
  t.equal(kidOf('nodots'), undefined)
  t.equal(kidOf('.e30.sig'), undefined)
})
