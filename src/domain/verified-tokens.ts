/**
 * Access tokens that passed the full check (signature, algorithm, issuer, audience, typ, times,
 * claims), remembered by their exact text until they expire. A client presents the same token
 * on every request for its whole lifetime; with this, the signature is checked once per token,
 * and a repeat costs a Map lookup instead of a decode, a hash and a verifier call.
 *
 * What a hit still requires: the token's exact characters (so the same signature), an `exp`
 * not passed (with the same tolerance as the full check), and the key that signed it still
 * verifying (`keyUsable`: a key taken out of the ring stops its cached tokens at once).
 * Refusals are never remembered. Whatever else the caller checks per request (the session's
 * revocation) it still checks.
 */
export interface VerifiedToken<Claims> {
  readonly kid: string
  readonly claims: Claims
}

export class VerifiedTokenCache<Claims extends { readonly exp: number }> {
  readonly #entries = new Map<string, VerifiedToken<Claims>>()

  constructor(
    private readonly options: {
      /** Most tokens kept; the oldest is dropped to make room. */
      maxEntries: number
      /** Seconds an `exp` may lie in the past, as the full check allows. */
      clockToleranceSeconds: number
      /** Whether the key `kid` still verifies (retired and unknown keys do not). */
      keyUsable: (kid: string) => boolean
      now?: () => number
    },
  ) {}

  /** The claims of `token` if it was verified and still holds; else undefined (check it fully). */
  get(token: string): Claims | undefined {
    const entry = this.#entries.get(token)
    if (entry === undefined) return undefined
    const now = (this.options.now ?? Date.now)()
    if (
      now >= (entry.claims.exp + this.options.clockToleranceSeconds) * 1000 ||
      !this.options.keyUsable(entry.kid)
    ) {
      this.#entries.delete(token)
      return undefined
    }
    return entry.claims
  }

  /** Remembers a token that has just passed the full check. Its claims are frozen: requests share them. */
  set(token: string, kid: string, claims: Claims): Claims {
    if (this.#entries.size >= this.options.maxEntries && !this.#entries.has(token)) {
      const oldest = this.#entries.keys().next()
      if (!oldest.done) this.#entries.delete(oldest.value)
    }
    const frozen = deepFreeze(claims)
    this.#entries.set(token, { kid, claims: frozen })
    return frozen
  }

  get size(): number {
    return this.#entries.size
  }
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const inner of Object.values(value)) deepFreeze(inner)
  }
  return value
}

/** The `kid` of a compact JWS's protected header, or undefined if it has none or cannot be read. */
export function kidOf(token: string): string | undefined {
  const end = token.indexOf('.')
  if (end <= 0) return undefined
  try {
    const header = JSON.parse(Buffer.from(token.slice(0, end), 'base64url').toString('utf8')) as {
      kid?: unknown
    }
    return typeof header.kid === 'string' ? header.kid : undefined
  } catch {
    return undefined
  }
}
