import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto'

/**
 * CSPRNG bytes drawn from a 4 KiB block that is refilled (never rewritten) when used up, as
 * node:crypto's randomUUID does: one call into OpenSSL per block instead of two per refresh
 * (they were 5% of a refresh's event loop). No byte is handed out twice.
 */
const RANDOM_BLOCK = 4096
let block = Buffer.alloc(0)
let used = 0

function randomSlice(bytes: number): Buffer {
  if (bytes > RANDOM_BLOCK) return randomBytes(bytes)
  if (used + bytes > block.length) {
    block = randomBytes(RANDOM_BLOCK)
    used = 0
  }
  const slice = block.subarray(used, used + bytes)
  used += bytes
  return slice
}

/** A random, URL-safe secret of `bytes` bytes of entropy (default 32: 256 bits). */
export function randomToken(bytes = 32): string {
  return randomSlice(bytes).toString('base64url')
}

/** SHA-256 of a secret, base64url: how opaque tokens are stored and looked up. */
export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('base64url')
}

const SEAL_VERSION = 'v1'

/**
 * Encrypts `plaintext` with AES-256-GCM under a 32-byte key; `context` is bound as additional
 * data so a value sealed for one purpose cannot be unsealed for another.
 * Output: `v1.<iv>.<tag>.<ciphertext>` (base64url parts).
 */
export function seal(key: Buffer, plaintext: string, context: string): string {
  const iv = randomSlice(12)
  const cipher = createCipheriv('aes-256-gcm', key, iv)
  cipher.setAAD(Buffer.from(context))
  const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()])
  return [SEAL_VERSION, iv, cipher.getAuthTag(), ciphertext]
    .map((part) => (typeof part === 'string' ? part : part.toString('base64url')))
    .join('.')
}

/** Reverses `seal`; throws when the key, context or value is wrong or tampered with. */
export function unseal(key: Buffer, sealed: string, context: string): string {
  const [version, iv, tag, ciphertext] = sealed.split('.')
  if (version !== SEAL_VERSION || !iv || !tag || ciphertext === undefined)
    throw new Error('malformed sealed value')
  const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'))
  decipher.setAAD(Buffer.from(context))
  decipher.setAuthTag(Buffer.from(tag, 'base64url'))
  return Buffer.concat([decipher.update(Buffer.from(ciphertext, 'base64url')), decipher.final()]).toString(
    'utf8',
  )
}

/** A 32-byte key derived from a secret token, for sealing values only that token's holder may read. */
export function keyFromToken(token: string, purpose: string): Buffer {
  return createHash('sha256').update(purpose).update('\0').update(token).digest()
}
