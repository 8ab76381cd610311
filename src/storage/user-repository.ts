import { eq, sql } from 'drizzle-orm'
import type { Database } from './database.js'
import { users } from './schema.js'

export type UserRow = typeof users.$inferSelect

/** Reads and writes the users table. Emails are matched without regard to case. */
export class UserRepository {
  constructor(private readonly db: Database) {}

  async findById(id: string): Promise<UserRow | undefined> {
    const [row] = await this.db.select().from(users).where(eq(users.id, id)).limit(1)
    return row
  }

  async findByEmail(email: string): Promise<UserRow | undefined> {
    const [row] = await this.db
      .select()
      .from(users)
      .where(sql`lower(${users.email}) = lower(${email})`)
      .limit(1)
    return row
  }

  /** Inserts a user; returns undefined when the email is taken (no error, no partial write). */
  async insert(values: {
    email: string
    passwordHash: string | null
    roles?: string[]
    emailVerifiedAt?: Date | null
  }): Promise<UserRow | undefined> {
    const [row] = await this.db.insert(users).values(values).onConflictDoNothing().returning()
    return row
  }

  async update(
    id: string,
    values: Partial<
      Pick<
        UserRow,
        | 'passwordHash'
        | 'emailVerifiedAt'
        | 'roles'
        | 'disabledAt'
        | 'lastLoginAt'
        | 'totpSecretSealed'
        | 'totpEnabledAt'
        | 'totpPendingSealed'
      >
    >,
  ): Promise<UserRow | undefined> {
    const [row] = await this.db.update(users).set(values).where(eq(users.id, id)).returning()
    return row
  }

  async delete(id: string): Promise<void> {
    await this.db.delete(users).where(eq(users.id, id))
  }
}
