#!/usr/bin/env node
import { realpathSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Writable } from 'node:stream'
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { sql } from 'drizzle-orm'
import pino, { type Logger } from 'pino'
import { type Config, ConfigError, loadConfig } from './config.js'
import { assertPasswordAcceptable, normalizeEmail } from './domain/accounts.js'
import { AuditLog } from './domain/audit.js'
import { systemClock } from './domain/clock.js'
import { KeyRing } from './domain/key-ring.js'
import { PasswordHasher } from './domain/password-hasher.js'
import { ROLE_SCOPES } from './domain/policy.js'
import { ProblemError } from './errors.js'
import { keyEncryptionKey } from './services.js'
import { AuditRepository } from './storage/audit-repository.js'
import { type DatabaseHandle, MIGRATIONS_FOLDER, openDatabase } from './storage/database.js'
import { createRedisClient, redisConfigured, waitForRedis } from './storage/redis-client.js'
import { RedisSessionStore } from './storage/redis-session-store.js'
import { SessionRepository } from './storage/session-repository.js'
import { SigningKeyRepository } from './storage/signing-key-repository.js'
import { UserRepository } from './storage/user-repository.js'

/**
 * The `latchkey` operations command: migrations, signing keys and users, configured by the same
 * environment as the server. `runCli` does the work and returns the exit status, so tests drive
 * it with their own streams; the bottom of this file runs it when the file is the entry point.
 */

/** Where the command reads and writes, and the environment it is configured from. */
export interface CliIo {
  stdin: NodeJS.ReadableStream & { isTTY?: boolean }
  stdout: Writable
  stderr: Writable
  env: Record<string, string | undefined>
}

// Exit statuses from sysexits.h, the ones operators' scripts already know.
const EXIT_OK = 0
const EXIT_FAILURE = 1
const EX_USAGE = 64
const EX_CONFIG = 78

const USAGE = `Usage: latchkey <command> [options]

Operations for Latchkey, configured by the same environment variables as the server.

Commands:
  migrate                            apply the database migrations
  keys rotate                        add a new signing key; it signs after JWKS_MAX_AGE
  keys list [--json]                 show the signing keys and their states
  keys import                        add the private key (PEM or JWK) read from standard input
                                     as the next signing key
  users create --email E [--role R]... [--verified]
                                     create a user; the password is the first line of standard
                                     input (never an argument); every user has the role "user"
  users grant --email E --role R     give a user a role
  help                               show this help

Roles: ${Object.keys(ROLE_SCOPES).join(', ')}

Examples:
  printf '%s\\n' "$ADMIN_PASSWORD" | latchkey users create --email ops@example.com --role admin --verified
  latchkey keys import < signing-key.pem

Exit status: 0 done, 1 failed, 64 bad usage, 78 bad configuration.
`

/** A mistake in how the command was called: answered with one line and EX_USAGE. */
class UsageError extends Error {
  override name = 'UsageError'
}

/** The command ran and could not do what was asked: answered with the message and status 1. */
class CommandFailed extends Error {
  override name = 'CommandFailed'
}

/** Runs `latchkey <argv…>` and returns its exit status; never throws. */
export async function runCli(argv: string[], io: CliIo): Promise<number> {
  try {
    return await dispatch(argv, io)
  } catch (error) {
    if (error instanceof UsageError) {
      io.stderr.write(`latchkey: ${error.message} (see latchkey --help)\n`)
      return EX_USAGE
    }
    if (error instanceof ConfigError) {
      io.stderr.write(`latchkey: ${error.message}\n`)
      return EX_CONFIG
    }
    io.stderr.write(`latchkey: ${describeError(error)}\n`)
    return EXIT_FAILURE
  }
}

async function dispatch(argv: string[], io: CliIo): Promise<number> {
  const [command, ...rest] = argv
  if (command === undefined) {
    io.stdout.write(USAGE)
    return EX_USAGE
  }
  if (command === 'help' || command === '--help' || command === '-h') {
    io.stdout.write(USAGE)
    return EXIT_OK
  }
  if (command === 'migrate') return migrateCommand(rest, io)
  if (command === 'keys' || command === 'users') {
    const [action, ...args] = rest
    const handler = (command === 'keys' ? KEY_COMMANDS : USER_COMMANDS)[action ?? '']
    if (action === '--help' || action === '-h') {
      io.stdout.write(USAGE)
      return EXIT_OK
    }
    if (!handler) {
      const known = Object.keys(command === 'keys' ? KEY_COMMANDS : USER_COMMANDS).join(', ')
      throw new UsageError(
        action === undefined
          ? `${command}: missing subcommand (${known})`
          : `${command}: unknown subcommand "${action}" (${known})`,
      )
    }
    return handler(args, io)
  }
  throw new UsageError(`unknown command "${command}"`)
}

