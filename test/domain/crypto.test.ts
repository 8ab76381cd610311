import { randomBytes } from 'node:crypto'
import t from 'tap'
import { hashToken, randomToken, seal, unseal } from '../../src/domain/crypto.js'

t.test('random tokens: 256 bits, URL-safe, never repeated across many refills of the block', async (t) => {
  const seen = new Set<string>()
  for (let i = 0; i < 20_000; i++) seen.add(randomToken())
  t.equal(seen.size, 20_000, 'no token twice (20,000 tokens span about 150 blocks)')
  for (const token of [...seen].slice(0, 100)) t.match(token, /^[A-Za-z0-9_-]{43}$/)
  t.match(randomToken(16), /^[A-Za-z0-9_-]{22}$/, 'other sizes')
  t.equal(Buffer.from(randomToken(5000), 'base64url').length, 5000, 'larger than a block')
})

t.test(
  'seal: AES-256-GCM round trip, a fresh IV every time, tampering and the wrong context refused',
  async (t) => {
    const key = randomBytes(32)
    const ivs = new Set<string>()
    for (let i = 0; i < 5_000; i++) {
      const sealed = seal(key, `secret ${i}`, 'purpose')
      ivs.add(sealed.split('.')[1]!)
      if (i < 50) t.equal(unseal(key, sealed, 'purpose'), `secret ${i}`)
    }
    t.equal(ivs.size, 5_000, 'no IV twice under one key')
    const sealed = seal(key, 'refresh successor', 'purpose')
    t.throws(() => unseal(key, sealed, 'another purpose'), 'another context')
    t.throws(() => unseal(randomBytes(32), sealed, 'purpose'), 'another key')
    const [version, iv, tag, body] = sealed.split('.') as [string, string, string, string]
    const flipped = `${body.slice(0, -2)}${body.at(-2) === 'A' ? 'B' : 'A'}${body.at(-1)}`
    t.throws(() => unseal(key, [version, iv, tag, flipped].join('.'), 'purpose'), 'altered ciphertext')
    t.equal(hashToken('x'), hashToken('x'))
    t.not(hashToken('x'), hashToken('y'))
  },
)
