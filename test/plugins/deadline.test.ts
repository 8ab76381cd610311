import t from 'tap'
import { build } from '../helpers/app.js'

t.test(
  'a request unanswered after REQUEST_TIMEOUT gets 503, and the late handler does no harm',
  async (t) => {
    const { app, logs } = await build(t, { REQUEST_TIMEOUT: '1' })
    let finished = false
    app.get('/slow-for-test', async () => {
      await new Promise((resolve) => setTimeout(resolve, 1800))
      finished = true
      return { late: true }
    })
    const started = performance.now()
    const response = await app.inject({ method: 'GET', url: '/slow-for-test' })
    const ms = performance.now() - started
    t.equal(response.statusCode, 503)
    t.equal(response.json().code, 'service_unavailable')
    t.equal(response.headers['retry-after'], '5')
    t.ok(ms >= 900 && ms < 1700, `answered at the deadline (${Math.round(ms)} ms)`)
    await new Promise((resolve) => setTimeout(resolve, 1200))
    t.ok(finished, 'the handler ran to its end')
    t.match(logs.text, /request deadline passed/)
    const fast = await app.inject({ method: 'GET', url: '/healthz' })
    t.equal(fast.statusCode, 200, 'other requests are not affected')
  },
)
