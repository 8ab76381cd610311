import { execFile } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import type { FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import { build } from '../helpers/app.js'
import { eventually, freePort, spawnRedisProcess, tempDir } from '../helpers/faults.js'
import { signUpAndLogin } from '../helpers/flows.js'
import { startSmtpServer } from '../helpers/smtp.js'

// Production topologies of Redis, each run by the test itself: a Sentinel-managed primary and
// a three-node Cluster. The app's whole Redis usage (sessions and their Lua scripts, rate limits,
// cooldown, MFA challenges) must work on them, which on a Cluster means one hash slot per script.

const run = promisify(execFile)

/** Sign-up, login, refresh, a replay within the grace window, reuse after it, logout. */
async function exerciseRedis(
  t: Test,
  app: FastifyInstance,
  smtp: Awaited<ReturnType<typeof startSmtpServer>>,
) {
  const tokens = await signUpAndLogin(app, smtp, 'topology@example.com')
  const refresh = (token: string) =>
    app.inject({
      method: 'POST',
      url: '/v1/auth/token',
      payload: { grant_type: 'refresh_token', refresh_token: token },
    })
  const rotated = await refresh(tokens.refresh_token)
  t.equal(rotated.statusCode, 200)
  t.equal(
    (await refresh(tokens.refresh_token)).json().refresh_token,
    rotated.json().refresh_token,
    'grace retry',
  )
  const me = await app.inject({
    method: 'GET',
    url: '/v1/me',
    headers: { authorization: `Bearer ${rotated.json().access_token}` },
  })
  t.equal(me.statusCode, 200)
  const mfa = await app.inject({
    method: 'POST',
    url: '/v1/me/mfa/totp',
    headers: { authorization: `Bearer ${rotated.json().access_token}` },
    payload: {},
  })
  t.equal(mfa.statusCode, 200)
  const wrong = await app.inject({
    method: 'POST',
    url: '/v1/auth/login',
    payload: { email: 'topology@example.com', password: 'wrong password here!' },
  })
  t.equal(wrong.statusCode, 401, 'cooldown counting works')
  const logout = await app.inject({
    method: 'POST',
    url: '/v1/auth/logout',
    payload: { refresh_token: rotated.json().refresh_token },
  })
  t.equal(logout.statusCode, 204)
  t.equal((await refresh(rotated.json().refresh_token)).statusCode, 400)
  t.equal((await app.inject({ method: 'GET', url: '/readyz' })).statusCode, 200)
}

t.test('Redis Sentinel', async (t) => {
  const dir = await tempDir(t, 'latchkey-sentinel-')
  const primary = await freePort()
  const sentinel = await freePort()
  await spawnRedisProcess(t, ['--port', String(primary), '--bind', '127.0.0.1', '--save', ''], dir)
  const conf = join(dir, 'sentinel.conf')
  await writeFile(
    conf,
    `port ${sentinel}\nbind 127.0.0.1\nsentinel monitor latchkey 127.0.0.1 ${primary} 1\nsentinel down-after-milliseconds latchkey 2000\n`,
  )
  await spawnRedisProcess(t, [conf, '--sentinel'], dir)
  const smtp = await startSmtpServer()
  t.teardown(() => smtp.close())
  const { app } = await build(t, {
    SMTP_URL: smtp.url,
    REDIS_URL: '',
    REDIS_SENTINELS: `127.0.0.1:${sentinel}`,
    REDIS_SENTINEL_NAME: 'latchkey',
  })
  await exerciseRedis(t, app, smtp)
})

t.test('Redis Cluster', async (t) => {
  const dir = await tempDir(t, 'latchkey-cluster-')
  const ports = [await freePort(), await freePort(), await freePort()]
  for (const port of ports) {
    await spawnRedisProcess(
      t,
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--cluster-enabled',
        'yes',
        '--cluster-config-file',
        `nodes-${port}.conf`,
        '--cluster-node-timeout',
        '2000',
        '--save',
        '',
      ],
      dir,
    )
  }
  await run('redis-cli', [
    '--cluster',
    'create',
    ...ports.map((port) => `127.0.0.1:${port}`),
    '--cluster-replicas',
    '0',
    '--cluster-yes',
  ])
  t.ok(
    await eventually(async () => {
      const { stdout } = await run('redis-cli', ['-p', String(ports[0]), 'cluster', 'info'])
      return /cluster_state:ok/.test(stdout)
    }),
    'the cluster is up',
  )
  const smtp = await startSmtpServer()
  t.teardown(() => smtp.close())
  const { app } = await build(t, {
    SMTP_URL: smtp.url,
    REDIS_URL: '',
    REDIS_CLUSTER_NODES: ports.map((port) => `127.0.0.1:${port}`).join(','),
  })
  await exerciseRedis(t, app, smtp)
})
