import { execFileSync } from 'node:child_process'
import { cpSync, readdirSync } from 'node:fs'
import { join, relative } from 'node:path'
import t from 'tap'

t.test(
  'drizzle/ holds a migration for every change of src/storage/schema.ts (run `npm run db:generate`)',
  async (t) => {
    const out = join(t.testdir(), 'drizzle')
    cpSync(new URL('../drizzle', import.meta.url), out, { recursive: true })
    const before = readdirSync(out).sort()
    const output = execFileSync(
      process.execPath,
      [
        'node_modules/drizzle-kit/bin.cjs',
        'generate',
        '--dialect',
        'postgresql',
        '--schema',
        './src/storage/schema.ts',
        '--out',
        // drizzle-kit reads --out relative to the working directory.
        relative(process.cwd(), out),
      ],
      { encoding: 'utf8', timeout: 60_000 },
    )
    t.same(readdirSync(out).sort(), before, 'generating against the committed migrations adds nothing')
    t.match(output, /No schema changes/)
  },
)
