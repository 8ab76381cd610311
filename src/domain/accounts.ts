import { ProblemError } from '../errors.js'
import * as templates from '../mail/templates.js'
import type { EmailTokenPurpose, EmailTokenRepository } from '../storage/email-token-repository.js'
import type { UserRepository, UserRow } from '../storage/user-repository.js'
import type { AccessTokenClaims } from './access-tokens.js'
import type { AuditLog, RequestContext } from './audit.js'
import type { Clock } from './clock.js'
import type { LoginCooldown } from './cooldown.js'
import { hashToken, randomToken } from './crypto.js'
import { hasMfa, type MfaService } from './mfa.js'
import type { Outbox } from './outbox.js'
import type { PasswordHasher } from './password-hasher.js'
import { checkPassword } from './password-policy.js'
import { grantScope } from './policy.js'
import type { AccessTokenResponse, IssuedTokens, SessionService } from './sessions.js'
import type { SignInGate } from './sign-in.js'

export interface AccountSettings {
  appUrl: string
  emailVerification: 'required' | 'optional'
  /** Seconds. */
  verifyTokenTtl: number
  /** Seconds. */
  resetTokenTtl: number
}

export interface AccountServiceDeps {
  users: UserRepository
  emailTokens: EmailTokenRepository
  hasher: PasswordHasher
  sessions: SessionService
  signIn: SignInGate
  mfa: MfaService
  cooldown: LoginCooldown
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
  /** Browser mode: the refresh token goes into an HttpOnly cookie (carried through MFA). */
  useCookie?: boolean | undefined
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

const invalidLink = () =>
  new ProblemError('invalid_token', { detail: 'The link is invalid, used or expired' })

/**
 * The account lifecycle: sign-up, verification, password sign-in, reset, change, step-up and
 * deletion. Answers never reveal whether an address has an account (OWASP Authentication and
 * Forgot Password cheat sheets): the same status, body and headers, and the work whose duration
 * differs between the two cases runs after the answer (`outbox.later`).
 */
export class AccountService {
  constructor(private readonly deps: AccountServiceDeps) {}

  /** Creates an unverified account and mails a verification link; a taken address gets a notice. */
  async signup(rawEmail: string, password: string, context: RequestContext): Promise<void> {
    const email = normalizeEmail(rawEmail)
    assertPasswordAcceptable(password, email)
    const { users, hasher, outbox, audit, settings } = this.deps
    hasher.assertCapacity()
    // Hash before looking: both paths spend the same work, so timing does not tell them apart.
    const passwordHash = await hasher.hash(password)
    const user = await users.insert({ email, passwordHash })
    outbox.later('signup', async () => {
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
    })
  }

  /** Spends a verification token and marks the address verified. */
  async verifyEmail(token: string, context: RequestContext): Promise<void> {
    const { users, audit } = this.deps
    const userId = await this.consume('verify_email', token)
    const user = userId ? await users.findById(userId) : undefined
    if (!user) throw invalidLink()
    if (!user.emailVerifiedAt) {
      await users.update(user.id, { emailVerifiedAt: new Date(this.deps.clock.now()) })
      await this.deps.sessions.userChanged(user.id)
    }
    await audit.record({
      type: 'user.email_verified',
      outcome: 'success',
      actorId: user.id,
      userId: user.id,
      context,
    })
  }

  /** Whether an email token is unused and unexpired, without spending it (hosted pages). */
  async isEmailTokenUsable(purpose: EmailTokenPurpose, token: string): Promise<boolean> {
    const now = new Date(this.deps.clock.now())
    return (await this.deps.emailTokens.peek(purpose, hashToken(token), now)) !== undefined
  }

  /** Mails a new verification link when the address has an unverified account; silent otherwise. */
  async resendVerification(rawEmail: string): Promise<void> {
    const user = await this.deps.users.findByEmail(normalizeEmail(rawEmail))
    this.deps.outbox.later('resend verification', async () => {
      if (user && !user.emailVerifiedAt && !user.disabledAt) await this.sendVerification(user)
    })
  }

