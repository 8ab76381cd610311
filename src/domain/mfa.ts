import { Secret, TOTP } from 'otpauth'
import QRCode from 'qrcode'
import { ProblemError } from '../errors.js'
import * as templates from '../mail/templates.js'
import type { EphemeralStore } from '../storage/ephemeral-store.js'
import type { RecoveryCodeRepository } from '../storage/recovery-code-repository.js'
import type { UserRepository, UserRow } from '../storage/user-repository.js'
import type { AuditLog, RequestContext } from './audit.js'
import type { Clock } from './clock.js'
import type { LoginCooldown } from './cooldown.js'
import { hashToken, randomToken, seal, unseal } from './crypto.js'
import type { Outbox } from './outbox.js'
import type { IssuedTokens, SessionService } from './sessions.js'

/** RFC 6238 as authenticator apps expect it: SHA-1, 6 digits, 30 s. */
const TOTP_PERIOD_SECONDS = 30
/** One step of clock drift either way. */
const TOTP_WINDOW = 1
const RECOVERY_CODE_COUNT = 10
/** A challenge dies after this many wrong codes. */
export const MFA_MAX_ATTEMPTS = 5
export const MFA_METHODS = ['totp', 'recovery_code'] as const

export interface MfaSettings {
  issuer: string
  /** MFA_TOKEN_TTL, seconds. */
  challengeTtl: number
  appUrl: string
}

export interface MfaServiceDeps {
  users: UserRepository
  recoveryCodes: RecoveryCodeRepository
  ephemeral: EphemeralStore
  sessions: SessionService
  cooldown: LoginCooldown
  audit: AuditLog
  outbox: Outbox
  clock: Clock
  /** KEY_ENCRYPTION_KEY: TOTP secrets are sealed at rest. */
  encryptionKey: Buffer
  settings: MfaSettings
}

/** What a sign-in remembers between the first factor and the second. */
export interface PendingSignIn {
  userId: string
  amr: string[]
  remember: boolean
  scope: string
  useCookie: boolean
}

export interface Enrolment {
  secret: string
  otpauth_uri: string
  qr_svg: string
}

/** Whether the user has an active second factor. */
export function hasMfa(user: Pick<UserRow, 'totpSecretSealed' | 'totpEnabledAt'>): boolean {
  return user.totpSecretSealed !== null && user.totpEnabledAt !== null
}

/** A recovery code as shown to the user: 10 base32 characters in two groups, e.g. `k7mq4-x2rtp`. */
function newRecoveryCode(): string {
  const alphabet = 'abcdefghjkmnpqrstuvwxyz23456789'
  const bytes = Buffer.from(randomToken(16), 'base64url')
  let code = ''
  for (let index = 0; index < 10; index++) code += alphabet[bytes[index]! % alphabet.length]
  return `${code.slice(0, 5)}-${code.slice(5)}`
}

/** Recovery codes are compared without case, spaces or dashes. */
function recoveryCodeHash(code: string): string {
  return hashToken(`recovery\0${code.toLowerCase().replace(/[\s-]/g, '')}`)
}

const challengeKey = (token: string) => `mfa:{${hashToken(token)}}`
const attemptsKey = (token: string) => `mfa:{${hashToken(token)}}:attempts`

/**
 * TOTP second factor (RFC 6238) with recovery codes, and the MFA challenge between the first
 * factor and a session. Secrets are sealed with KEY_ENCRYPTION_KEY; codes that succeeded are
 * remembered for their window (in Redis, across instances) so none is accepted twice.
 */
export class MfaService {
  constructor(private readonly deps: MfaServiceDeps) {}

  /** Starts (or restarts) enrolment: a new secret that stays inactive until a code proves it. */
  async enrol(user: UserRow): Promise<Enrolment> {
    const secret = new Secret({ size: 20 })
    await this.deps.users.update(user.id, { totpPendingSealed: this.sealSecret(user.id, secret.base32) })
    const otpauthUri = this.totp(user, secret).toString()
    const qrSvg = await QRCode.toString(otpauthUri, { type: 'svg', errorCorrectionLevel: 'M', margin: 2 })
    return { secret: secret.base32, otpauth_uri: otpauthUri, qr_svg: qrSvg }
  }

