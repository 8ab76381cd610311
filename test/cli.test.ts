import { spawn } from 'node:child_process'
import { generateKeyPairSync } from 'node:crypto'
import { Readable, Writable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import { calculateJwkThumbprint, decodeJwt, type JWK } from 'jose'
import t from 'tap'
import { runCli } from '../src/cli.js'
import { PasswordHasher } from '../src/domain/password-hasher.js'
import { AuditRepository } from '../src/storage/audit-repository.js'
import { type Database, openDatabase } from '../src/storage/database.js'
import { UserRepository } from '../src/storage/user-repository.js'
import { build, createTestDatabase, TEST_KEY_ENCRYPTION_KEY } from './helpers/app.js'
import { testRedisUrl } from './helpers/services.js'

// One database for the whole file, used by the subtests in order (PGlite is slow to open).
const databaseUrl = await createTestDatabase(t)
const dataDir = t.testdir()
const PEPPER = 'cli-test-pepper-0123456789'
const JWKS_MAX_AGE = 120
const env: Record<string, string> = {
  NODE_ENV: 'test',
  KEY_ENCRYPTION_KEY: TEST_KEY_ENCRYPTION_KEY,
  DATA_DIR: dataDir,
  PASSWORD_PEPPER: PEPPER,
  JWKS_MAX_AGE: String(JWKS_MAX_AGE),
  ...(databaseUrl ? { DATABASE_URL: databaseUrl } : {}),
}
const PASSWORD = 'glacier umbrella fossil lantern'

class Capture extends Writable {
  text = ''
  override _write(chunk: Buffer, _encoding: string, callback: () => void) {
    this.text += chunk.toString('utf8')
    callback()
  }
}

interface Outcome {
  code: number
  stdout: string
  stderr: string
}

/** Runs the command in process; `stdin` is piped text, or `tty` for an interactive terminal. */
async function cli(argv: string[], stdin: string | 'tty' = '', overrides: Record<string, string> = {}) {
  const stdout = new Capture()
  const stderr = new Capture()
  const input =
    stdin === 'tty'
      ? Object.assign(Readable.from([]), { isTTY: true })
      : Readable.from(stdin === '' ? [] : [Buffer.from(stdin)])
  const code = await runCli(argv, { stdin: input, stdout, stderr, env: { ...env, ...overrides } })
  return { code, stdout: stdout.text, stderr: stderr.text } satisfies Outcome
}

/** Opens the same database the command uses (never at the same time: PGlite has one owner). */
async function inDatabase<T>(work: (db: Database) => Promise<T>): Promise<T> {
  const database = await openDatabase({ url: databaseUrl, dataDir })
  try {
    return await work(database.db)
  } finally {
    await database.close()
  }
}

const findUser = (email: string) => inDatabase((db) => new UserRepository(db).findByEmail(email))
const auditEvents = (type: string) => inDatabase((db) => new AuditRepository(db).list({ type, limit: 50 }))

interface ListedKey {
  kid: string
  alg: string
  state: string
  created_at: string
  activates_at: string
}

async function listKeys(): Promise<ListedKey[]> {
  const { code, stdout, stderr } = await cli(['keys', 'list', '--json'])
  if (code !== 0) throw new Error(`keys list failed: ${stderr}`)
  return JSON.parse(stdout) as ListedKey[]
}

t.test('help, no arguments, unknown commands and bad configuration', async (t) => {
  for (const argv of [['--help'], ['help'], ['-h']]) {
    const result = await cli(argv)
    t.equal(result.code, 0, argv.join(' '))
    t.match(result.stdout, /^Usage: latchkey <command>/)
    t.match(result.stdout, /users create --email E/)
  }
  const bare = await cli([])
  t.equal(bare.code, 64, 'no arguments is a usage error')
  t.match(bare.stdout, /^Usage: latchkey/)

  const unknown = await cli(['frobnicate'])
  t.equal(unknown.code, 64)
  t.match(unknown.stderr, /^latchkey: unknown command "frobnicate"/)
  t.equal(unknown.stderr.trim().split('\n').length, 1, 'one line')

  t.equal((await cli(['keys'])).code, 64, 'keys without a subcommand')
  t.match((await cli(['users', 'delete'])).stderr, /unknown subcommand "delete"/)
  t.equal((await cli(['migrate', 'now'])).code, 64, 'no positional arguments')

  const badConfig = await cli(['keys', 'list'], '', { KEY_ENCRYPTION_KEY: 'too-short' })
  t.equal(badConfig.code, 78, 'a ConfigError is EX_CONFIG')
  t.match(badConfig.stderr, /invalid configuration:[\s\S]*KEY_ENCRYPTION_KEY/)
})

t.test('migrate applies the migrations once and is idempotent', async (t) => {
  const first = await cli(['migrate'])
  t.equal(first.code, 0, first.stderr)
  t.match(first.stdout, /applied \d+ migrations?: 0000_init/)
  const second = await cli(['migrate'])
  t.equal(second.code, 0, second.stderr)
  t.match(second.stdout, /up to date/)
  t.notMatch(second.stdout, /applied/)
  t.equal(await findUser('nobody@example.com'), undefined, 'the schema is there')
})

t.test('users create makes a verified admin with the password from standard input', async (t) => {
  const result = await cli(
    ['users', 'create', '--email', 'ada@example.com', '--role', 'admin', '--verified'],
    `${PASSWORD}\nignored second line\n`,
  )
  t.equal(result.code, 0, result.stderr)
  t.match(result.stdout, /created user .* ada@example\.com/)
  t.notMatch(result.stdout + result.stderr, PASSWORD, 'the password is never printed')

  const user = await findUser('ada@example.com')
  t.ok(user, 'the row exists')
  t.same(user!.roles, ['user', 'admin'])
  t.ok(user!.emailVerifiedAt instanceof Date, 'email_verified_at is set')
  const params = { memoryKib: 19456, timeCost: 2 }
  const peppered = new PasswordHasher({ ...params, pepper: PEPPER })
  t.equal((await peppered.verify(user!.passwordHash!, PASSWORD)).ok, true, 'the first line, without newline')
  t.equal(
    (await new PasswordHasher(params).verify(user!.passwordHash!, PASSWORD)).ok,
    false,
    'hashed with PASSWORD_PEPPER',
  )

  const [event] = await auditEvents('user.created')
  t.match(event, { userId: user!.id, actorId: null, outcome: 'success' })
  t.same(event!.details, { roles: ['user', 'admin'], via: 'cli' })
})

t.test('users create without --verified or --role makes an unverified plain user', async (t) => {
  const result = await cli(['users', 'create', '--email', 'bob@example.com'], `${PASSWORD}\r\n`)
  t.equal(result.code, 0, result.stderr)
  const user = await findUser('bob@example.com')
  t.same(user!.roles, ['user'])
  t.equal(user!.emailVerifiedAt, null)
  const hasher = new PasswordHasher({ memoryKib: 19456, timeCost: 2, pepper: PEPPER })
  t.equal((await hasher.verify(user!.passwordHash!, PASSWORD)).ok, true, 'CRLF is a line ending too')
})

t.test('a weak password exits 1 with the reasons and creates nothing', async (t) => {
  const result = await cli(['users', 'create', '--email', 'weak@example.com'], 'short\n')
  t.equal(result.code, 1)
  t.match(result.stderr, /the password does not meet the policy/)
  t.match(result.stderr, /at least 12 characters/)
  const common = await cli(['users', 'create', '--email', 'weak@example.com'], 'password1234\n')
  t.equal(common.code, 1)
  t.match(common.stderr, /too common or easy to guess/)
  t.equal(await findUser('weak@example.com'), undefined)
})

t.test('the password can only come from standard input', async (t) => {
  const secret = 'hunter2-hunter2-hunter2'
  const flag = await cli(['users', 'create', '--email', 'argv@example.com', '--password', secret])
  t.equal(flag.code, 64)
  t.match(flag.stderr, /unknown option --password/)
  const inline = await cli(['users', 'create', '--email', 'argv@example.com', `--password=${secret}`])
  t.equal(inline.code, 64)
  const positional = await cli(['users', 'create', '--email', 'argv@example.com', secret])
  t.equal(positional.code, 64)
  for (const result of [flag, inline, positional]) t.notMatch(result.stderr, secret, 'never echoed')

  const tty = await cli(['users', 'create', '--email', 'argv@example.com'], 'tty')
  t.equal(tty.code, 64)
  t.match(tty.stderr, /standard input/)
  const empty = await cli(['users', 'create', '--email', 'argv@example.com'], '\n')
  t.equal(empty.code, 64)
  t.match(empty.stderr, /no password on standard input/)
  t.equal(await findUser('argv@example.com'), undefined)
})

t.test('bad arguments are usage errors', async (t) => {
  const missing = await cli(['users', 'create', '--role', 'admin'], `${PASSWORD}\n`)
  t.equal(missing.code, 64)
  t.match(missing.stderr, /--email is required/)
  const role = await cli(
    ['users', 'create', '--email', 'carol@example.com', '--role', 'root'],
    `${PASSWORD}\n`,
  )
  t.equal(role.code, 64)
  t.match(role.stderr, /unknown role "root" \(known roles: user, admin\)/)
  const email = await cli(['users', 'create', '--email', 'not an email'], `${PASSWORD}\n`)
  t.equal(email.code, 64)
  const value = await cli(['users', 'create', '--email'], `${PASSWORD}\n`)
  t.equal(value.code, 64)
  t.match(value.stderr, /--email needs a value/)
  t.equal((await cli(['keys', 'list', '--yaml'])).code, 64)
  t.equal(await findUser('carol@example.com'), undefined)
})

t.test('a taken email exits 1, whatever its case', async (t) => {
  const result = await cli(['users', 'create', '--email', 'ADA@Example.com'], `${PASSWORD}\n`)
  t.equal(result.code, 1)
  t.match(result.stderr, /already exists/)
  t.equal((await auditEvents('user.created')).length, 2, 'only ada and bob were created')
})

t.test('users grant adds a role once', async (t) => {
  const first = await cli(['users', 'grant', '--email', 'bob@example.com', '--role', 'admin'])
  t.equal(first.code, 0, first.stderr)
  t.same((await findUser('bob@example.com'))!.roles, ['user', 'admin'])
  const again = await cli(['users', 'grant', '--email', 'BOB@example.com', '--role', 'admin'])
  t.equal(again.code, 0, again.stderr)
  t.match(again.stdout, /nothing changed/)
  t.same((await findUser('bob@example.com'))!.roles, ['user', 'admin'])

  const events = await auditEvents('user.updated')
  t.equal(events.length, 1, 'one audit event, for the change')
  t.same(events[0]!.details, { roles_added: ['admin'], via: 'cli' })
  t.equal(events[0]!.actorId, null)

  const nobody = await cli(['users', 'grant', '--email', 'nobody@example.com', '--role', 'admin'])
  t.equal(nobody.code, 1)
  t.match(nobody.stderr, /no user has the email nobody@example\.com/)
  t.equal((await cli(['users', 'grant', '--email', 'bob@example.com'])).code, 64, '--role is required')
  t.equal((await cli(['users', 'grant', '--email', 'bob@example.com', '--role', 'x'])).code, 64)
})

let rotatedKid = ''

t.test('keys rotate adds the next key, activating after JWKS_MAX_AGE', async (t) => {
  const before = Date.now()
  const result = await cli(['keys', 'rotate'])
  const after = Date.now()
  t.equal(result.code, 0, result.stderr)
  const kid = /new signing key (\S+)/.exec(result.stdout)?.[1]
  t.ok(kid, result.stdout)
  rotatedKid = kid!

  const keys = await listKeys()
  t.equal(keys.length, 2, 'the first key (made on the empty table) and the rotated one')
  const rotated = keys.find((key) => key.kid === kid)
  t.equal(rotated?.state, 'next')
  t.equal(rotated?.alg, 'RS256')
  const activatesAt = Date.parse(rotated!.activates_at)
  t.ok(activatesAt >= before + JWKS_MAX_AGE * 1000 - 1000, 'not before now + JWKS_MAX_AGE')
  t.ok(activatesAt <= after + JWKS_MAX_AGE * 1000, 'not after now + JWKS_MAX_AGE')
  t.equal(keys.filter((key) => key.state === 'signing').length, 1, 'one key signs meanwhile')

  const [event] = await auditEvents('key.rotated')
  t.equal(event?.actorId, null)
  t.same(event?.details, { kid, via: 'cli' })
})

t.test('keys import takes an RSA PEM and an EC P-256 JWK from standard input', async (t) => {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const pem = rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
  const rsaKid = await calculateJwkThumbprint(rsa.publicKey.export({ format: 'jwk' }) as JWK)
  const imported = await cli(['keys', 'import'], pem)
  t.equal(imported.code, 0, imported.stderr)
  t.match(imported.stdout, new RegExp(`imported key ${rsaKid} \\(RS256\\) activates at `))

  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const jwk = JSON.stringify(ec.privateKey.export({ format: 'jwk' }))
  const ecKid = await calculateJwkThumbprint(ec.publicKey.export({ format: 'jwk' }) as JWK)
  const importedJwk = await cli(['keys', 'import'], jwk)
  t.equal(importedJwk.code, 0, importedJwk.stderr)
  t.match(importedJwk.stdout, `imported key ${ecKid} (ES256)`)

  const keys = await listKeys()
  t.match(
    keys.find((key) => key.kid === rsaKid),
    { alg: 'RS256', state: 'next' },
  )
  t.match(
    keys.find((key) => key.kid === ecKid),
    { alg: 'ES256', state: 'next' },
  )
  t.equal(keys.length, 4)

  const events = await auditEvents('key.imported')
  t.same(events.map((event) => (event.details as { kid: string }).kid).sort(), [rsaKid, ecKid].sort())

  const twice = await cli(['keys', 'import'], pem)
  t.equal(twice.code, 1)
  t.match(twice.stderr, /already in the ring/)
})

t.test('keys import refuses what is not a usable private key', async (t) => {
  const garbage = await cli(['keys', 'import'], 'this is not a key\n')
  t.equal(garbage.code, 1)
  t.match(garbage.stderr, /^latchkey: cannot import the key: the key is neither PEM nor JSON \(JWK\)\n$/)
  const publicPem = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    .publicKey.export({ type: 'spki', format: 'pem' })
    .toString()
  const publicOnly = await cli(['keys', 'import'], publicPem)
  t.equal(publicOnly.code, 1)
  t.match(publicOnly.stderr, /not a readable private key/)
  const small = generateKeyPairSync('rsa', { modulusLength: 1024 })
  const weak = await cli(
    ['keys', 'import'],
    small.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  )
  t.equal(weak.code, 1)
  t.match(weak.stderr, /at least 2048 bits/)
  const tty = await cli(['keys', 'import'], 'tty')
  t.equal(tty.code, 64)
  t.match(tty.stderr, /standard input/)
  t.equal((await cli(['keys', 'import'])).code, 64, 'empty standard input')
  t.equal((await listKeys()).length, 4, 'nothing was added')
})

t.test('keys list prints a table', async (t) => {
  const result = await cli(['keys', 'list'])
  t.equal(result.code, 0, result.stderr)
  const [header, ...rows] = result.stdout.trimEnd().split('\n')
  t.match(header, /^KID\s+ALG\s+STATE\s+CREATED\s+ACTIVATES$/)
  t.equal(rows.length, 4)
  t.ok(
    rows.some((row) => row.startsWith(rotatedKid) && /\bnext\b/.test(row)),
    'the rotated key is next',
  )
})

t.test('the entry point runs: npx tsx src/cli.ts keys list --json', async (t) => {
  const root = fileURLToPath(new URL('..', import.meta.url))
  const child = spawn('npx', ['tsx', 'src/cli.ts', 'keys', 'list', '--json'], {
    cwd: root,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString('utf8')
  })
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString('utf8')
  })
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve))
  t.equal(code, 0, stderr)
  const keys = JSON.parse(stdout) as ListedKey[]
  t.equal(keys.length, 4)
  t.ok(keys.some((key) => key.kid === rotatedKid))
})

