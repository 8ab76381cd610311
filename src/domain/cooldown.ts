import type { CooldownStore } from '../storage/cooldown-store.js'
import type { Clock } from './clock.js'
import { hashToken } from './crypto.js'

/**
 * The progressive cooldown policy (OWASP Authentication Cheat Sheet, "Account Lockout"; ASVS 5.0
 * V6.3; NIST SP 800-63B §5.2.2 throttling): after THRESHOLD consecutive failures, an address that
 * has failed on the account must wait a delay that doubles with each further failure, up to CAP.
 * Addresses that have not failed on the account are not delayed, so an attacker on one address
 * cannot lock the owner out of another, and password reset never consults it.
 */
export const COOLDOWN_THRESHOLD = 5
const BASE_DELAY_MS = 1000
const CAP_DELAY_MS = 15 * 60 * 1000
/** Failures are forgotten a day after the last one. */
const MEMORY_MS = 24 * 3600 * 1000
/** An address is forgotten once it can no longer be cooling down (a minute's margin for clocks). */
const ADDRESS_MEMORY_MS = CAP_DELAY_MS + 60_000

export interface CooldownVerdict {
  /** True when this address must wait before its next attempt on this account counts. */
  coolingDown: boolean
  failures: number
}

/** The delay an address waits after its last failure once the account has `failures`. */
export function cooldownDelayMs(failures: number): number {
  if (failures < COOLDOWN_THRESHOLD) return 0
  return Math.min(BASE_DELAY_MS * 2 ** (failures - COOLDOWN_THRESHOLD), CAP_DELAY_MS)
}

/**
 * Tracks failed sign-ins per account. Accounts are keyed by a hash of the normalised email, the
 * same for addresses with and without an account, so the cooldown reveals nothing.
 */
export class LoginCooldown {
  constructor(
    private readonly store: CooldownStore,
    private readonly clock: Clock,
  ) {}

  /** Whether `address` is cooling down on the account of `email`. */
  async check(email: string, address: string): Promise<CooldownVerdict> {
    const record = await this.store.get(accountKey(email), address)
    const delay = cooldownDelayMs(record.failures)
    const coolingDown =
      delay > 0 && record.addressFailedAt !== null && this.clock.now() < record.addressFailedAt + delay
    return { coolingDown, failures: record.failures }
  }

  /** Counts a failure; true when this failure crossed the threshold (tell the owner once). */
  async recordFailure(email: string, address: string): Promise<{ failures: number; crossed: boolean }> {
    const failures = await this.store.recordFailure(
      accountKey(email),
      address,
      this.clock.now(),
      MEMORY_MS,
      ADDRESS_MEMORY_MS,
    )
    return { failures, crossed: failures === COOLDOWN_THRESHOLD }
  }

  /** Forgets the account's failures. */
  async reset(email: string): Promise<void> {
    await this.store.reset(accountKey(email))
  }
}

function accountKey(email: string): string {
  return hashToken(`cooldown\0${email.trim().toLowerCase()}`)
}
