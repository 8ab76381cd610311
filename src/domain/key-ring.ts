import { createPrivateKey, createPublicKey, generateKeyPair, type KeyObject } from 'node:crypto'
import { promisify } from 'node:util'
import { calculateJwkThumbprint, exportJWK, type JWK } from 'jose'
import type {
  NewSigningKeyRow,
  SigningKeyRepository,
  SigningKeyRow,
} from '../storage/signing-key-repository.js'
import type { Clock } from './clock.js'
import { seal, unseal } from './crypto.js'

export type SigningAlg = 'RS256' | 'ES256' | 'EdDSA'

/** Where a key stands at a given time (see `keyState`). */
export type KeyState = 'next' | 'signing' | 'retiring' | 'retired'

export interface KeyTimes {
  kid: string
  activatesAt: number
}

/**
 * The time-based rotation rule, identical on every instance: with keys sorted by activation,
 * a key is `next` before its activation, `signing` from then until the next key activates,
 * `retiring` (still published, still verifying) for `accessTokenTtlMs` after that, then `retired`.
 */
export function keyState(
  keys: readonly KeyTimes[],
  index: number,
  now: number,
  accessTokenTtlMs: number,
): KeyState {
  const key = keys[index]!
  if (key.activatesAt > now) return 'next'
  const successor = keys.slice(index + 1).find((other) => other.activatesAt > key.activatesAt)
  if (!successor || successor.activatesAt > now) return 'signing'
  return now < successor.activatesAt + accessTokenTtlMs ? 'retiring' : 'retired'
}

interface LoadedKey {
  kid: string
  alg: SigningAlg
  createdAt: number
  activatesAt: number
  publicJwk: JWK
  publicKey: KeyObject
  /** PEM of the public key, the form @fastify/jwt (fast-jwt) takes. */
  publicPem: string
  /** The private half for node:crypto's sign (domain/jws.ts); imported once per key, never per token. */
  privateKey: KeyObject
}

export interface KeyRingOptions {
  repository: SigningKeyRepository
  /** KEY_ENCRYPTION_KEY: seals private halves at rest (AES-256-GCM). */
  encryptionKey: Buffer
  alg: SigningAlg
  clock: Clock
  /** JWKS_MAX_AGE: clients may cache the JWKS this long, so a new key waits this long to sign. */
  jwksMaxAgeSeconds: number
  accessTokenTtlSeconds: number
  /** KEY_ROTATION_INTERVAL; 0 disables timed rotation. */
  rotationIntervalSeconds: number
}

const SEAL_CONTEXT = 'latchkey signing key'

/**
 * The signing key ring: one view signs (`signingKey`, for domain/jws.ts), the other verifies (the
 * public PEM for @fastify/jwt, chosen by `kid`). Keys live in the database; every instance
 * re-reads the table on `refresh()` (called on a timer) and reaches the same state from the
 * activation times alone.
 */
export class KeyRing {
  private keys: LoadedKey[] = []
  private readonly options: KeyRingOptions

  constructor(options: KeyRingOptions) {
    this.options = options
  }

  /** Creates the first key when the table has none (once, across instances), then loads. */
  async initialise(): Promise<void> {
    await this.options.repository.insertUnderLock(async (live) =>
      live.length > 0 ? null : this.newKeyRow(this.options.alg, this.options.clock.now()),
    )
    await this.refresh()
  }

  /** Re-reads the key table, performs a timed rotation when one is due, marks keys retired. */
  async refresh(): Promise<void> {
    const { repository, clock, rotationIntervalSeconds } = this.options
    if (rotationIntervalSeconds > 0) {
      await repository.insertUnderLock(async (live) => {
        const newest = live.at(-1)
        const now = clock.now()
        if (newest && now - newest.createdAt.getTime() < rotationIntervalSeconds * 1000) return null
        return this.newKeyRow(this.options.alg, now + this.jwksMaxAgeMs)
      })
    }
    await this.load(await repository.listLive())
    const now = clock.now()
    const retired = this.states(now)
      .filter((entry) => entry.state === 'retired')
      .map((entry) => entry.kid)
    if (retired.length > 0) {
      await repository.markRetired(retired, new Date(now))
      this.keys = this.keys.filter((key) => !retired.includes(key.kid))
    }
  }

