import { Writable } from 'node:stream'
import Fastify from 'fastify'
import pino from 'pino'
import t from 'tap'
import { RequestLogger, requestLogger } from '../src/request-logger.js'

/** A pino logger into memory, counting the children made from it. */
function capture(level: string) {
  const lines: Record<string, unknown>[] = []
  const stream = new Writable({
    write(chunk, _encoding, callback) {
      for (const line of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(line))
      callback()
    },
  })
  const logger = pino({ level, redact: { paths: ['secret'], censor: '[REDACTED]' } }, stream)
  let children = 0
  const child = logger.child
  // Not bound: pino's children inherit this method, and their own children must stay theirs.
  logger.child = function (this: typeof logger, ...args: Parameters<typeof child>) {
    children++
    return child.apply(this, args)
  } as typeof logger.child
  return { logger, lines, children: () => children }
}

async function appWith(level: string) {
  const log = capture(level)
  const app = Fastify({
    loggerInstance: log.logger,
    childLoggerFactory: requestLogger,
    disableRequestLogging: true,
  })
  app.get('/quiet', async (request) => {
    request.log.debug('not at this level')
    return { ok: true }
  })
  app.get('/loud', async (request) => {
    request.log.warn({ secret: 'hunter2', n: 1 }, 'something to say')
    return { ok: true }
  })
  app.get('/louder', async (request) => {
    request.log.level = 'debug'
    request.log.debug('now at debug')
    request.log.child({ step: 'inner' }).info('from a grandchild')
    return { ok: true }
  })
  t.teardown(() => app.close())
  await app.ready()
  return { app, ...log }
}

t.test('a request that writes nothing makes no child logger', async (t) => {
  const { app, lines, children } = await appWith('info')
  const before = children()
  for (let i = 0; i < 5; i++) t.equal((await app.inject({ method: 'GET', url: '/quiet' })).statusCode, 200)
  t.equal(children(), before, 'no child made')
  t.same(lines, [])
})

t.test(
  'a line written at an enabled level has the request id and the redaction of an eager child',
  async (t) => {
    const { app, lines, children } = await appWith('info')
    const before = children()
    const answer = await app.inject({ method: 'GET', url: '/loud', headers: { 'x-request-id': 'abc' } })
    t.equal(answer.statusCode, 200)
    t.equal(children(), before + 1, 'made on the first line')
    t.equal(lines.length, 1)
    t.match(lines[0], { level: 40, msg: 'something to say', n: 1, secret: '[REDACTED]', reqId: String })
  },
)

t.test('a level set on the request logger, and its children, work as on a pino child', async (t) => {
  const { app, lines } = await appWith('info')
  t.equal((await app.inject({ method: 'GET', url: '/louder' })).statusCode, 200)
  t.same(
    lines.map((line) => line.msg),
    ['now at debug', 'from a grandchild'],
  )
  t.equal(lines[1]!.step, 'inner')
  t.ok(
    lines.every((line) => typeof line.reqId === 'string'),
    'request id',
    { lines },
  )
  t.equal((await app.inject({ method: 'GET', url: '/quiet' })).statusCode, 200)
  t.equal(lines.length, 2, "another request keeps the logger's own level", { lines })
})

t.test('route options and non-pino loggers get an eager child', async (t) => {
  const { logger } = capture('info')
  t.ok(requestLogger(logger, { reqId: 'a' }, {}) instanceof RequestLogger)
  t.notOk(requestLogger(logger, { reqId: 'a' }, { level: 'debug' }) instanceof RequestLogger)
  const plain = {
    child: () => plain,
    info() {},
    warn() {},
    error() {},
    debug() {},
    fatal() {},
    trace() {},
    silent() {},
    level: 'info',
  }
  t.equal(requestLogger(plain, { reqId: 'a' }, {}), plain)
  const lazy = new RequestLogger(logger, { reqId: 'a' }, {})
  t.equal(lazy.level, 'info', 'the level before any child is made is the parent one')
  t.ok(lazy.isLevelEnabled('warn'))
  t.notOk(lazy.isLevelEnabled('debug'))
})
