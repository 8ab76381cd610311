import { randomBytes } from 'node:crypto'
import argon2 from 'argon2'
import { ProblemError } from '../errors.js'
import { normalizePassword } from './password-policy.js'

/**
 * argon2id hashing behind a bounded semaphore. argon2 runs on libuv's thread pool (4 threads by
 * default), which token signing, pbkdf2, scrypt, DNS lookups and file I/O share; letting every
 * login hash at once would starve them and turn a login burst into a whole-service stall. So at
 * most `concurrency` hashes run and the rest wait their turn in arrival order, each for at most
 * `maxWaitMs`, at most `maxQueue` of them at once. A hash that cannot wait (the queue is full)
 * or whose wait runs out is refused with a 503 that tells the client to retry shortly.
 *
 * Waiting rather than refusing at once is what keeps a flood from costing the rest of the
 * service: a client that sends its next login as soon as it has an answer sends one per
 * `maxWaitMs` while its login waits, instead of as many as the event loop can refuse. A burst
 * of genuine logins that takes a few seconds of hashing is served rather than partly refused.
 */

/** Cost parameters (from ARGON2_* and PASSWORD_PEPPER) and the semaphore's limits. */
export interface PasswordHasherOptions {
  /** argon2 `m`, in KiB (OWASP minimum for argon2id: 19456). */
  memoryKib: number
  /** argon2 `t`, passes over memory. */
  timeCost: number
  /** Server-side secret mixed in as argon2's `secret`, so a leaked database alone cannot be cracked. */
  pepper?: Buffer | string
  /** Hashes allowed to run at once (default 2). */
  concurrency?: number
  /** Hashes allowed to wait for a slot at once; beyond that callers are refused (default 1024). */
  maxQueue?: number
  /** How long a hash may wait for a slot before it is refused, ms (default 2000). */
  maxWaitMs?: number
}

/** Outcome of `verify`; `needsRehash` is only ever true when `ok` is. */
export interface VerifyResult {
  ok: boolean
  /** The password matched but the stored hash uses other parameters: store a fresh hash. */
  needsRehash: boolean
}

// Parallelism 1: each hash occupies a single libuv thread, so `concurrency` counts threads.
const PARALLELISM = 1

/** Hashes and verifies passwords with argon2id, never occupying more than `concurrency` pool threads. */
export class PasswordHasher {
  readonly #memoryKib: number
  readonly #timeCost: number
  readonly #secret: Buffer | undefined
  readonly #semaphore: Semaphore
  #dummyHash: Promise<string> | undefined

