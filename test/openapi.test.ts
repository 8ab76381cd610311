import { readFile } from 'node:fs/promises'
import t from 'tap'
import { parse } from 'yaml'
import { generateOpenApi } from '../src/openapi.js'

t.test('openapi.yaml is what the route schemas generate (run `npm run openapi`)', async (t) => {
  const committed = await readFile(new URL('../openapi.yaml', import.meta.url), 'utf8')
  const generated = await generateOpenApi()
  t.equal(committed, generated)
})

t.test('the document describes the contract', async (t) => {
  const document = parse(await generateOpenApi())
  t.equal(document.openapi, '3.1.0')
  for (const path of [
    '/.well-known/jwks.json',
    '/.well-known/oauth-authorization-server',
    '/healthz',
    '/readyz',
    '/v1/auth/signup',
    '/v1/auth/verify-email',
    '/v1/auth/verify-email/resend',
    '/v1/auth/login',
    '/v1/auth/token',
    '/v1/auth/revoke',
    '/v1/auth/logout',
    '/v1/me',
    '/v1/me/sessions',
    '/v1/me/sessions/{id}',
    '/v1/me/identities/{provider}',
    '/v1/auth/oidc/{provider}/authorize',
    '/v1/auth/oidc/{provider}/callback',
    '/v1/auth/oidc/{provider}/id-token',
    '/v1/admin/users',
    '/v1/admin/users/{id}',
    '/v1/admin/users/{id}/sessions',
    '/v1/admin/keys/rotate',
    '/v1/admin/audit-events',
    '/metrics',
  ]) {
    t.ok(document.paths[path], `${path} is documented`)
  }
  t.notOk(document.paths['/docs'], 'the docs UI is not part of the API document')
  t.ok(document.components.schemas.Problem, 'Problem is a shared component')
  t.same(Object.keys(document.paths['/v1/auth/token'].post.requestBody.content).sort(), [
    'application/json',
    'application/x-www-form-urlencoded',
  ])
  t.same(document.paths['/v1/me'].get.security, [{ bearer: [] }])
})

t.test('openapi.yaml passes Spectral’s OpenAPI ruleset, warnings included', async (t) => {
  const { execFile } = await import('node:child_process')
  const root = new URL('..', import.meta.url)
  const result = await new Promise<{ code: number | null; output: string }>((resolve) => {
    execFile(
      'node_modules/.bin/spectral',
      ['lint', 'openapi.yaml', '--ruleset', '.spectral.yaml', '--fail-severity', 'warn', '--format', 'text'],
      { cwd: root, timeout: 90_000 },
      (error, stdout, stderr) =>
        resolve({ code: error ? (error.code as number) : 0, output: stdout + stderr }),
    )
  })
  t.equal(result.code, 0, result.output)
})

t.test('openapi.yaml validates with @readme/openapi-parser', async (t) => {
  const { validate } = await import('@readme/openapi-parser')
  const result = await validate(new URL('../openapi.yaml', import.meta.url).pathname)
  t.same(result, { valid: true, warnings: [], specification: 'OpenAPI' })
})
