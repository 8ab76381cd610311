import { type KeyObject, sign } from 'node:crypto'
import type { SigningAlg } from './key-ring.js'

/**
 * RFC 7515 compact serialisation, signed with node:crypto's asynchronous `sign` (OpenSSL on
 * libuv's pool). Access tokens are the one thing this service signs at volume; WebCrypto's
 * path (jose's SignJWT) costs about twice the main-thread time per signature for the same
 * OpenSSL call (see the README's benchmark section). Tokens are read by jose, fast-jwt and
 * express-oauth2-jwt-bearer in the tests, never by this code.
 */

const DIGEST: Record<SigningAlg, string | null> = { RS256: 'sha256', ES256: 'sha256', EdDSA: null }

const base64url = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')

/** The encoded protected header for each (alg, kid, typ): one per key, built once. */
const headers = new Map<string, string>()

function encodedHeader(alg: SigningAlg, kid: string, typ: string): string {
  const id = `${alg} ${kid} ${typ}`
  let header = headers.get(id)
  if (header === undefined) {
    if (headers.size > 64) headers.clear()
    header = base64url({ alg, kid, typ })
    headers.set(id, header)
  }
  return header
}

export interface JwsKey {
  alg: SigningAlg
  kid: string
  /** A node:crypto private key of the algorithm's type (RSA, P-256, Ed25519). */
  privateKey: KeyObject
}

/**
 * Signs `payload` as a compact JWS with `{ alg, kid, typ }`; ES256 signatures in JOSE's r||s form.
 * An RSA signature (about 250 µs) goes to libuv's pool; a P-256 or Ed25519 one (25–40 µs) costs
 * less on the event loop than dispatching it there, so it is made in place.
 */
export function signCompact(key: JwsKey, typ: string, payload: Record<string, unknown>): Promise<string> {
  const input = `${encodedHeader(key.alg, key.kid, typ)}.${base64url(payload)}`
  const options = { key: key.privateKey, dsaEncoding: 'ieee-p1363' } as const
  if (key.alg !== 'RS256') {
    try {
      return Promise.resolve(
        `${input}.${sign(DIGEST[key.alg], Buffer.from(input), options).toString('base64url')}`,
      )
    } catch (error) {
      return Promise.reject(error)
    }
  }
  return new Promise((resolve, reject) => {
    sign(DIGEST[key.alg], Buffer.from(input), options, (error, signature) => {
      if (error) reject(error)
      else resolve(`${input}.${signature.toString('base64url')}`)
    })
  })
}
