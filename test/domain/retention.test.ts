import { randomUUID } from 'node:crypto'
import t from 'tap'
import { EMAIL_TOKEN_RETENTION_DAYS, SESSION_RETENTION_DAYS } from '../../src/domain/retention.js'
import { emailTokens, sessions } from '../../src/storage/schema.js'
import { build } from '../helpers/app.js'

const DAY = 86_400_000

t.test(
  'retention deletes ended sessions and dead email tokens past their windows, nothing else',
  async (t) => {
    const { app } = await build(t)
    const { db } = app.services.database
    const now = Date.now()
    const user = await app.services.users.insert({ email: 'kept@example.com', passwordHash: 'x' })
    if (!user) throw new Error('no user')

    const session = (name: string, expiresAt: number, revokedAt: number | null = null) => ({
      id: randomUUID(),
      userId: user.id,
      idleExpiresAt: new Date(Math.min(expiresAt, now + DAY)),
      expiresAt: new Date(expiresAt),
      remember: false,
      scope: 'profile',
      amr: ['pwd'],
      authTime: new Date(now - 40 * DAY),
      userAgent: name,
      ...(revokedAt === null ? {} : { revokedAt: new Date(revokedAt), revokedReason: 'logout' }),
    })
    const past = SESSION_RETENTION_DAYS * DAY
    await db
      .insert(sessions)
      .values([
        session('ended long ago', now - past - DAY),
        session('revoked long ago', now - past - DAY, now - past - 2 * DAY),
        session('ended recently', now - past + DAY),
        session('revoked long ago, expiry recent', now - past + DAY, now - past - DAY),
        session('live', now + DAY),
      ])

    const token = (name: string, expiresAt: number, used: boolean) => ({
      userId: user.id,
      purpose: 'verify_email' as const,
      tokenHash: name,
      expiresAt: new Date(expiresAt),
      ...(used ? { usedAt: new Date(expiresAt - DAY) } : {}),
    })
    const dead = EMAIL_TOKEN_RETENTION_DAYS * DAY
    await db
      .insert(emailTokens)
      .values([
        token('expired long ago', now - dead - DAY, false),
        token('used, expired long ago', now - dead - DAY, true),
        token('expired recently', now - dead + DAY, false),
        token('used, not expired', now + DAY, true),
        token('unused', now + DAY, false),
      ])

    const report = await app.services.retention.run(now)
    t.same(report, { auditEvents: 0, sessions: 2, emailTokens: 2 })
    const sessionsLeft = await db.select({ name: sessions.userAgent }).from(sessions)
    t.same(sessionsLeft.map((row) => row.name).sort(), [
      'ended recently',
      'live',
      'revoked long ago, expiry recent',
    ])
    const tokensLeft = await db.select({ name: emailTokens.tokenHash }).from(emailTokens)
    t.same(tokensLeft.map((row) => row.name).sort(), ['expired recently', 'unused', 'used, not expired'])
    t.same(
      await app.services.retention.run(now),
      { auditEvents: 0, sessions: 0, emailTokens: 0 },
      'idempotent',
    )
  },
)
