import { and, desc, eq, type SQL } from 'drizzle-orm'
import type { Database } from './database.js'
import { auditEvents } from './schema.js'

export type AuditEventRow = typeof auditEvents.$inferSelect
export type NewAuditEventRow = typeof auditEvents.$inferInsert

/** Appends to and reads the audit log. */
export class AuditRepository {
  constructor(private readonly db: Database) {}

  async insert(row: NewAuditEventRow): Promise<void> {
    await this.db.insert(auditEvents).values(row)
  }

  /** Newest first, filtered by user and type. */
  async list(filter: { userId?: string; type?: string; limit: number }): Promise<AuditEventRow[]> {
    const conditions: SQL[] = []
    if (filter.userId) conditions.push(eq(auditEvents.userId, filter.userId))
    if (filter.type) conditions.push(eq(auditEvents.type, filter.type))
    return this.db
      .select()
      .from(auditEvents)
      .where(conditions.length > 0 ? and(...conditions) : undefined)
      .orderBy(desc(auditEvents.createdAt), desc(auditEvents.id))
      .limit(filter.limit)
  }
}
