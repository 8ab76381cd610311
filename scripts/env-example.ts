import { writeFile } from 'node:fs/promises'
import { describeConfig } from '../src/config.js'

// `npx tsx scripts/env-example.ts`: regenerates .env.example from the configuration schema.
const lines = [
  '# Latchkey configuration. Every variable, its default, and what it does.',
  '# Durations are in seconds; rates are N/second|minute|hour|day.',
  '# With NODE_ENV=production the server refuses to start without DATABASE_URL, REDIS_URL,',
  '# KEY_ENCRYPTION_KEY, SMTP_URL and an https ISSUER, and on unsafe settings (CORS_ORIGINS=*).',
  '',
]
for (const { name, default: value, description } of describeConfig()) {
  if (description) lines.push(`# ${description}`)
  const text = value === undefined ? '' : typeof value === 'string' ? value : JSON.stringify(value)
  const shown = /\s/.test(text) ? `"${text}"` : text
  lines.push(`${value === undefined || shown === '' || shown === '[]' ? '# ' : ''}${name}=${shown}`)
  lines.push('')
}
await writeFile(new URL('../.env.example', import.meta.url), lines.join('\n'))
