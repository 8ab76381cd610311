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
  /** Counts one failure by `address`; returns the account's consecutive failures. */
  recordFailure(account: string, address: string, now: number, ttlMs: number): Promise<number>
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

  async recordFailure(account: string, address: string, now: number, ttlMs: number): Promise<number> {
    let entry = this.#accounts.get(account)
    if (!entry || entry.expiresAt <= Date.now()) {
      entry = { failures: 0, addresses: new Map(), expiresAt: 0 }
      this.#accounts.set(account, entry)
    }
    entry.failures += 1
    entry.addresses.set(address, now)
    entry.expiresAt = Date.now() + ttlMs
    if (this.#accounts.size > 100_000) this.#sweep()
    return entry.failures
  }

  async reset(account: string): Promise<void> {
    this.#accounts.delete(account)
  }

  #sweep(): void {
    const now = Date.now()
    for (const [key, entry] of this.#accounts) if (entry.expiresAt <= now) this.#accounts.delete(key)
  }
}

/** The Redis CooldownStore: one hash per account, `f` (failures) and `a:<address>` (ms). */
export class RedisCooldownStore implements CooldownStore {
  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
  ) {}

  private key(account: string): string {
    return `${this.prefix}cooldown:{${account}}`
  }

  async get(account: string, address: string): Promise<FailureRecord> {
    const [failures, at] = await this.redis.hmget(this.key(account), 'f', `a:${address}`)
    return { failures: Number(failures ?? 0), addressFailedAt: at == null ? null : Number(at) }
  }

  async recordFailure(account: string, address: string, now: number, ttlMs: number): Promise<number> {
    const key = this.key(account)
    const results = await this.redis
      .multi()
      .hincrby(key, 'f', 1)
      .hset(key, `a:${address}`, String(now))
      .pexpire(key, ttlMs)
      .exec()
    const [error, failures] = results?.[0] ?? [new Error('no reply'), 0]
    if (error) throw error
    return Number(failures)
  }

  async reset(account: string): Promise<void> {
    await this.redis.del(this.key(account))
  }
}