type Handler = (args: string[], io: CliIo) => Promise<number>

const KEY_COMMANDS: Record<string, Handler> = {
  rotate: keysRotateCommand,
  list: keysListCommand,
  import: keysImportCommand,
}

const USER_COMMANDS: Record<string, Handler> = {
  create: usersCreateCommand,
  grant: usersGrantCommand,
}

// --- commands -------------------------------------------------------------------------------

async function migrateCommand(args: string[], io: CliIo): Promise<number> {
  const { values } = options('migrate', () =>
    parseArgs({ args, strict: true, options: { help: { type: 'boolean', short: 'h' } } }),
  )
  if (values.help) return help(io)
  const config = loadConfig(io.env)
  const database = await openDatabase({
    url: config.DATABASE_URL,
    dataDir: config.DATA_DIR,
    maxConnections: 1,
  })
  try {
    const before = await lastAppliedMigration(database)
    await database.migrate()
    const journal = await migrationJournal()
    const applied = journal
      .filter((entry) => before === null || entry.when > before)
      .map((entry) => entry.tag)
    const where = database.kind === 'pglite' ? `embedded database in ${config.DATA_DIR}` : 'PostgreSQL'
    if (applied.length === 0)
      io.stdout.write(`${where}: up to date (${plural(journal.length, 'migration')})\n`)
    else io.stdout.write(`${where}: applied ${plural(applied.length, 'migration')}: ${applied.join(', ')}\n`)
    return EXIT_OK
  } finally {
    await database.close()
  }
}

async function keysRotateCommand(args: string[], io: CliIo): Promise<number> {
  const { values } = options('keys rotate', () =>
    parseArgs({ args, strict: true, options: { help: { type: 'boolean', short: 'h' } } }),
  )
  if (values.help) return help(io)
  const config = loadConfig(io.env)
  const logger = cliLogger(config, io)
  return withDatabase(config, async (database) => {
    const keyRing = await openKeyRing(config, database, logger, io)
    const { kid, activatesAt } = await keyRing.rotate()
    await auditLog(database, logger).record({
      type: 'key.rotated',
      outcome: 'success',
      actorId: null,
      details: { kid, via: 'cli' },
    })
    io.stdout.write(
      `new signing key ${kid} (${config.SIGNING_ALG}) activates at ${timestamp(activatesAt)}` +
        ` (JWKS_MAX_AGE=${config.JWKS_MAX_AGE}s from now)\n`,
    )
    return EXIT_OK
  })
}

