import closeWithGrace from 'close-with-grace'
import { buildApp } from './app.js'
import { ConfigError, loadConfig } from './config.js'

/** The process: read configuration, build the app, listen, and close gracefully on signals. */
async function main(): Promise<void> {
  let config: ReturnType<typeof loadConfig>
  try {
    config = loadConfig(process.env)
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`latchkey: ${error.message}\n`)
      process.exit(78)
    }
    throw error
  }

  const app = await buildApp(config)

  // SIGTERM/SIGINT: stop accepting, finish in-flight requests, close pools, exit within bounds.
  closeWithGrace({ delay: config.SHUTDOWN_TIMEOUT * 1000 }, async ({ signal, err }) => {
    if (err) app.log.error({ err }, 'closing after an uncaught error')
    else app.log.info({ signal }, 'shutting down')
    await app.close()
  })

  await app.listen({ port: config.PORT, host: config.HOST })
  app.log.info(
    {
      issuer: config.ISSUER,
      database: app.services.database.kind,
      sessionStore: app.services.store.kind,
    },
    'latchkey ready',
  )
}

main().catch((error: unknown) => {
  process.stderr.write(
    `latchkey: failed to start: ${error instanceof Error ? error.message : String(error)}\n`,
  )
  process.exit(1)
})
