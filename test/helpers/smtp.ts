import type { AddressInfo } from 'node:net'
import { SMTPServer } from 'smtp-server'

/**
 * A real SMTP server on 127.0.0.1 for tests: it accepts everything, keeps each message's raw
 * source, and lets a test wait for the message it expects instead of sleeping.
 */

/** A message as the server received it: envelope recipients and the raw RFC 5322 source. */
export interface ReceivedMessage {
  to: string[]
  raw: string
}

/** A running test SMTP server; `url` is ready for SMTP_URL. */
export interface TestSmtpServer {
  url: string
  messages: ReceivedMessage[]
  waitFor(predicate: (message: ReceivedMessage) => boolean, timeoutMs?: number): Promise<ReceivedMessage>
  close(): Promise<void>
}

/** Starts an SMTP server on a free port of 127.0.0.1 (no TLS, no authentication). */
export async function startSmtpServer(): Promise<TestSmtpServer> {
  const messages: ReceivedMessage[] = []
  const waiters = new Set<{
    predicate: (message: ReceivedMessage) => boolean
    resolve: (m: ReceivedMessage) => void
  }>()

  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    logger: false,
    // Short, so close() does not wait for a pooled client that keeps its connection open.
    closeTimeout: 100,
    onData(stream, session, callback) {
      const chunks: Buffer[] = []
      stream.on('data', (chunk: Buffer) => chunks.push(chunk))
      stream.on('error', callback)
      stream.on('end', () => {
        const message = {
          to: session.envelope.rcptTo.map((address) => address.address),
          raw: Buffer.concat(chunks).toString('utf8'),
        }
        messages.push(message)
        for (const waiter of waiters) {
          if (waiter.predicate(message)) {
            waiters.delete(waiter)
            waiter.resolve(message)
          }
        }
        callback()
      })
    },
  })

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject)
      resolve()
    })
  })
  // Errors after start (a client dropping mid-message) must not crash the test process.
  server.on('error', () => {})
  const { port } = server.server.address() as AddressInfo

  return {
    url: `smtp://127.0.0.1:${port}`,
    messages,
    waitFor(predicate, timeoutMs = 5000) {
      const found = messages.find(predicate)
      if (found) return Promise.resolve(found)
      return new Promise((resolve, reject) => {
        const waiter = {
          predicate,
          resolve: (message: ReceivedMessage) => {
            clearTimeout(timer)
            resolve(message)
          },
        }
        const timer = setTimeout(() => {
          waiters.delete(waiter)
          reject(new Error(`no matching message within ${timeoutMs} ms (${messages.length} received)`))
        }, timeoutMs)
        waiters.add(waiter)
      })
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  }
}
