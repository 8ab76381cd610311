import { randomBytes } from 'node:crypto'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import nodemailer from 'nodemailer'

/**
 * Outgoing email. With SMTP_URL it goes to a pooled SMTP connection; without, each message is
 * written as an .eml file under DATA_DIR/mail so development needs no mail server. Bodies carry
 * single-use tokens, so they are never logged: log lines name the recipient and, for files, the
 * file, which is created readable by its owner only.
 */

/** One email to one recipient; `text` and `html` are alternatives of the same content. */
export interface MailMessage {
  to: string
  subject: string
  text: string
  html: string
}

/** Delivers email; `send` rejects with `MailDeliveryError` when the message could not be handed over. */
export interface Mailer {
  send(message: MailMessage): Promise<void>
  close(): Promise<void>
}

/** The two pino methods the mailer uses, so tests can pass a capture instead of a logger. */
export interface MailLogger {
  info(obj: object, msg: string): void
  error(obj: object, msg: string): void
}

/** Settings of `createMailer`: SMTP_URL, MAIL_FROM and DATA_DIR from the configuration. */
export interface MailerOptions {
  smtpUrl?: string | undefined
  from: string
  dataDir: string
  logger: MailLogger
}

/** A message was not delivered; `cause` holds the transport's error (which never contains the body). */
export class MailDeliveryError extends Error {
  override name = 'MailDeliveryError'
  readonly code: string | undefined
  constructor(code: string | undefined, cause: unknown) {
    super(code ? `email delivery failed (${code})` : 'email delivery failed', { cause })
    this.code = code
  }
}

// Short enough that a dead server fails a request quickly instead of holding it for minutes.
const CONNECTION_TIMEOUT_MS = 5_000
const GREETING_TIMEOUT_MS = 5_000
const SOCKET_TIMEOUT_MS = 10_000
// Socket timeouts miss a server that trickles its replies; this bounds a whole delivery.
const SEND_TIMEOUT_MS = 30_000

/** SMTP mailer when `smtpUrl` is set, else one that writes .eml files under `${dataDir}/mail`. */
export function createMailer(options: MailerOptions): Mailer {
  return options.smtpUrl ? smtpMailer(options.smtpUrl, options) : fileMailer(options)
}

function smtpMailer(url: string, options: MailerOptions): Mailer {
  const transport = nodemailer.createTransport(
    {
      url,
      pool: true,
      maxConnections: 2,
      connectionTimeout: CONNECTION_TIMEOUT_MS,
      greetingTimeout: GREETING_TIMEOUT_MS,
      socketTimeout: SOCKET_TIMEOUT_MS,
      dnsTimeout: CONNECTION_TIMEOUT_MS,
      // Messages are built from templates only: never let a field pull in a local file or a URL.
      disableFileAccess: true,
      disableUrlAccess: true,
    },
    { from: options.from },
  )
  return {
    async send(message) {
      try {
        const info = await transport.sendMail({ ...message, signal: AbortSignal.timeout(SEND_TIMEOUT_MS) })
        options.logger.info({ to: message.to, messageId: info.messageId }, 'email sent')
      } catch (error) {
        throw failed(options.logger, message.to, error)
      }
    },
    async close() {
      transport.close()
    },
  }
}

function fileMailer(options: MailerOptions): Mailer {
  const transport = nodemailer.createTransport(
    { streamTransport: true, buffer: true, newline: 'unix', disableFileAccess: true, disableUrlAccess: true },
    { from: options.from },
  )
  const directory = join(options.dataDir, 'mail')
  let ready: Promise<unknown> | undefined
  return {
    async send(message) {
      try {
        ready ??= mkdir(directory, { recursive: true, mode: 0o700 })
        await ready
        const info = await transport.sendMail(message)
        const file = join(directory, fileName(new Date()))
        // wx: a name collision must fail rather than overwrite another message.
        await writeFile(file, info.message as Buffer, { mode: 0o600, flag: 'wx' })
        options.logger.info({ file, to: message.to }, 'email written to file')
      } catch (error) {
        ready = undefined
        throw failed(options.logger, message.to, error)
      }
    },
    async close() {
      transport.close()
    },
  }
}

// ISO time with the characters Windows and some shells dislike replaced, then a random suffix.
function fileName(now: Date): string {
  const stamp = now.toISOString().replaceAll(':', '-').replace('.', '-')
  return `${stamp}-${randomBytes(6).toString('hex')}.eml`
}

function failed(logger: MailLogger, to: string, error: unknown): MailDeliveryError {
  const code = (error as { code?: unknown })?.code
  const failure = new MailDeliveryError(typeof code === 'string' ? code : undefined, error)
  logger.error(
    { to, err: { name: (error as Error)?.name, code: failure.code, message: (error as Error)?.message } },
    'email delivery failed',
  )
  return failure
}
