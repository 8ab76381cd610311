import { ProblemError } from '../errors.js'
import * as templates from '../mail/templates.js'
import type { EmailTokenRepository } from '../storage/email-token-repository.js'
import type { UserRepository, UserRow } from '../storage/user-repository.js'
import type { AuditLog, RequestContext } from './audit.js'
import type { Clock } from './clock.js'
import { hashToken, randomToken } from './crypto.js'
import type { Outbox } from './outbox.js'
import type { PasswordHasher } from './password-hasher.js'
import { checkPassword } from './password-policy.js'
import { grantScope } from './scopes.js'
import type { SessionService, TokenResponse } from './sessions.js'

export interface AccountSettings {
  appUrl: string
  emailVerification: 'required' | 'optional'
  /** Seconds. */
  verifyTokenTtl: number
}

export interface AccountServiceDeps {
  users: UserRepository
  emailTokens: EmailTokenRepository
  hasher: PasswordHasher
  sessions: SessionService
  audit: AuditLog
  outbox: Outbox
  clock: Clock
  settings: AccountSettings
}

export interface LoginInput {
  email: string
  password: string
  remember?: boolean | undefined
  scope?: string | undefined
  context: RequestContext
}

/** Normalises an email for storage and comparison: trimmed; case is kept but never compared. */
export function normalizeEmail(email: string): string {
  return email.trim().normalize('NFC')
}

/** Refuses a password that fails the policy with 422 weak_password and the reasons. */
export function assertPasswordAcceptable(password: string, email: string): void {
  const reasons = checkPassword(password, email)
  if (reasons.length > 0) {
    throw new ProblemError('weak_password', {
      detail: 'The password does not meet the policy',
      errors: reasons,
    })
  }
}

/**
 * Sign-up, email verification and password sign-in. Answers never reveal whether an address
 * has an account: sign-up and resend answer the same, and unknown emails cost a dummy hash.
 */
export class AccountService {
  constructor(private readonly deps: AccountServiceDeps) {}

  /** Creates an unverified account and mails a verification link; a taken address gets a notice. */
  async signup(rawEmail: string, password: string, context: RequestContext): Promise<void> {
    const email = normalizeEmail(rawEmail)
    assertPasswordAcceptable(password, email)
    const { users, hasher, outbox, audit, settings } = this.deps
    // Hash before looking: both paths spend the same work, so timing does not tell them apart.
    const passwordHash = await hasher.hash(password)
    const user = await users.insert({ email, passwordHash })
    if (!user) {
      // The owner of the address, as stored, hears that someone tried to sign up with it.
      const owner = await users.findByEmail(email)
      outbox.send({ to: owner?.email ?? email, ...templates.accountExists({ appUrl: settings.appUrl }) })
      return
    }
    await this.sendVerification(user)
    await audit.record({
      type: 'user.signed_up',
      outcome: 'success',
      actorId: user.id,
      userId: user.id,
      context,
      details: { method: 'password' },
    })
  }

  /** Spends a verification token and marks the address verified. */
  async verifyEmail(token: string, context: RequestContext): Promise<void> {
    const { emailTokens, users, audit, clock } = this.deps
    const now = new Date(clock.now())
    const userId = await emailTokens.consume('verify_email', hashToken(token), now)
    if (!userId) throw new ProblemError('invalid_token', { detail: 'The link is invalid, used or expired' })
    const user = await users.findById(userId)
    if (!user) throw new ProblemError('invalid_token', { detail: 'The link is invalid, used or expired' })
    if (!user.emailVerifiedAt) await users.update(user.id, { emailVerifiedAt: now })
    await audit.record({
      type: 'user.email_verified',
      outcome: 'success',
      actorId: user.id,
      userId: user.id,
      context,
    })
  }

  /** Whether a verification token is unused and unexpired, without spending it (hosted page). */
  async isVerificationTokenUsable(token: string): Promise<boolean> {
    const now = new Date(this.deps.clock.now())
    return (await this.deps.emailTokens.peek('verify_email', hashToken(token), now)) !== undefined
  }

  /** Mails a new verification link when the address has an unverified account; silent otherwise. */
  async resendVerification(rawEmail: string): Promise<void> {
    const user = await this.deps.users.findByEmail(normalizeEmail(rawEmail))
    if (user && !user.emailVerifiedAt && !user.disabledAt) await this.sendVerification(user)
  }

  /** Password sign-in; answers a token response or a problem (identical for unknown and wrong). */
  async login(input: LoginInput): Promise<TokenResponse> {
    const { users, hasher, audit, settings } = this.deps
    const user = await users.findByEmail(normalizeEmail(input.email))
    if (!user?.passwordHash) {
      await hasher.verifyDummy(input.password)
      await audit.record({
        type: 'auth.login_failed',
        outcome: 'failure',
        userId: user?.id ?? null,
        context: input.context,
        details: { reason: user ? 'no_password' : 'unknown_email' },
      })
      throw new ProblemError('invalid_credentials')
    }
    const verdict = await hasher.verify(user.passwordHash, input.password)
    if (!verdict.ok) {
      await audit.record({
        type: 'auth.login_failed',
        outcome: 'failure',
        userId: user.id,
        context: input.context,
        details: { reason: 'wrong_password' },
      })
      throw new ProblemError('invalid_credentials')
    }
    // Only a caller who knows the password learns the account's state.
    if (user.disabledAt) throw new ProblemError('account_disabled')
    if (settings.emailVerification === 'required' && !user.emailVerifiedAt)
      throw new ProblemError('email_not_verified')
    const scope = grantScope(user.roles, input.scope)
    if (scope === null) {
      throw new ProblemError('invalid_scope', {
        detail: 'The requested scope exceeds what the account is granted',
      })
    }
    if (verdict.needsRehash) await this.rehash(user, input.password)
    const tokens = await this.deps.sessions.start({
      user,
      scope,
      amr: ['pwd'],
      remember: input.remember ?? false,
      context: input.context,
    })
    await users.update(user.id, { lastLoginAt: new Date(this.deps.clock.now()) })
    await audit.record({
      type: 'auth.login_succeeded',
      outcome: 'success',
      actorId: user.id,
      userId: user.id,
      context: input.context,
      details: { method: 'password', remember: input.remember ?? false },
    })
    return tokens
  }

  private async rehash(user: UserRow, password: string): Promise<void> {
    const passwordHash = await this.deps.hasher.hash(password)
    await this.deps.users.update(user.id, { passwordHash })
  }

  private async sendVerification(user: UserRow): Promise<void> {
    const { emailTokens, outbox, clock, settings } = this.deps
    const token = randomToken(32)
    await emailTokens.replace({
      userId: user.id,
      purpose: 'verify_email',
      tokenHash: hashToken(token),
      expiresAt: new Date(clock.now() + settings.verifyTokenTtl * 1000),
    })
    outbox.send({
      to: user.email,
      ...templates.verifyEmail({
        appUrl: settings.appUrl,
        token,
        ttlHours: Math.round(settings.verifyTokenTtl / 3600),
      }),
    })
  }
}