async function keysListCommand(args: string[], io: CliIo): Promise<number> {
  const { values } = options('keys list', () =>
    parseArgs({
      args,
      strict: true,
      options: { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
    }),
  )
  if (values.help) return help(io)
  const config = loadConfig(io.env)
  const logger = cliLogger(config, io)
  return withDatabase(config, async (database) => {
    const keys = await (await keyRing(config, database, logger)).list()
    const rows = keys.map((key) => ({
      kid: key.kid,
      alg: key.alg,
      state: key.state,
      created_at: key.createdAt.toISOString(),
      activates_at: key.activatesAt.toISOString(),
    }))
    if (values.json) {
      io.stdout.write(`${JSON.stringify(rows, null, 2)}\n`)
    } else if (rows.length === 0) {
      io.stdout.write('no signing keys yet (the server or "latchkey keys rotate" creates the first)\n')
    } else {
      io.stdout.write(
        table(
          ['KID', 'ALG', 'STATE', 'CREATED', 'ACTIVATES'],
          keys.map((key) => [
            key.kid,
            key.alg,
            key.state,
            timestamp(key.createdAt),
            timestamp(key.activatesAt),
          ]),
        ),
      )
    }
    return EXIT_OK
  })
}

async function keysImportCommand(args: string[], io: CliIo): Promise<number> {
  const { values } = options('keys import', () =>
    parseArgs({ args, strict: true, options: { help: { type: 'boolean', short: 'h' } } }),
  )
  if (values.help) return help(io)
  const config = loadConfig(io.env)
  if (io.stdin.isTTY)
    throw new UsageError(
      'keys import reads the private key from standard input: latchkey keys import < key.pem',
    )
  const material = await readAll(io.stdin, 1024 * 1024)
  if (material.trim() === '')
    throw new UsageError('keys import: standard input is empty (expected a PEM or JWK)')
  const logger = cliLogger(config, io)
  return withDatabase(config, async (database) => {
    const keyRing = await openKeyRing(config, database, logger, io)
    let imported: Awaited<ReturnType<KeyRing['import']>>
    try {
      imported = await keyRing.import(material)
    } catch (error) {
      throw new CommandFailed(`cannot import the key: ${describeError(error)}`)
    }
    await auditLog(database, logger).record({
      type: 'key.imported',
      outcome: 'success',
      actorId: null,
      details: { kid: imported.kid, alg: imported.alg, via: 'cli' },
    })
    io.stdout.write(
      `imported key ${imported.kid} (${imported.alg}) activates at ${timestamp(imported.activatesAt)}\n`,
    )
    return EXIT_OK
  })
}

async function usersCreateCommand(args: string[], io: CliIo): Promise<number> {
  const { values } = options('users create', () =>
    parseArgs({
      args,
      strict: true,
      options: {
        email: { type: 'string' },
        role: { type: 'string', multiple: true },
        verified: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }),
  )
  if (values.help) return help(io)
  const email = emailOption('users create', values.email)
  const roles = unique(['user', ...rolesOption('users create', values.role ?? [])])
  const config = loadConfig(io.env)

  if (io.stdin.isTTY)
    throw new UsageError(
      'users create reads the password from standard input, not a terminal: ' +
        `printf '%s\\n' "$PASSWORD" | latchkey users create --email …`,
    )
  const password = await readFirstLine(io.stdin, 64 * 1024)
  if (password === '') throw new UsageError('users create: no password on standard input')
  try {
    assertPasswordAcceptable(password, email)
  } catch (error) {
    if (!(error instanceof ProblemError) || error.code !== 'weak_password') throw error
    const reasons = (error.errors ?? []).map((reason) => `\n  - ${reason.message}`)
    throw new CommandFailed(`the password does not meet the policy:${reasons.join('')}`)
  }

  const logger = cliLogger(config, io)
  return withDatabase(config, async (database) => {
    const users = new UserRepository(database.db)
    if (await users.findByEmail(email))
      throw new CommandFailed(`a user with the email ${email} already exists`)
    const passwordHash = await new PasswordHasher({
      memoryKib: config.ARGON2_MEMORY_KIB,
      timeCost: config.ARGON2_TIME_COST,
      concurrency: config.ARGON2_CONCURRENCY,
      ...(config.PASSWORD_PEPPER ? { pepper: config.PASSWORD_PEPPER } : {}),
    }).hash(password)
    const user = await users.insert({
      email,
      passwordHash,
      roles,
      emailVerifiedAt: values.verified ? new Date() : null,
    })
    // Taken between the check and the insert: the unique index decided.
    if (!user) throw new CommandFailed(`a user with the email ${email} already exists`)
    await auditLog(database, logger).record({
      type: 'user.created',
      outcome: 'success',
      actorId: null,
      userId: user.id,
      details: { roles, via: 'cli' },
    })
    io.stdout.write(
      `created user ${user.id} ${user.email} with roles ${roles.join(', ')}` +
        `${values.verified ? ', email verified' : ', email not verified'}\n`,
    )
    return EXIT_OK
  })
}

async function usersGrantCommand(args: string[], io: CliIo): Promise<number> {
  const { values } = options('users grant', () =>
    parseArgs({
      args,
      strict: true,
      options: {
        email: { type: 'string' },
        role: { type: 'string', multiple: true },
        help: { type: 'boolean', short: 'h' },
      },
    }),
  )
  if (values.help) return help(io)
  const email = emailOption('users grant', values.email)
  if (!values.role || values.role.length === 0) throw new UsageError('users grant: --role is required')
  const roles = rolesOption('users grant', values.role)
  const config = loadConfig(io.env)
  const logger = cliLogger(config, io)
  return withDatabase(config, async (database) => {
    const users = new UserRepository(database.db)
    const user = await users.findByEmail(email)
    if (!user) throw new CommandFailed(`no user has the email ${email}`)
    const added = roles.filter((role) => !user.roles.includes(role))
    if (added.length === 0) {
      io.stdout.write(`${user.email} already has ${roles.join(', ')}; nothing changed\n`)
      return EXIT_OK
    }
    const granted = [...user.roles, ...added]
    await users.update(user.id, { roles: granted })
    const live = await updateLiveSessions(config, database, user.id, granted)
    await auditLog(database, logger).record({
      type: 'user.updated',
      outcome: 'success',
      actorId: null,
      userId: user.id,
      details: { roles_added: added, via: 'cli' },
    })
    io.stdout.write(
      `granted ${added.join(', ')} to ${user.email}` +
        (live === null ? '\n' : `; ${live} live session(s) get the new roles at their next refresh\n`),
    )
    return EXIT_OK
  })
}

// --- building blocks ------------------------------------------------------------------------

/** Runs `parse` (a strict parseArgs), turning its complaints into one-line usage errors. */
function options<T>(command: string, parse: () => T): T {
  try {
    return parse()
  } catch (error) {
    const code = (error as { code?: string }).code
    const message = error instanceof Error ? error.message : String(error)
    if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
      const option = /'([^']+)'/.exec(message)?.[1] ?? 'option'
      const hint = /^--?pass/i.test(option) ? '; the password is read from standard input' : ''
      throw new UsageError(`${command}: unknown option ${option}${hint}`)
    }
    // The argument itself is not repeated: it may be a password typed in the wrong place.
    if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL')
      throw new UsageError(`${command}: unexpected argument (this command takes options only)`)
    if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
      const option = /'(--?[a-z-]+)/i.exec(message)?.[1] ?? 'an option'
      throw new UsageError(
        /argument missing|ambiguous/.test(message)
          ? `${command}: ${option} needs a value`
          : `${command}: ${option} does not take a value`,
      )
    }
    throw error
  }
}