t.test(
  'users grant reaches the live sessions in Redis: the next refresh carries the role',
  { skip: !(databaseUrl && testRedisUrl) && 'needs TEST_DATABASE_URL and TEST_REDIS_URL' },
  async (t) => {
    const created = await cli(
      ['users', 'create', '--email', 'carol@example.com', '--verified'],
      `${PASSWORD}\n`,
    )
    t.equal(created.code, 0, created.stderr)
    // A server on the same database, Redis and key prefix (REDIS_KEY_PREFIX) as the command.
    const { app, redisPrefix } = await build(t, { PASSWORD_PEPPER: PEPPER }, { databaseUrl })
    const login = await app.inject({
      method: 'POST',
      url: '/v1/auth/login',
      payload: { email: 'carol@example.com', password: PASSWORD },
    })
    t.equal(login.statusCode, 200, login.body)
    const { refresh_token: refreshToken, access_token: accessToken } = login.json()
    t.same(decodeJwt(accessToken).roles, ['user'])

    const granted = await cli(['users', 'grant', '--email', 'carol@example.com', '--role', 'admin'], '', {
      REDIS_URL: testRedisUrl!,
      REDIS_KEY_PREFIX: redisPrefix,
    })
    t.equal(granted.code, 0, granted.stderr)
    t.match(granted.stdout, /1 live session\(s\) get the new roles/)

    const refreshed = await app.inject({
      method: 'POST',
      url: '/v1/auth/token',
      payload: { grant_type: 'refresh_token', refresh_token: refreshToken },
    })
    t.equal(refreshed.statusCode, 200, refreshed.body)
    const claims = decodeJwt(refreshed.json().access_token)
    t.same(claims.roles, ['user', 'admin'])
    t.match(claims.scope, /\badmin:users\b/, 'the session asked for no scope: it gets what admin grants')
  },
)
