import { and, asc, eq, TransactionRollbackError } from 'drizzle-orm'
import type { Database } from './database.js'
import { identities, users } from './schema.js'
import type { UserRow } from './user-repository.js'

export type IdentityRow = typeof identities.$inferSelect

export interface NewIdentity {
  provider: string
  issuer: string
  subject: string
  email: string | null
}

/** Reads and writes linked identities; creating a user with its first identity is one transaction. */
export class IdentityRepository {
  constructor(private readonly db: Database) {}

  async find(issuer: string, subject: string): Promise<IdentityRow | undefined> {
    const [row] = await this.db
      .select()
      .from(identities)
      .where(and(eq(identities.issuer, issuer), eq(identities.subject, subject)))
      .limit(1)
    return row
  }

  async listForUser(userId: string): Promise<IdentityRow[]> {
    return this.db
      .select()
      .from(identities)
      .where(eq(identities.userId, userId))
      .orderBy(asc(identities.createdAt), asc(identities.provider))
  }

  /** Links an identity to an account; false when the identity or the account's link for that provider exists. */
  async link(userId: string, identity: NewIdentity): Promise<boolean> {
    const rows = await this.db
      .insert(identities)
      .values({ userId, ...identity })
      .onConflictDoNothing()
      .returning({ id: identities.id })
    return rows.length === 1
  }

  /**
   * Creates a user (verified email, no password) together with the identity: both or neither.
   * Undefined when the email or the identity was taken in the meantime.
   */
  async createUser(email: string, verifiedAt: Date, identity: NewIdentity): Promise<UserRow | undefined> {
    return this.db
      .transaction(async (tx) => {
        const [user] = await tx
          .insert(users)
          .values({ email, passwordHash: null, emailVerifiedAt: verifiedAt })
          .onConflictDoNothing()
          .returning()
        if (!user) return undefined
        const linked = await tx
          .insert(identities)
          .values({ userId: user.id, ...identity })
          .onConflictDoNothing()
          .returning({ id: identities.id })
        if (linked.length === 0) {
          tx.rollback()
        }
        return user
      })
      .catch((error: unknown) => {
        if (error instanceof TransactionRollbackError) return undefined
        throw error
      })
  }

  async touch(id: string, at: Date): Promise<void> {
    await this.db.update(identities).set({ lastLoginAt: at }).where(eq(identities.id, id))
  }

  /**
   * Unlinks the user's identity at `provider` unless it is the account's last way in (no password
   * and no other identity). The user row is locked, so two unlinks at once cannot both pass.
   */
  async unlinkUnlessLast(
    userId: string,
    provider: string,
  ): Promise<'unlinked' | 'not_found' | 'last_way_in'> {
    return this.db.transaction(async (tx) => {
      const [user] = await tx
        .select({ passwordHash: users.passwordHash })
        .from(users)
        .where(eq(users.id, userId))
        .for('update')
      if (!user) return 'not_found'
      const linked = await tx
        .select({ id: identities.id, provider: identities.provider })
        .from(identities)
        .where(eq(identities.userId, userId))
      const target = linked.find((identity) => identity.provider === provider)
      if (!target) return 'not_found'
      if (user.passwordHash === null && linked.length < 2) return 'last_way_in'
      await tx.delete(identities).where(eq(identities.id, target.id))
      return 'unlinked'
    })
  }
}