function help(io: CliIo): number {
  io.stdout.write(USAGE)
  return EXIT_OK
}

function emailOption(command: string, value: string | undefined): string {
  if (value === undefined) throw new UsageError(`${command}: --email is required`)
  const email = normalizeEmail(value)
  if (email.length < 3 || email.length > 254 || !/^[^\s@]+@[^\s@]+$/.test(email))
    throw new UsageError(`${command}: --email "${email}" is not an email address`)
  return email
}

function rolesOption(command: string, values: string[]): string[] {
  const known = Object.keys(ROLE_SCOPES)
  for (const role of values) {
    if (!Object.hasOwn(ROLE_SCOPES, role))
      throw new UsageError(`${command}: unknown role "${role}" (known roles: ${known.join(', ')})`)
  }
  return unique(values)
}

/** Logs go to stderr, at LOG_LEVEL when it is set and at `warn` otherwise. */
function cliLogger(config: Config, io: CliIo): Logger {
  return pino({ name: 'latchkey-cli', level: io.env.LOG_LEVEL ? config.LOG_LEVEL : 'warn' }, io.stderr)
}

/**
 * Gives a user's live sessions their new roles (refreshes read them from the session store).
 * With Redis configured, answers how many sessions were updated; on the embedded defaults the
 * sessions live in the server's memory, which stops with it, so there is nothing to update
 * (null).
 */
async function updateLiveSessions(
  config: Config,
  database: DatabaseHandle,
  userId: string,
  roles: string[],
): Promise<number | null> {
  if (!redisConfigured(config)) return null
  const redis = createRedisClient(config)
  try {
    await waitForRedis(redis)
    const store = new RedisSessionStore(redis, { prefix: config.REDIS_KEY_PREFIX })
    let updated = 0
    for (const id of await new SessionRepository(database.db).listOpenIds(userId, new Date()))
      if (await store.userChanged(id, roles)) updated++
    return updated
  } finally {
    redis.disconnect()
  }
}

/** Opens the database, brings its schema up to date, runs `work`, and always closes it. */
async function withDatabase(config: Config, work: (database: DatabaseHandle) => Promise<number>) {
  const database = await openDatabase({
    url: config.DATABASE_URL,
    dataDir: config.DATA_DIR,
    maxConnections: 2,
  })
  try {
    await database.migrate()
    return await work(database)
  } finally {
    await database.close()
  }
}

async function keyRing(config: Config, database: DatabaseHandle, logger: Logger): Promise<KeyRing> {
  return new KeyRing({
    repository: new SigningKeyRepository(database.db),
    encryptionKey: await keyEncryptionKey(config, logger),
    alg: config.SIGNING_ALG,
    clock: systemClock,
    jwksMaxAgeSeconds: config.JWKS_MAX_AGE,
    accessTokenTtlSeconds: config.ACCESS_TOKEN_TTL,
    // Timed rotation belongs to the servers; the command changes only what it was asked to.
    rotationIntervalSeconds: 0,
  })
}

