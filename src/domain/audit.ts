import type { AuditRepository } from '../storage/audit-repository.js'

/** Who is asking, as the audit log and the session list record it. */
export interface RequestContext {
  ip: string
  userAgent: string | undefined
  requestId: string
}

export type AuditEventType =
  | 'user.signed_up'
  | 'user.email_verified'
  | 'auth.login_succeeded'
  | 'auth.login_failed'
  | 'auth.logout'
  | 'auth.refresh_reuse_detected'
  | 'auth.reauthenticated'
  | 'password.reset_requested'
  | 'password.reset'
  | 'password.changed'
  | 'mfa.enabled'
  | 'mfa.disabled'
  | 'mfa.recovery_code_used'
  | 'session.revoked'
  | 'user.created'
  | 'user.updated'
  | 'user.deleted'
  | 'identity.linked'
  | 'identity.unlinked'
  | 'key.rotated'
  | 'key.imported'
  | 'rate_limit.exceeded'
  | 'account.cooldown_started'

export interface AuditEventInput {
  type: AuditEventType
  outcome: 'success' | 'failure'
  /** Who acted: the user for self-service, the admin for admin actions, null before sign-in. */
  actorId?: string | null
  /** Whom the event concerns; kept after the account is deleted. */
  userId?: string | null
  context?: RequestContext
  /** Never a secret: no passwords, tokens or codes. */
  details?: Record<string, unknown>
}

export interface AuditLogger {
  error(object: unknown, message: string): void
}

/** Writes audit events. A failed write is logged, never lost silently, and never fails the request. */
export class AuditLog {
  constructor(
    private readonly repository: AuditRepository,
    private readonly logger: AuditLogger,
  ) {}

  /** Records one event (awaits the write; a failure is logged and swallowed). */
  async record(event: AuditEventInput): Promise<void> {
    try {
      await this.repository.insert({
        type: event.type,
        outcome: event.outcome,
        actorId: event.actorId ?? null,
        userId: event.userId ?? null,
        ip: event.context?.ip ?? null,
        userAgent: event.context?.userAgent?.slice(0, 512) ?? null,
        requestId: event.context?.requestId ?? null,
        details: event.details ?? {},
      })
    } catch (error) {
      this.logger.error(
        { err: error, auditEvent: { type: event.type, userId: event.userId } },
        'audit write failed',
      )
    }
  }
}
