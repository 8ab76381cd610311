import { generateKeyPairSync } from 'node:crypto'
import { createLocalJWKSet, decodeProtectedHeader, exportJWK, type JWK, jwtVerify } from 'jose'
import t from 'tap'
import { signCompact } from '../../src/domain/jws.js'
import type { SigningAlg } from '../../src/domain/key-ring.js'

const pairs = {
  RS256: () => generateKeyPairSync('rsa', { modulusLength: 2048 }),
  ES256: () => generateKeyPairSync('ec', { namedCurve: 'P-256' }),
  EdDSA: () => generateKeyPairSync('ed25519'),
} satisfies Record<SigningAlg, () => unknown>

for (const alg of ['RS256', 'ES256', 'EdDSA'] as const) {
  t.test(`${alg}: jose verifies the compact JWS from the public JWK, and refuses it altered`, async (t) => {
    const { privateKey, publicKey } = pairs[alg]()
    const kid = `k-${alg}`
    const jwks = createLocalJWKSet({ keys: [{ ...(await exportJWK(publicKey)), kid, alg } as JWK] })
    const payload = { sub: 'u1', iat: 1_700_000_000, roles: ['user'], note: 'é ✓' }
    const token = await signCompact({ alg, kid, privateKey }, 'at+jwt', payload)

    t.same(decodeProtectedHeader(token), { alg, kid, typ: 'at+jwt' })
    const verified = await jwtVerify(token, jwks, { algorithms: [alg], typ: 'at+jwt' })
    t.same(verified.payload, payload, 'the payload round-trips, Unicode included')

    const [header, body, signature] = token.split('.') as [string, string, string]
    const altered = Buffer.from(JSON.stringify({ ...payload, roles: ['admin'] })).toString('base64url')
    await t.rejects(jwtVerify(`${header}.${altered}.${signature}`, jwks), 'an altered payload is refused')
    const flipped = `${signature.slice(0, 10)}${signature[10] === 'A' ? 'B' : 'A'}${signature.slice(11)}`
    await t.rejects(jwtVerify(`${header}.${body}.${flipped}`, jwks), 'an altered signature is refused')
  })
}

t.test('a key of the wrong type is an error, not a token', async (t) => {
  const { privateKey } = pairs.EdDSA()
  await t.rejects(signCompact({ alg: 'ES256', kid: 'x', privateKey }, 'at+jwt', { sub: 'u1' }))
})