  /** Adds a freshly generated key that starts signing after JWKS_MAX_AGE; returns its kid. */
  async rotate(): Promise<{ kid: string; activatesAt: Date }> {
    const now = this.options.clock.now()
    const row = await this.newKeyRow(this.options.alg, now + this.jwksMaxAgeMs)
    await this.options.repository.insert(row)
    await this.refresh()
    return { kid: row.kid, activatesAt: row.activatesAt }
  }

  /** Introduces an operator's private key (PEM PKCS#8 or private JWK) as the next key. */
  async import(material: string): Promise<{ kid: string; alg: SigningAlg; activatesAt: Date }> {
    const { privateKey, alg } = parsePrivateKey(material)
    const now = this.options.clock.now()
    const row = await this.rowFor(privateKey, alg, now + this.jwksMaxAgeMs)
    if (this.keys.some((key) => key.kid === row.kid)) throw new Error(`key ${row.kid} is already in the ring`)
    await this.options.repository.insert(row)
    await this.refresh()
    return { kid: row.kid, alg, activatesAt: row.activatesAt }
  }

  /** The key that signs now: the newest whose activation time has passed. */
  signingKey(): { kid: string; alg: SigningAlg; privateKey: KeyObject } {
    const now = this.options.clock.now()
    const current = this.states(now).find((entry) => entry.state === 'signing')
    if (!current) throw new Error('no signing key is active')
    return { kid: current.kid, alg: current.key.alg, privateKey: current.key.privateKey }
  }

  /** The public key for `kid` if tokens signed by it may be accepted now, else undefined. */
  verificationKey(kid: string): { alg: SigningAlg; publicPem: string; publicKey: KeyObject } | undefined {
    const now = this.options.clock.now()
    const entry = this.states(now).find((item) => item.kid === kid)
    if (!entry || entry.state === 'retired' || entry.state === 'next') return undefined
    return entry.key
  }

  /** The RFC 7517 key set: the next key, the signing key and the retiring ones. */
  jwks(): { keys: JWK[] } {
    const now = this.options.clock.now()
    return {
      keys: this.states(now)
        .filter((entry) => entry.state !== 'retired')
        .reverse()
        .map((entry) => entry.key.publicJwk),
    }
  }

  /** Seconds since the key that signs now started signing (for the metrics); undefined without one. */
  signingKeyAgeSeconds(): number | undefined {
    const now = this.options.clock.now()
    const signing = this.states(now).find((entry) => entry.state === 'signing')
    return signing ? Math.max(0, (now - signing.key.activatesAt) / 1000) : undefined
  }

  /** Every key in the table with its state, for `latchkey keys list`. */
  async list(): Promise<{ kid: string; alg: string; createdAt: Date; activatesAt: Date; state: KeyState }[]> {
    const rows = await this.options.repository.listAll()
    const now = this.options.clock.now()
    const times = rows.map((row) => ({ kid: row.kid, activatesAt: row.activatesAt.getTime() }))
    return rows.map((row, index) => ({
      kid: row.kid,
      alg: row.alg,
      createdAt: row.createdAt,
      activatesAt: row.activatesAt,
      state: row.retiredAt
        ? 'retired'
        : keyState(times, index, now, this.options.accessTokenTtlSeconds * 1000),
    }))
  }

  private get jwksMaxAgeMs(): number {
    return this.options.jwksMaxAgeSeconds * 1000
  }

  private states(now: number): { kid: string; key: LoadedKey; state: KeyState }[] {
    const ttl = this.options.accessTokenTtlSeconds * 1000
    return this.keys.map((key, index) => ({ kid: key.kid, key, state: keyState(this.keys, index, now, ttl) }))
  }

