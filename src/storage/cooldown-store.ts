import type { RedisClient } from './redis-client.js'

/** What the store knows of one account's recent failed sign-ins. */
export interface FailureRecord {
  /** Consecutive failures of the account, from any address, since its last success. */
  failures: number
  /** When `address` last failed on this account (ms), or null if it never did. */
  addressFailedAt: number | null
}

/**
 * Failed sign-ins per account (and per address within the account), shared by every instance
 * through Redis, or in-process for the embedded default. Keys are opaque account keys (a hash
 * of the normalised email), never the email itself.
 */
export interface CooldownStore {
  get(account: string, address: string): Promise<FailureRecord>
  /**
   * Counts one failure by `address`; returns the account's consecutive failures. The count is
   * kept `ttlMs` after the last failure, the address's failure time `addressTtlMs`.
   */
  recordFailure(
    account: string,
    address: string,
    now: number,
    ttlMs: number,
    addressTtlMs: number,
  ): Promise<number>
  /** Forgets the account's failures (a successful sign-in or a password reset). */
  reset(account: string): Promise<void>
}

/** The in-process CooldownStore. */
export class MemoryCooldownStore implements CooldownStore {
  readonly #accounts = new Map<
    string,
    { failures: number; addresses: Map<string, number>; expiresAt: number }
  >()

  async get(account: string, address: string): Promise<FailureRecord> {
    const entry = this.#accounts.get(account)
    if (!entry || entry.expiresAt <= Date.now()) return { failures: 0, addressFailedAt: null }
    return { failures: entry.failures, addressFailedAt: entry.addresses.get(address) ?? null }
  }

  async recordFailure(
    account: string,
    address: string,
    now: number,
    ttlMs: number,
    addressTtlMs: number,
  ): Promise<number> {
    let entry = this.#accounts.get(account)
    if (!entry || entry.expiresAt <= Date.now()) {
      entry = { failures: 0, addresses: new Map(), expiresAt: 0 }
      this.#accounts.set(account, entry)
    }
    entry.failures += 1
    // Oldest first: re-inserted at the end, and the front dropped once past addressTtlMs.
    entry.addresses.delete(address)
    entry.addresses.set(address, now)
    for (const [known, at] of entry.addresses) {
      if (at > now - addressTtlMs) break
      entry.addresses.delete(known)
    }
    entry.expiresAt = Date.now() + ttlMs
    if (this.#accounts.size > 100_000) this.#sweep()
    return entry.failures
  }

  /** How many addresses the account's entry remembers (for tests). */
  addressCount(account: string): number {
    return this.#accounts.get(account)?.addresses.size ?? 0
  }

  async reset(account: string): Promise<void> {
    this.#accounts.delete(account)
  }

  #sweep(): void {
    const now = Date.now()
    for (const [key, entry] of this.#accounts) if (entry.expiresAt <= now) this.#accounts.delete(key)
  }
}

/**
 * The Redis CooldownStore. Per account, `cooldown:{<account>}:f` counts its failures and each
 * failing address has its own `cooldown:{<account>}:a:<address>` (when it last failed, ms), so
 * an address is forgotten on its own once it can no longer be cooling down: a long attack from
 * many addresses leaves the keys of the last minutes, not one per address it ever used. The
 * account's hash tag keeps its keys in one Cluster slot.
 */
export class RedisCooldownStore implements CooldownStore {
  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
  ) {}

  private base(account: string): string {
    return `${this.prefix}cooldown:{${account}}`
  }

  async get(account: string, address: string): Promise<FailureRecord> {
    const base = this.base(account)
    const [failures, at] = await this.redis.mget(`${base}:f`, `${base}:a:${address}`)
    return { failures: Number(failures ?? 0), addressFailedAt: at == null ? null : Number(at) }
  }

  async recordFailure(
    account: string,
    address: string,
    now: number,
    ttlMs: number,
    addressTtlMs: number,
  ): Promise<number> {
    const base = this.base(account)
    const results = await this.redis
      .multi()
      .incr(`${base}:f`)
      .pexpire(`${base}:f`, ttlMs)
      .set(`${base}:a:${address}`, String(now), 'PX', addressTtlMs)
      .exec()
    const [error, failures] = results?.[0] ?? [new Error('no reply'), 0]
    if (error) throw error
    return Number(failures)
  }

  async reset(account: string): Promise<void> {
    // The addresses' keys may stay until they expire: with no failures counted, none cools down.
    // The bare key is the hash an earlier release kept per account.
    const base = this.base(account)
    await this.redis.del(`${base}:f`, base)
  }
}