  /** Proves the pending secret with a code, turns MFA on and returns ten recovery codes, once. */
  async activate(user: UserRow, code: string, context: RequestContext): Promise<string[]> {
    if (!user.totpPendingSealed) {
      throw new ProblemError('validation_failed', {
        detail: 'Start the enrolment first (POST /v1/me/mfa/totp)',
      })
    }
    const secret = this.unsealSecret(user.id, user.totpPendingSealed)
    if (!(await this.acceptCode(user, secret, code))) {
      throw new ProblemError('invalid_code', { status: 400, detail: 'The code is not correct' })
    }
    const codes = await this.replaceRecoveryCodes(user)
    await this.deps.users.update(user.id, {
      totpSecretSealed: user.totpPendingSealed,
      totpEnabledAt: new Date(this.deps.clock.now()),
      totpPendingSealed: null,
    })
    await this.deps.sessions.userChanged(user.id)
    this.deps.outbox.send({ to: user.email, ...templates.mfaChanged({ enabled: true }) })
    await this.deps.audit.record({
      type: 'mfa.enabled',
      outcome: 'success',
      actorId: user.id,
      userId: user.id,
      context,
      details: { method: 'totp' },
    })
    return codes
  }

  /** Turns MFA off: the secret and every recovery code are gone; the owner is told. */
  async disable(user: UserRow, context: RequestContext): Promise<void> {
    await this.deps.users.update(user.id, {
      totpSecretSealed: null,
      totpEnabledAt: null,
      totpPendingSealed: null,
    })
    await this.deps.recoveryCodes.deleteAll(user.id)
    await this.deps.sessions.userChanged(user.id)
    this.deps.outbox.send({ to: user.email, ...templates.mfaChanged({ enabled: false }) })
    await this.deps.audit.record({
      type: 'mfa.disabled',
      outcome: 'success',
      actorId: user.id,
      userId: user.id,
      context,
    })
  }

  /** A new set of ten recovery codes; the old set stops working. */
  async regenerateRecoveryCodes(user: UserRow): Promise<string[]> {
    if (!hasMfa(user)) throw new ProblemError('validation_failed', { detail: 'MFA is not enabled' })
    const codes = await this.replaceRecoveryCodes(user)
    await this.deps.sessions.userChanged(user.id)
    return codes
  }

  /**
   * Parks a sign-in whose first factor succeeded: an opaque `mfa_token` (256 bits, stored as a
   * hash) bound to the user and this attempt, valid MFA_TOKEN_TTL. It is neither a JWT nor a
   * refresh token, so it is useless as either.
   */
  async challenge(pending: PendingSignIn): Promise<{ mfa_token: string; methods: string[] }> {
    const token = randomToken(32)
    await this.deps.ephemeral.setIfAbsent(
      challengeKey(token),
      JSON.stringify(pending),
      this.deps.settings.challengeTtl * 1000,
    )
    return { mfa_token: token, methods: [...MFA_METHODS] }
  }

  /**
   * Finishes a challenged sign-in with a TOTP code or a recovery code. Wrong codes answer
   * 401 invalid_code, count toward the account's cooldown, and after five the challenge is void.
   */
  async verify(
    mfaToken: string,
    proof: { code?: string | undefined; recoveryCode?: string | undefined },
    context: RequestContext,
  ): Promise<{ tokens: IssuedTokens; pending: PendingSignIn }> {
    const { ephemeral, users, cooldown, audit, settings } = this.deps
    const raw = await ephemeral.get(challengeKey(mfaToken))
    const pending = raw ? (JSON.parse(raw) as PendingSignIn) : undefined
    const user = pending ? await users.findById(pending.userId) : undefined
    if (!pending || !user || !hasMfa(user) || user.disabledAt) {
      throw new ProblemError('invalid_token', {
        status: 401,
        detail: 'The MFA challenge is invalid or has expired',
      })
    }
    const method = proof.code !== undefined ? 'otp' : 'recovery_code'
    const ok =
      proof.code !== undefined
        ? await this.acceptCode(user, this.unsealSecret(user.id, user.totpSecretSealed!), proof.code)
        : await this.useRecoveryCode(user, proof.recoveryCode ?? '', context)
    if (!ok) {
      const attempts = await ephemeral.increment(attemptsKey(mfaToken), settings.challengeTtl * 1000)
      if (attempts >= MFA_MAX_ATTEMPTS) await ephemeral.delete(challengeKey(mfaToken), attemptsKey(mfaToken))
      await cooldown.recordFailure(user.email, context.ip)
      await audit.record({
        type: 'auth.login_failed',
        outcome: 'failure',
        userId: user.id,
        context,
        details: { reason: 'wrong_mfa_code', method, attempts },
      })
      throw new ProblemError('invalid_code', { detail: 'The code is not correct' })
    }
    // Single use: of two concurrent right answers, only one takes the challenge.
    if ((await ephemeral.take(challengeKey(mfaToken))) === null) {
      throw new ProblemError('invalid_token', {
        status: 401,
        detail: 'The MFA challenge is invalid or has expired',
      })
    }
    await ephemeral.delete(attemptsKey(mfaToken))
    await cooldown.reset(user.email)
    const amr = [...new Set([...pending.amr, 'otp', 'mfa'])]
    const tokens = await this.deps.sessions.start({
      user,
      scope: pending.scope,
      amr,
      remember: pending.remember,
      context,
    })
    await users.update(user.id, { lastLoginAt: new Date(this.deps.clock.now()) })
    await audit.record({
      type: 'auth.login_succeeded',
      outcome: 'success',
      actorId: user.id,
      userId: user.id,
      context,
      details: { method: pending.amr.join('+'), second_factor: method, remember: pending.remember },
    })
    return { tokens, pending }
  }

