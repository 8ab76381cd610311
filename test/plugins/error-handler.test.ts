import t from 'tap'
import { DependencyUnavailableError } from '../../src/errors.js'
import { build } from '../helpers/app.js'
import { testRedisUrl } from '../helpers/services.js'

t.test('a 5xx says nothing internal; the log keeps the cause', async (t) => {
  const { app, logs } = await build(t)
  app.get('/boom', async () => {
    throw new Error('internal detail: relation users does not exist at 10.0.0.7')
  })
  app.get('/outage', async () => {
    throw new DependencyUnavailableError('database', new Error('connect ECONNREFUSED'))
  })
  const boom = await app.inject({ method: 'GET', url: '/boom' })
  t.equal(boom.statusCode, 500)
  t.equal(boom.headers['content-type'], 'application/problem+json; charset=utf-8')
  t.same(Object.keys(boom.json()).sort(), ['code', 'request_id', 'status', 'title', 'type'])
  t.equal(boom.json().code, 'internal_error')
  t.notMatch(boom.body, /internal detail|10\.0\.0\.7|relation/)
  t.match(logs.text, /internal detail/, 'the cause is logged')

  const outage = await app.inject({ method: 'GET', url: '/outage' })
  t.equal(outage.statusCode, 503)
  t.equal(outage.json().code, 'service_unavailable')
  t.equal(outage.headers['retry-after'], '1')
  t.notMatch(outage.body, /ECONNREFUSED/)
})

t.test(
  'Redis down: refresh answers 503 temporarily_unavailable, readiness names redis',
  { skip: !testRedisUrl },
  async (t) => {
    const { app } = await build(t)
    await app.ready()
    app.services.redis?.disconnect()
    const refresh = await app.inject({
      method: 'POST',
      url: '/v1/auth/token',
      payload: {
        grant_type: 'refresh_token',
        refresh_token: `${'0'.repeat(8)}-0000-4000-8000-${'0'.repeat(12)}.${'a'.repeat(43)}`,
      },
    })
    t.equal(refresh.statusCode, 503)
    t.equal(refresh.json().error, 'temporarily_unavailable')
    t.equal(refresh.headers['retry-after'], '1')
    t.equal(refresh.headers['cache-control'], 'no-store')
    const ready = await app.inject({ method: 'GET', url: '/readyz' })
    t.equal(ready.statusCode, 503)
    t.same(ready.json().checks, { database: 'up', redis: 'down' })
    t.match(ready.json().detail, /redis/)
  },
)
