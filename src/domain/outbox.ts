import type { Mailer, MailMessage } from '../mail/mailer.js'

export interface OutboxLogger {
  error(object: unknown, message: string): void
}

/**
 * Sends email in the background. Answers that must not reveal whether an address exists
 * (sign-up, forgot-password, resend) return before the SMTP round trip, so its timing tells
 * nothing; `drain()` waits for what is in flight (shutdown, tests).
 */
export class Outbox {
  private readonly pending = new Set<Promise<void>>()

  constructor(
    private readonly mailer: Mailer,
    private readonly logger: OutboxLogger,
  ) {}

  /** Queues a message; a failure is logged with the recipient's domain only. */
  send(message: MailMessage): void {
    const delivery = this.mailer
      .send(message)
      .catch((error: unknown) => {
        const domain = message.to.split('@')[1] ?? 'unknown'
        this.logger.error(
          { err: error, recipientDomain: domain, subject: message.subject },
          'email delivery failed',
        )
      })
      .finally(() => this.pending.delete(delivery))
    this.pending.add(delivery)
  }

  /** Resolves when every queued message has been handed over (or has failed). */
  async drain(): Promise<void> {
    while (this.pending.size > 0) await Promise.allSettled([...this.pending])
  }
}