  /**
   * Password sign-in. Unknown email, wrong password and an address cooling down on the account
   * all answer the same 401 invalid_credentials after the same argon2 work.
   */
  async login(input: LoginInput): Promise<IssuedTokens> {
    const { users, hasher, audit, settings, cooldown } = this.deps
    hasher.assertCapacity()
    const email = normalizeEmail(input.email)
    const address = input.context.ip
    const user = await users.findByEmail(email)
    if ((await cooldown.check(email, address)).coolingDown) {
      await hasher.verifyDummy(input.password)
      await this.loginFailed(user, input.context, 'cooldown')
      throw new ProblemError('invalid_credentials')
    }
    if (!user?.passwordHash) {
      await hasher.verifyDummy(input.password)
      await this.countFailure(email, user, input.context)
      await this.loginFailed(user, input.context, user ? 'no_password' : 'unknown_email')
      throw new ProblemError('invalid_credentials')
    }
    const verdict = await hasher.verify(user.passwordHash, input.password)
    if (!verdict.ok) {
      await this.countFailure(email, user, input.context)
      await this.loginFailed(user, input.context, 'wrong_password')
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
    // A user with a second factor gets the MFA challenge here instead of a session.
    const tokens = await this.deps.signIn.complete(user, {
      amr: ['pwd'],
      scope,
      remember: input.remember ?? false,
      useCookie: input.useCookie ?? false,
      context: input.context,
    })
    // Only a completed sign-in clears the failures: the password alone must not wipe out wrong
    // second-factor codes, or codes could be guessed five at a time forever.
    await cooldown.reset(email)
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

  /** Mails a single-use reset link when the address has an account; the answer is the same either way. */
  async requestPasswordReset(rawEmail: string, context: RequestContext): Promise<void> {
    const { users, outbox, audit, settings } = this.deps
    const email = normalizeEmail(rawEmail)
    const user = await users.findByEmail(email)
    outbox.later('password reset request', async () => {
      if (!user || user.disabledAt) {
        await audit.record({
          type: 'password.reset_requested',
          outcome: 'failure',
          userId: user?.id ?? null,
          context,
          details: { reason: user ? 'account_disabled' : 'unknown_email' },
        })
        return
      }
      const token = await this.issueEmailToken(user, 'reset_password', settings.resetTokenTtl)
      // The link is built from APP_URL only, never from the request's Host or X-Forwarded-Host.
      outbox.send({
        to: user.email,
        ...templates.passwordReset({
          appUrl: settings.appUrl,
          token,
          ttlMinutes: Math.max(1, Math.round(settings.resetTokenTtl / 60)),
        }),
      })
      await audit.record({ type: 'password.reset_requested', outcome: 'success', userId: user.id, context })
    })
  }

  /**
   * Sets a new password with a reset token: single use, then every session of the user ends and
   * the owner is told. It does not sign in. The cooldown is cleared: reset is the owner's way
   * back in, whatever an attacker did.
   */
  async resetPassword(token: string, newPassword: string, context: RequestContext): Promise<void> {
    const { users, emailTokens, hasher, sessions, outbox, audit, cooldown, clock } = this.deps
    const now = new Date(clock.now())
    const pending = await emailTokens.peek('reset_password', hashToken(token), now)
    const owner = pending ? await users.findById(pending.userId) : undefined
    if (!owner) throw invalidLink()
    // Check the policy before spending the token, so a refused password does not waste the link.
    assertPasswordAcceptable(newPassword, owner.email)
    const passwordHash = await hasher.hash(newPassword)
    const userId = await this.consume('reset_password', token)
    if (userId !== owner.id) throw invalidLink()
    // The link proved control of the address.
    await users.update(owner.id, { passwordHash, emailVerifiedAt: owner.emailVerifiedAt ?? now })
    await sessions.revokeAllForUser(owner.id, { reason: 'password_reset', actorId: owner.id, context })
    await cooldown.reset(owner.email)
    outbox.send({ to: owner.email, ...templates.passwordChanged() })
    await audit.record({
      type: 'password.reset',
      outcome: 'success',
      actorId: owner.id,
      userId: owner.id,
      context,
    })
  }

  /**
   * Changes the password of the signed-in user (fresh login checked by the route): the other
   * sessions end, the current one continues, the owner is told. A wrong current password counts
   * as a failed sign-in for the cooldown.
   */
  async changePassword(
    claims: AccessTokenClaims,
    currentPassword: string,
    newPassword: string,
    context: RequestContext,
  ): Promise<void> {
    const { users, hasher, sessions, outbox, audit } = this.deps
    const user = await this.activeUser(claims.sub)
    await this.confirmPassword(user, currentPassword, context, 'password.changed')
    assertPasswordAcceptable(newPassword, user.email)
    await users.update(user.id, { passwordHash: await hasher.hash(newPassword) })
    await sessions.revokeAllForUser(user.id, {
      reason: 'password_changed',
      actorId: user.id,
      except: claims.sid,
      context,
    })
    outbox.send({ to: user.email, ...templates.passwordChanged() })
    await audit.record({
      type: 'password.changed',
      outcome: 'success',
      actorId: user.id,
      userId: user.id,
      context,
    })
  }

  /**
   * Step-up: the password, or a TOTP code, again gives this session a new `auth_time`. With a
   * code the session's `amr` holds `mfa`, which the sensitive actions of an MFA user need. A
   * plain refresh never makes a session fresh (RFC 9068 §2.2.1).
   */
  async reauthenticate(
    claims: AccessTokenClaims,
    proof: { password?: string | undefined; code?: string | undefined },
    context: RequestContext,
  ): Promise<AccessTokenResponse> {
    const user = await this.activeUser(claims.sub)
    let amr: string[]
    if (proof.code !== undefined) {
      await this.confirmCode(user, proof.code, context)
      amr = [...(claims.amr.includes('pwd') ? ['pwd'] : []), 'otp', 'mfa']
    } else {
      await this.confirmPassword(user, proof.password ?? '', context, 'auth.reauthenticated')
      amr = ['pwd']
    }
    const response = await this.deps.sessions.reauthenticate(claims.sid, user, amr)
    await this.deps.audit.record({
      type: 'auth.reauthenticated',
      outcome: 'success',
      actorId: user.id,
      userId: user.id,
      context,
      details: { session_id: claims.sid, method: proof.code !== undefined ? 'otp' : 'password' },
    })
    return response
  }

  /** Deletes the signed-in user's account: sessions end at once; audit events keep the id. */
  async deleteAccount(claims: AccessTokenClaims, context: RequestContext): Promise<void> {
    const { users, sessions, outbox, audit } = this.deps
    const user = await this.activeUser(claims.sub)
    await sessions.revokeAllForUser(user.id, { reason: 'account_deleted', actorId: user.id, context })
    await users.delete(user.id)
    outbox.send({ to: user.email, ...templates.accountDeleted() })
    await audit.record({
      type: 'user.deleted',
      outcome: 'success',
      actorId: user.id,
      userId: user.id,
      context,
    })
  }

  private async activeUser(userId: string): Promise<UserRow> {
    const user = await this.deps.users.findById(userId)
    if (!user || user.disabledAt) {
      throw new ProblemError('invalid_token', { status: 401, detail: 'The account is not active' })
    }
    return user
  }

  /**
   * Checks the password of a user who already holds a valid bearer token: a wrong one is
   * 400 invalid_credentials and counts toward the cooldown like a failed sign-in.
   */
  private async confirmPassword(
    user: UserRow,
    password: string,
    context: RequestContext,
    auditType: 'password.changed' | 'auth.reauthenticated',
  ): Promise<void> {
    const { hasher, cooldown, audit } = this.deps
    const coolingDown = (await cooldown.check(user.email, context.ip)).coolingDown
    let ok = false
    if (coolingDown) await hasher.verifyDummy(password)
    else if (user.passwordHash !== null) ok = (await hasher.verify(user.passwordHash, password)).ok
    if (ok) return
    if (!coolingDown) await this.countFailure(user.email, user, context)
    await audit.record({
      type: auditType,
      outcome: 'failure',
      actorId: user.id,
      userId: user.id,
      context,
      details: { reason: coolingDown ? 'cooldown' : 'wrong_password' },
    })
    throw new ProblemError('invalid_credentials', { status: 400, detail: 'The password is not correct' })
  }

  /** A TOTP code of a user who holds a bearer token: wrong is 400 invalid_code and a failure. */
  private async confirmCode(user: UserRow, code: string, context: RequestContext): Promise<void> {
    if (!hasMfa(user)) {
      throw new ProblemError('validation_failed', {
        detail: 'This account has no authenticator app to check',
      })
    }
    if (await this.deps.mfa.checkCode(user, code)) return
    await this.countFailure(user.email, user, context)
    await this.deps.audit.record({
      type: 'auth.reauthenticated',
      outcome: 'failure',
      actorId: user.id,
      userId: user.id,
      context,
      details: { reason: 'wrong_code' },
    })
    throw new ProblemError('invalid_code', { status: 400, detail: 'The code is not correct' })
  }

  /** Counts a failure; at the threshold the owner is told and an audit event is written. */
  private async countFailure(
    email: string,
    user: UserRow | undefined,
    context: RequestContext,
  ): Promise<void> {
    const { crossed, failures } = await this.deps.cooldown.recordFailure(email, context.ip)
    if (!crossed) return
    this.deps.outbox.later('cooldown notice', async () => {
      await this.deps.audit.record({
        type: 'account.cooldown_started',
        outcome: 'failure',
        userId: user?.id ?? null,
        context,
        details: { failures },
      })
      if (user) {
        this.deps.outbox.send({
          to: user.email,
          ...templates.signInAttemptsSlowed({ appUrl: this.deps.settings.appUrl }),
        })
      }
    })
  }

  private async loginFailed(
    user: UserRow | undefined,
    context: RequestContext,
    reason: string,
  ): Promise<void> {
    await this.deps.audit.record({
      type: 'auth.login_failed',
      outcome: 'failure',
      userId: user?.id ?? null,
      context,
      details: { reason },
    })
  }

  private async consume(purpose: EmailTokenPurpose, token: string): Promise<string | undefined> {
    return this.deps.emailTokens.consume(purpose, hashToken(token), new Date(this.deps.clock.now()))
  }

  private async rehash(user: UserRow, password: string): Promise<void> {
    const passwordHash = await this.deps.hasher.hash(password)
    await this.deps.users.update(user.id, { passwordHash })
  }

  /** A new single-use email token (stored as its hash); a newer one voids the older ones. */
  private async issueEmailToken(
    user: UserRow,
    purpose: EmailTokenPurpose,
    ttlSeconds: number,
  ): Promise<string> {
    const token = randomToken(32)
    await this.deps.emailTokens.replace({
      userId: user.id,
      purpose,
      tokenHash: hashToken(token),
      expiresAt: new Date(this.deps.clock.now() + ttlSeconds * 1000),
    })
    return token
  }

  private async sendVerification(user: UserRow): Promise<void> {
    const { outbox, settings } = this.deps
    const token = await this.issueEmailToken(user, 'verify_email', settings.verifyTokenTtl)
    outbox.send({
      to: user.email,
      ...templates.verifyEmail({
        appUrl: settings.appUrl,
        token,
        ttlHours: Math.max(1, Math.round(settings.verifyTokenTtl / 3600)),
      }),
    })
  }
}