  private async load(rows: SigningKeyRow[]): Promise<void> {
    const known = new Map(this.keys.map((key) => [key.kid, key]))
    const loaded: LoadedKey[] = []
    for (const row of rows) {
      const existing = known.get(row.kid)
      if (existing) {
        loaded.push(existing)
        continue
      }
      const publicJwk = row.publicJwk as JWK
      const publicKey = createPublicKey({ key: publicJwk as never, format: 'jwk' })
      const privateJwk = JSON.parse(
        unseal(this.options.encryptionKey, row.privateJwkSealed, `${SEAL_CONTEXT} ${row.kid}`),
      ) as JWK
      loaded.push({
        kid: row.kid,
        alg: row.alg as SigningAlg,
        createdAt: row.createdAt.getTime(),
        activatesAt: row.activatesAt.getTime(),
        publicJwk,
        publicKey,
        publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
        privateKey: createPrivateKey({ key: privateJwk as never, format: 'jwk' }),
      })
    }
    this.keys = loaded
  }

  private async newKeyRow(alg: SigningAlg, activatesAt: number): Promise<NewSigningKeyRow> {
    return this.rowFor(await generatePrivateKey(alg), alg, activatesAt)
  }

  private async rowFor(
    privateKey: KeyObject,
    alg: SigningAlg,
    activatesAt: number,
  ): Promise<NewSigningKeyRow> {
    const privateJwk = await exportJWK(privateKey)
    const { kty, n, e, crv, x, y } = privateJwk
    const bare = Object.fromEntries(
      Object.entries({ kty, n, e, crv, x, y }).filter(([, v]) => v !== undefined),
    )
    const kid = await calculateJwkThumbprint(bare as JWK)
    const publicJwk: JWK = { ...bare, kid, alg, use: 'sig' }
    return {
      kid,
      alg,
      publicJwk,
      privateJwkSealed: seal(
        this.options.encryptionKey,
        JSON.stringify(privateJwk),
        `${SEAL_CONTEXT} ${kid}`,
      ),
      createdAt: new Date(this.options.clock.now()),
      activatesAt: new Date(activatesAt),
    }
  }
}

const generateKeyPairAsync = promisify(generateKeyPair)

/** A new private key for `alg` (RSA 2048, P-256 or Ed25519). */
async function generatePrivateKey(alg: SigningAlg): Promise<KeyObject> {
  if (alg === 'RS256') return (await generateKeyPairAsync('rsa', { modulusLength: 2048 })).privateKey
  if (alg === 'ES256') return (await generateKeyPairAsync('ec', { namedCurve: 'P-256' })).privateKey
  return (await generateKeyPairAsync('ed25519')).privateKey
}

/** Reads a PEM (PKCS#8) or JWK private key and infers the JWS algorithm it signs with. */
function parsePrivateKey(material: string): { privateKey: KeyObject; alg: SigningAlg } {
  const text = material.trim()
  let privateKey: KeyObject
  if (text.startsWith('{')) {
    let jwk: JWK
    try {
      jwk = JSON.parse(text) as JWK
    } catch {
      throw new Error('the key is neither PEM nor JSON (JWK)')
    }
    if (!jwk.d) throw new Error('the JWK is not a private key (no "d")')
    privateKey = createPrivateKey({ key: jwk as never, format: 'jwk' })
  } else if (text.includes('-----BEGIN')) {
    try {
      privateKey = createPrivateKey({ key: text, format: 'pem' })
    } catch {
      throw new Error('the PEM is not a readable private key')
    }
  } else {
    throw new Error('the key is neither PEM nor JSON (JWK)')
  }
  const type = privateKey.asymmetricKeyType
  const details = privateKey.asymmetricKeyDetails
  if (type === 'rsa') {
    if ((details?.modulusLength ?? 0) < 2048) throw new Error('RSA keys must have at least 2048 bits')
    return { privateKey, alg: 'RS256' }
  }
  if (type === 'ec' && details?.namedCurve === 'prime256v1') return { privateKey, alg: 'ES256' }
  if (type === 'ed25519') return { privateKey, alg: 'EdDSA' }
  throw new Error(`unsupported key type ${type}${details?.namedCurve ? ` (${details.namedCurve})` : ''}`)
}
