import { buildApp } from './app.js'
import { loadConfig } from './config.js'
import type { Services } from './services.js'

/**
 * The OpenAPI document, generated from the route schemas. Routes only keep references to the
 * services at registration, so the document is built without opening any storage.
 */
export async function generateOpenApi(): Promise<string> {
  const config = loadConfig({
    NODE_ENV: 'test',
    LOG_LEVEL: 'silent',
    ISSUER: 'https://auth.example.com',
    KEY_ENCRYPTION_KEY: '0'.repeat(64),
  })
  const app = await buildApp(config, { services: {} as Services })
  await app.ready()
  const document = app.swagger({ yaml: true })
  await app.close()
  return document
}
