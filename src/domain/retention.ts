import type { AuditRepository } from '../storage/audit-repository.js'
import type { EmailTokenRepository } from '../storage/email-token-repository.js'
import type { SessionRepository } from '../storage/session-repository.js'

const DAY_MS = 86_400_000

/** A session's list entry (IP, user agent, times) is kept this long after its absolute expiry. */
export const SESSION_RETENTION_DAYS = 30
/** An email token's row is kept this long after it expired, used or not. */
export const EMAIL_TOKEN_RETENTION_DAYS = 7

const BATCH = 5000

export interface RetentionDeps {
  auditEvents: AuditRepository
  sessions: SessionRepository
  emailTokens: EmailTokenRepository
  /** AUDIT_RETENTION_DAYS. */
  auditRetentionDays: number
}

/** What one pass deleted. */
export interface RetentionReport {
  auditEvents: number
  sessions: number
  emailTokens: number
}

/**
 * Deletes what nothing reads any more, so that PostgreSQL holds what is live plus a bounded
 * tail: audit events past AUDIT_RETENTION_DAYS, list entries of sessions that ended by their
 * absolute expiry more than SESSION_RETENTION_DAYS ago (sessions that end sooner, by revocation
 * or idling, go with them), and email tokens that expired more than EMAIL_TOKEN_RETENTION_DAYS
 * ago. Deletes go in batches, so no statement holds a table for long; every instance may run a
 * pass, since deleting twice is harmless.
 */
export class Retention {
  constructor(private readonly deps: RetentionDeps) {}

  async run(now: number): Promise<RetentionReport> {
    const auditEvents = await drain((batch) =>
      this.deps.auditEvents.deleteOlderThan(new Date(now - this.deps.auditRetentionDays * DAY_MS), batch),
    )
    const sessions = await drain((batch) =>
      this.deps.sessions.deleteExpiredBefore(new Date(now - SESSION_RETENTION_DAYS * DAY_MS), batch),
    )
    const emailTokens = await drain((batch) =>
      this.deps.emailTokens.deleteExpiredBefore(new Date(now - EMAIL_TOKEN_RETENTION_DAYS * DAY_MS), batch),
    )
    return { auditEvents, sessions, emailTokens }
  }
}

async function drain(deleteSome: (batch: number) => Promise<number>): Promise<number> {
  let total = 0
  for (;;) {
    const deleted = await deleteSome(BATCH)
    total += deleted
    if (deleted < BATCH) return total
  }
}
