import { type ChildProcess, spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { once } from 'node:events'
import { connect } from 'node:net'
import t, { type Test } from 'tap'
import { AuditRepository } from '../src/storage/audit-repository.js'
import { openDatabase } from '../src/storage/database.js'
import {
  createTestDatabase,
  deleteRedisPrefix,
  RELAXED_RATE_LIMITS,
  TEST_KEY_ENCRYPTION_KEY,
} from './helpers/app.js'
import { testRedisUrl } from './helpers/services.js'

/** Starts the real server process and resolves with its base URL once it listens. */
async function startServer(
  env: Record<string, string>,
): Promise<{ child: ChildProcess; url: string; output: () => string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  child.stderr?.on('data', (chunk) => {
    output += chunk
  })
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the server did not start:\n${output}`)), 60_000)
    child.stdout?.on('data', (chunk: Buffer) => {
      output += chunk
      const match = output.match(/Server listening at (http:\/\/127\.0\.0\.1:\d+)/)
      if (match?.[1]) {
        clearTimeout(timer)
        resolve(match[1])
      }
    })
    child.once('exit', (code) => reject(new Error(`the server exited with ${code}:\n${output}`)))
  })
  return { child, url, output: () => output }
}

/** The server on its own data dir and test database (and the test Redis), logging at info. */
async function startTestServer(t: Test, dataDir: string, databaseUrl: string | undefined) {
  const redisPrefix = `lktest:${randomUUID()}:`
  const server = await startServer({
    NODE_ENV: 'test',
    PORT: '0',
    LOG_LEVEL: 'info',
    DATA_DIR: dataDir,
    KEY_ENCRYPTION_KEY: TEST_KEY_ENCRYPTION_KEY,
    ...RELAXED_RATE_LIMITS,
    ...(databaseUrl ? { DATABASE_URL: databaseUrl } : {}),
    ...(testRedisUrl ? { REDIS_URL: testRedisUrl, REDIS_KEY_PREFIX: redisPrefix } : {}),
  })
  t.teardown(async () => {
    if (server.child.exitCode === null) server.child.kill('SIGKILL')
    await deleteRedisPrefix(redisPrefix)
  })
  return server
}

t.test('SIGTERM lets in-flight requests finish, then exits 0', async (t) => {
  const databaseUrl = await createTestDatabase(t)
  const { child, url, output } = await startTestServer(t, t.testdir(), databaseUrl)

  // Logins are slow on purpose (argon2id): they are in flight when the signal arrives.
  const inFlight = Array.from({ length: 12 }, (_, index) =>
    fetch(`${url}/v1/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email: `user${index}@example.com`, password: 'not a real password here' }),
    }).then(
      (response) => response.status,
      (error: Error) => `failed: ${error.message}`,
    ),
  )
  // Signal only once the server has received all of them (argon2 keeps them in flight).
  const deadline = Date.now() + 20_000
  while ((output().match(/"url":"\/v1\/auth\/login"[^\n]*"incoming request"/g) ?? []).length < 12) {
    if (Date.now() > deadline) throw new Error(`the logins did not arrive:\n${output()}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
  const exited = once(child, 'exit')
  child.kill('SIGTERM')
  const statuses = await Promise.all(inFlight)
  t.same(statuses, Array(12).fill(401), 'every in-flight request got its answer, none was reset')
  const [code] = await exited
  t.equal(code, 0, 'exit status 0', { output: output().slice(-3000) })
  t.match(output(), /"signal":"SIGTERM"/)
  t.match(output(), /shutting down/)
})

t.test('SIGTERM waits for the work of a request whose client went away', async (t) => {
  const databaseUrl = await createTestDatabase(t)
  const dataDir = t.testdir()
  const { child, url, output } = await startTestServer(t, dataDir, databaseUrl)

  const { port } = new URL(url)
  const open = async () => {
    const socket = connect(Number(port), '127.0.0.1')
    await once(socket, 'connect')
    return socket
  }
  const loginBody = JSON.stringify({ email: 'gone@example.com', password: 'not a real password here' })
  const head = (length: number) =>
    `POST /v1/auth/login HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: ${length}\r\n\r\n`
  const arrived = (n: number) =>
    (output().match(/"url":"\/v1\/auth\/login"[^\n]*"incoming request"/g) ?? []).length >= n
  const until = async (done: () => boolean | Promise<boolean>, what: string) => {
    const deadline = Date.now() + 20_000
    while (!(await done())) {
      if (Date.now() > deadline) throw new Error(`${what}:\n${output()}`)
      await new Promise((resolve) => setTimeout(resolve, 5))
    }
  }

  // One client hangs up halfway through its body: its request never reaches a handler.
  const partial = await open()
  partial.write(`${head(Buffer.byteLength(loginBody))}${loginBody.slice(0, 10)}`)
  await until(() => arrived(1), 'the partial login did not arrive')
  partial.destroy()

  // Another hangs up while its login is hashing (argon2id first, then the failure is recorded in
  // the database): no connection is left for the server to wait on, but the work goes on.
  const whole = await open()
  whole.write(`${head(Buffer.byteLength(loginBody))}${loginBody}`)
  await until(async () => {
    const metrics = await fetch(`${url}/metrics`).then((response) => response.text())
    return /^latchkey_argon2_in_flight [1-9]/m.test(metrics)
  }, 'the login did not reach the hasher')
  whole.destroy()

  const exited = once(child, 'exit')
  const signalled = Date.now()
  child.kill('SIGTERM')
  const [code] = await exited
  t.equal(code, 0, 'exit status 0', { output: output().slice(-3000) })
  t.notMatch(output(), /"level":50/, 'nothing failed under the closing pools')
  t.ok(Date.now() - signalled < 5000, 'the request that never reached its handler was not waited for')

  const database = await openDatabase({ url: databaseUrl, dataDir })
  t.teardown(() => database.close())
  const failed = await new AuditRepository(database.db).list({ type: 'auth.login_failed', limit: 10 })
  t.equal(failed.length, 1, "the abandoned login's audit event was written before the pools closed")
})
