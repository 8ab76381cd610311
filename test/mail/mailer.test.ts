import { readdir, readFile, stat } from 'node:fs/promises'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import pino from 'pino'
import t from 'tap'
import { createMailer, MailDeliveryError } from '../../src/mail/mailer.js'
import * as templates from '../../src/mail/templates.js'
import { startSmtpServer } from '../helpers/smtp.js'

const from = 'Latchkey <no-reply@latchkey.test>'
const appUrl = 'https://app.example.test'
// `+`, `/` and `=` must be percent-encoded in the link.
const token = 'tok+en/with=chars_AbCdEf0123456789'
const encodedToken = encodeURIComponent(token)

// A real pino logger writing to memory, so the test also proves pino fits `MailLogger`.
function captureLogger() {
  const lines: string[] = []
  const stream = new Writable({
    write(chunk, _encoding, done) {
      lines.push(String(chunk))
      done()
    },
  })
  return { logger: pino({ level: 'info' }, stream), lines }
}

// Undo quoted-printable soft breaks and escapes, so assertions see the text as written.
function decodeQp(raw: string): string {
  return raw
    .replace(/=\r?\n/g, '')
    .replace(/=([0-9A-F]{2})/g, (_, hex: string) => String.fromCharCode(Number.parseInt(hex, 16)))
}

t.test('delivers through SMTP with text and HTML parts', async (t) => {
  const smtp = await startSmtpServer()
  t.teardown(() => smtp.close())
  const { logger, lines } = captureLogger()
  const mailer = createMailer({ smtpUrl: smtp.url, from, dataDir: t.testdir(), logger })
  t.teardown(() => mailer.close())

  const content = templates.verifyEmail({ appUrl, token, ttlHours: 24 })
  await mailer.send({ to: 'alice@example.test', ...content })
  const message = await smtp.waitFor((m) => m.to.includes('alice@example.test'))

  t.same(message.to, ['alice@example.test'])
  t.match(message.raw, /^To: alice@example\.test\r?$/m)
  t.match(message.raw, /^From: Latchkey <no-reply@latchkey\.test>\r?$/m)
  t.match(message.raw, /^Subject: Confirm your email address for Latchkey\r?$/m)
  t.match(message.raw, /Content-Type: multipart\/alternative/i)
  t.match(message.raw, /Content-Type: text\/plain/i)
  t.match(message.raw, /Content-Type: text\/html/i)
  const decoded = decodeQp(message.raw)
  t.ok(decoded.includes(`${appUrl}/verify-email?token=${encodedToken}`), 'the link is in the message')
  t.notOk(decoded.includes(token), 'the raw token never appears unencoded')

  const logged = lines.join('')
  t.match(logged, /email sent/)
  t.notOk(logged.includes(encodedToken), 'the log does not carry the token')
})

t.test('several messages share the pooled connection', async (t) => {
  const smtp = await startSmtpServer()
  t.teardown(() => smtp.close())
  const mailer = createMailer({
    smtpUrl: smtp.url,
    from,
    dataDir: t.testdir(),
    logger: captureLogger().logger,
  })
  t.teardown(() => mailer.close())
  await Promise.all(
    ['a', 'b', 'c'].map((name) =>
      mailer.send({ to: `${name}@example.test`, ...templates.passwordChanged() }),
    ),
  )
  t.equal(smtp.messages.length, 3)
  await t.rejects(
    smtp.waitFor((m) => m.to.includes('nobody@example.test'), 50),
    /no matching message/,
    'waitFor gives up',
  )
})

t.test('without SMTP each message is written to an .eml file', async (t) => {
  const dataDir = t.testdir()
  const { logger, lines } = captureLogger()
  const mailer = createMailer({ from, dataDir, logger })
  t.teardown(() => mailer.close())

  const content = templates.passwordReset({ appUrl, token, ttlMinutes: 60 })
  await mailer.send({ to: 'bob@example.test', ...content })
  await mailer.send({ to: 'carol@example.test', ...templates.passwordChanged() })

  const files = (await readdir(join(dataDir, 'mail'))).sort()
  t.equal(files.length, 2)
  for (const name of files) t.match(name, /^\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d-\d{3}Z-[0-9a-f]+\.eml$/)
  const bobFile = await findFile(join(dataDir, 'mail'), files, 'bob@example.test')
  const info = await stat(bobFile)
  if (process.platform !== 'win32') t.equal(info.mode & 0o777, 0o600, 'readable by the owner only')
  const raw = await readFile(bobFile, 'utf8')
  t.match(raw, /^Subject: Reset your Latchkey password$/m)
  t.match(raw, /Content-Type: text\/html/i)
  t.ok(decodeQp(raw).includes(`${appUrl}/reset-password?token=${encodedToken}`))

  const entries = lines.map((line) => JSON.parse(line) as { msg: string; file?: string; to?: string })
  const entry = entries.find((e) => e.to === 'bob@example.test')
  t.equal(entry?.msg, 'email written to file')
  t.equal(entry?.file, bobFile)
  const logged = lines.join('')
  t.notOk(logged.includes(encodedToken) || logged.includes(token), 'the log does not carry the token')
  t.notOk(logged.includes('Choose a new password'), 'nor the body')
})

t.test('an unreachable SMTP server makes send() reject quickly', async (t) => {
  const port = await closedPort()
  const { logger, lines } = captureLogger()
  const mailer = createMailer({ smtpUrl: `smtp://127.0.0.1:${port}`, from, dataDir: t.testdir(), logger })
  t.teardown(() => mailer.close())
  const started = Date.now()
  const content = templates.verifyEmail({ appUrl, token, ttlHours: 24 })
  const error = await mailer.send({ to: 'dave@example.test', ...content }).catch((e: unknown) => e)
  t.type(error, MailDeliveryError)
  t.ok(Date.now() - started < 5000, `rejected after ${Date.now() - started} ms`)
  const logged = lines.join('')
  t.match(logged, /email delivery failed/)
  t.notOk(logged.includes(encodedToken), 'the failure log does not carry the token')
})

t.test('templates escape HTML and encode tokens', async (t) => {
  t.equal(
    templates.escapeHtml(`<a href="x">'&'</a>`),
    '&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;',
  )
  const hostile = templates.verifyEmail({ appUrl: 'https://app.test/"><script>', token: '"<t>', ttlHours: 1 })
  t.notMatch(hostile.html, /<script>/)
  t.match(hostile.html, /token=%22%3Ct%3E/)
  t.match(hostile.text, /1 hour\./)
  for (const content of [
    templates.verifyEmail({ appUrl, token, ttlHours: 24 }),
    templates.accountExists({ appUrl }),
    templates.passwordReset({ appUrl, token, ttlMinutes: 30 }),
    templates.passwordChanged(),
    templates.sessionEndedByReuse(),
  ]) {
    t.ok(content.subject.length > 0)
    t.match(content.html, /<html lang="en">/)
    t.notMatch(content.html, /<(img|link|script)\b|src=/i, 'no external resources')
  }
  t.match(templates.accountExists({ appUrl: `${appUrl}/` }).text, `${appUrl}/reset-password`)
})

async function findFile(dir: string, files: string[], recipient: string): Promise<string> {
  for (const name of files) {
    const path = join(dir, name)
    if ((await readFile(path, 'utf8')).includes(`To: ${recipient}`)) return path
  }
  throw new Error(`no file for ${recipient}`)
}

// A port that was free a moment ago and has nothing listening now: connecting is refused.
async function closedPort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  const port = typeof address === 'object' && address ? address.port : 0
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}
