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

  /**
   * Runs `task` after the answer: work whose duration must not show in the response time (it
   * would tell known addresses from unknown ones). A failure is logged under `label`.
   */
  later(label: string, task: () => Promise<void>): void {
    // Started on the next turn of the event loop, after the answer has been written, so even an
    // in-process database (PGlite) does not delay the answer with it.
    const work = new Promise<void>((resolve) => setImmediate(resolve))
      .then(task)
      .catch((error: unknown) => this.logger.error({ err: error, task: label }, 'background task failed'))
      .finally(() => this.pending.delete(work))
    this.pending.add(work)
  }

  /** Resolves when every queued message and task has finished (or failed). */
  async drain(): Promise<void> {
    while (this.pending.size > 0) await Promise.allSettled([...this.pending])
  }
}