/**
 * The key ring loaded for a change. On an empty table it first makes the key that signs now, as
 * the server's first start would: a rotated or imported key only signs after JWKS_MAX_AGE.
 */
async function openKeyRing(config: Config, database: DatabaseHandle, logger: Logger, io: CliIo) {
  const ring = await keyRing(config, database, logger)
  const empty = (await ring.list()).length === 0
  await ring.initialise()
  if (empty) {
    const [first] = await ring.list()
    if (first) io.stdout.write(`no signing key yet: created ${first.kid} (${first.alg}), signing now\n`)
  }
  return ring
}

function auditLog(database: DatabaseHandle, logger: Logger): AuditLog {
  return new AuditLog(new AuditRepository(database.db), logger)
}

/** `created_at` (folder millis) of the newest applied migration, or null on a fresh database. */
async function lastAppliedMigration(database: DatabaseHandle): Promise<number | null> {
  const exists = rowsOf(
    await database.db.execute(
      sql`select to_regclass('drizzle.__drizzle_migrations') is not null as "exists"`,
    ),
  )[0]
  if (!exists?.exists) return null
  const [row] = rowsOf(
    await database.db.execute(sql`select max(created_at)::text as "last" from drizzle.__drizzle_migrations`),
  )
  return row?.last == null ? null : Number(row.last)
}

async function migrationJournal(): Promise<{ tag: string; when: number }[]> {
  const journal = JSON.parse(await readFile(join(MIGRATIONS_FOLDER, 'meta', '_journal.json'), 'utf8')) as {
    entries: { tag: string; when: number }[]
  }
  return journal.entries
}

// postgres.js answers a row list, PGlite an object holding `rows`.
function rowsOf(result: unknown): Record<string, unknown>[] {
  if (Array.isArray(result)) return result as Record<string, unknown>[]
  return ((result as { rows?: Record<string, unknown>[] }).rows ?? []) as Record<string, unknown>[]
}

/** The first line of `stream` without its line ending; reads no further than that line. */
async function readFirstLine(stream: NodeJS.ReadableStream, limit: number): Promise<string> {
  const chunks: Buffer[] = []
  let length = 0
  for await (const chunk of stream) {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : Buffer.from(chunk)
    const newline = bytes.indexOf(0x0a)
    chunks.push(newline < 0 ? bytes : bytes.subarray(0, newline))
    length += bytes.length
    if (newline >= 0) break
    if (length > limit) throw new UsageError(`the first line of standard input is longer than ${limit} bytes`)
  }
  return Buffer.concat(chunks).toString('utf8').replace(/\r$/, '')
}

async function readAll(stream: NodeJS.ReadableStream, limit: number): Promise<string> {
  const chunks: Buffer[] = []
  let length = 0
  for await (const chunk of stream) {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : Buffer.from(chunk)
    chunks.push(bytes)
    length += bytes.length
    if (length > limit) throw new UsageError(`standard input is larger than ${limit} bytes`)
  }
  return Buffer.concat(chunks).toString('utf8')
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((title, column) =>
    Math.max(title.length, ...rows.map((row) => row[column]!.length)),
  )
  const line = (cells: string[]) =>
    cells
      .map((cell, column) => cell.padEnd(widths[column]!))
      .join('  ')
      .trimEnd()
  return `${[header, ...rows].map(line).join('\n')}\n`
}

function timestamp(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z')
}

function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`
}

function unique<T>(items: T[]): T[] {
  return [...new Set(items)]
}

/**
 * A one-line reason. A failed query's own message holds the SQL and its parameters (for a key,
 * the sealed private half), so only the database's answer is shown.
 */
function describeError(error: unknown): string {
  if (!(error instanceof Error)) return String(error)
  if (error.name === 'DrizzleQueryError' && error.cause instanceof Error) return error.cause.message
  if (error instanceof CommandFailed) return error.message
  return error.message.split('\n')[0] ?? error.name
}

function isEntryPoint(): boolean {
  const entry = process.argv[1]
  if (!entry) return false
  try {
    return import.meta.url === pathToFileURL(realpathSync(entry)).href
  } catch {
    return false
  }
}

if (isEntryPoint()) {
  runCli(process.argv.slice(2), {
    stdin: process.stdin,
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
  }).then((code) => {
    process.exitCode = code
  })
}