  constructor(options: PasswordHasherOptions) {
    this.#memoryKib = options.memoryKib
    this.#timeCost = options.timeCost
    const pepper = options.pepper
    this.#secret =
      pepper === undefined || pepper.length === 0
        ? undefined
        : Buffer.isBuffer(pepper)
          ? Buffer.from(pepper)
          : Buffer.from(pepper, 'utf8')
    this.#semaphore = new Semaphore(
      options.concurrency ?? 2,
      options.maxQueue ?? 1024,
      options.maxWaitMs ?? 2000,
    )
  }

  /** Hashes waiting for a slot: a gauge for metrics and load shedding. */
  get queueDepth(): number {
    return this.#semaphore.waiting
  }

  /**
   * Throws the queue-full 503 now, before any other work, when a hash could not even wait for a
   * slot: a login flood is shed at the door instead of costing a database round trip first.
   */
  assertCapacity(): void {
    if (this.#semaphore.full) throw overloaded()
  }

  /** Hashes running now (never more than `concurrency`). */
  get inFlight(): number {
    return this.#semaphore.active
  }

  /** PHC string of the NFKC form of `password`; throws service_unavailable when the queue is full. */
  hash(password: string): Promise<string> {
    return this.#semaphore.run(() =>
      argon2.hash(normalizePassword(password), {
        type: argon2.argon2id,
        memoryCost: this.#memoryKib,
        timeCost: this.#timeCost,
        parallelism: PARALLELISM,
        ...(this.#secret ? { secret: this.#secret } : {}),
      }),
    )
  }

  /** Checks `password` against a stored PHC string and says whether that hash should be upgraded. */
  async verify(hash: string, password: string): Promise<VerifyResult> {
    const ok = await this.#semaphore.run(() =>
      argon2.verify(hash, normalizePassword(password), this.#secret ? { secret: this.#secret } : {}),
    )
    return { ok, needsRehash: ok && this.#needsRehash(hash) }
  }

  /** Spends a real verification's work and fails, so an unknown email costs as long as a wrong password. */
  async verifyDummy(password: string): Promise<void> {
    const dummy = await this.#dummy()
    await this.#semaphore.run(() =>
      argon2.verify(dummy, normalizePassword(password), this.#secret ? { secret: this.#secret } : {}),
    )
  }

  #needsRehash(hash: string): boolean {
    if (!hash.startsWith('$argon2id$')) return true
    return argon2.needsRehash(hash, {
      memoryCost: this.#memoryKib,
      timeCost: this.#timeCost,
      parallelism: PARALLELISM,
    })
  }

  // Made with the current parameters so its verification costs exactly what a real one does.
  #dummy(): Promise<string> {
    if (!this.#dummyHash) {
      const made = this.hash(randomBytes(32).toString('base64url'))
      this.#dummyHash = made
      // A refused or failed attempt must not be remembered: the next caller tries again.
      made.catch(() => {
        if (this.#dummyHash === made) this.#dummyHash = undefined
      })
    }
    return this.#dummyHash
  }
}

/** The load-shedding answer: expected under a flood, so it is not logged as an error. */
function overloaded(): ProblemError {
  return new ProblemError('service_unavailable', {
    headers: { 'retry-after': '1' },
    detail: 'Too many sign-ins are being checked; retry shortly',
  })
}

interface Waiter {
  /** Hands the slot over: `active` stays counted for the waiter. */
  grant: () => void
  /** Refuses the waiter once its wait runs out. */
  timer: NodeJS.Timeout
}

class Semaphore {
  active = 0
  /** Waiters in arrival order (a Set keeps insertion order and drops a timed-out one in O(1)). */
  readonly #queue = new Set<Waiter>()
  readonly #limit: number
  readonly #maxQueue: number
  readonly #maxWaitMs: number

  constructor(limit: number, maxQueue: number, maxWaitMs: number) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError('concurrency must be a positive integer')
    if (!Number.isInteger(maxQueue) || maxQueue < 0)
      throw new RangeError('maxQueue must be a non-negative integer')
    if (!Number.isFinite(maxWaitMs) || maxWaitMs <= 0) throw new RangeError('maxWaitMs must be positive')
    this.#limit = limit
    this.#maxQueue = maxQueue
    this.#maxWaitMs = maxWaitMs
  }

  get waiting(): number {
    return this.#queue.size
  }

  /** Every slot is taken and the queue is at its cap. */
  get full(): boolean {
    return this.active >= this.#limit && this.#queue.size >= this.#maxQueue
  }

  async run<T>(task: () => Promise<T>): Promise<T> {
    await this.#acquire()
    try {
      return await task()
    } finally {
      this.#release()
    }
  }

  #acquire(): Promise<void> {
    if (this.active < this.#limit) {
      this.active++
      return Promise.resolve()
    }
    if (this.#queue.size >= this.#maxQueue) {
      return Promise.reject(overloaded())
    }
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        grant: resolve,
        timer: setTimeout(() => {
          this.#queue.delete(waiter)
          reject(overloaded())
        }, this.#maxWaitMs),
      }
      this.#queue.add(waiter)
    })
  }

  #release(): void {
    for (const next of this.#queue) {
      this.#queue.delete(next)
      clearTimeout(next.timer)
      next.grant()
      return
    }
    this.active--
  }
}