  /** Checks a TOTP code of an active factor (step-up); a used code is refused. */
  async checkCode(user: UserRow, code: string): Promise<boolean> {
    if (!hasMfa(user)) return false
    return this.acceptCode(user, this.unsealSecret(user.id, user.totpSecretSealed!), code)
  }

  /**
   * True when `code` is right for `secret` within one step of drift and was not used before in
   * its window. The used-code mark is set atomically (SET NX), so even two instances racing
   * with one code accept it once.
   */
  private async acceptCode(user: UserRow, secret: string, code: string): Promise<boolean> {
    if (!/^\d{6}$/.test(code)) return false
    const now = this.deps.clock.now()
    const totp = this.totp(user, Secret.fromBase32(secret))
    const delta = totp.validate({ token: code, timestamp: now, window: TOTP_WINDOW })
    if (delta === null) return false
    const step = Math.floor(now / 1000 / TOTP_PERIOD_SECONDS) + delta
    const ttlMs = (TOTP_WINDOW * 2 + 2) * TOTP_PERIOD_SECONDS * 1000
    return this.deps.ephemeral.setIfAbsent(`totp-used:{${user.id}}:${step}`, '1', ttlMs)
  }

  private async useRecoveryCode(user: UserRow, code: string, context: RequestContext): Promise<boolean> {
    if (code.length === 0 || code.length > 64) return false
    const used = await this.deps.recoveryCodes.consume(
      user.id,
      recoveryCodeHash(code),
      new Date(this.deps.clock.now()),
    )
    if (!used) return false
    await this.deps.sessions.userChanged(user.id)
    const left = await this.deps.recoveryCodes.countUnused(user.id)
    this.deps.outbox.send({
      to: user.email,
      ...templates.recoveryCodeUsed({ left, appUrl: this.deps.settings.appUrl }),
    })
    await this.deps.audit.record({
      type: 'mfa.recovery_code_used',
      outcome: 'success',
      actorId: user.id,
      userId: user.id,
      context,
      details: { codes_left: left },
    })
    return true
  }

  private async replaceRecoveryCodes(user: UserRow): Promise<string[]> {
    const codes = Array.from({ length: RECOVERY_CODE_COUNT }, newRecoveryCode)
    await this.deps.recoveryCodes.replaceSet(user.id, codes.map(recoveryCodeHash))
    return codes
  }

  private totp(user: UserRow, secret: Secret): TOTP {
    return new TOTP({
      issuer: this.deps.settings.issuer,
      label: user.email,
      algorithm: 'SHA1',
      digits: 6,
      period: TOTP_PERIOD_SECONDS,
      secret,
    })
  }

  private sealSecret(userId: string, base32: string): string {
    return seal(this.deps.encryptionKey, base32, `latchkey totp ${userId}`)
  }

  private unsealSecret(userId: string, sealed: string): string {
    return unseal(this.deps.encryptionKey, sealed, `latchkey totp ${userId}`)
  }
}
