import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import type { FastifyRequest } from 'fastify'
import { hasMfa } from '../../domain/mfa.js'
import { ProblemError } from '../../errors.js'
import { problems } from '../../schemas/common.js'
import { noStore, requestContext } from '../context.js'

const bearer = [{ bearer: [] }]
const RecoveryCodes = Type.Object({
  recovery_codes: Type.Array(Type.String(), { minItems: 10, maxItems: 10, description: 'Shown once' }),
})

/** The signed-in user's second factor: TOTP enrolment, activation, recovery codes, turning it off. */
const mfaRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { users, mfa } = app.services

  const currentUser = async (request: FastifyRequest) => {
    const user = await users.findById(request.user.sub)
    if (!user || user.disabledAt)
      throw new ProblemError('invalid_token', { status: 401, detail: 'The account is not active' })
    return user
  }

  app.post(
    '/totp',
    {
      preHandler: [app.authenticate, app.requireScope('profile'), app.requireFreshAuth],
      schema: {
        tags: ['mfa'],
        summary: 'Start TOTP enrolment',
        description:
          'Answers a new secret, its otpauth:// URI (issuer MFA_ISSUER, account = email) and a QR code as SVG. The factor stays off until activated with a code. Needs a fresh login.',
        security: bearer,
        response: {
          200: Type.Object({ secret: Type.String(), otpauth_uri: Type.String(), qr_svg: Type.String() }),
          ...problems(400, 401, 403, 429, 503),
        },
      },
    },
    async (request, reply) => {
      noStore(reply)
      const user = await currentUser(request)
      if (hasMfa(user)) {
        throw new ProblemError('validation_failed', {
          detail: 'An authenticator app is already active; turn it off first',
        })
      }
      return mfa.enrol(user)
    },
  )

  app.post(
    '/totp/activate',
    {
      preHandler: [app.authenticate, app.requireScope('profile'), app.requireFreshAuth],
      schema: {
        tags: ['mfa'],
        summary: 'Activate TOTP with a code from the app',
        description:
          'A right code turns MFA on and answers ten single-use recovery codes, shown this once. A wrong code is 400 invalid_code.',
        security: bearer,
        body: Type.Object({ code: Type.String({ maxLength: 16 }) }, { additionalProperties: false }),
        response: { 200: RecoveryCodes, ...problems(400, 401, 403, 415, 429, 503) },
      },
    },
    async (request, reply) => {
      noStore(reply)
      const user = await currentUser(request)
      return { recovery_codes: await mfa.activate(user, request.body.code, requestContext(request)) }
    },
  )

  app.delete(
    '/totp',
    {
      preHandler: [app.authenticate, app.requireScope('profile'), app.requireFreshMfa],
      schema: {
        tags: ['mfa'],
        summary: 'Turn TOTP off',
        description:
          'Needs a fresh login that included the second factor (amr holds "mfa"): re-authenticate with a code first. Voids the recovery codes and emails the owner.',
        security: bearer,
        response: { 204: Type.Null(), ...problems(401, 403, 429, 503) },
      },
    },
    async (request, reply) => {
      const user = await currentUser(request)
      await mfa.disable(user, requestContext(request))
      return reply.code(204).send(null)
    },
  )

  app.post(
    '/recovery-codes',
    {
      preHandler: [app.authenticate, app.requireScope('profile'), app.requireFreshMfa],
      schema: {
        tags: ['mfa'],
        summary: 'Regenerate recovery codes',
        description: 'Needs a fresh login with the second factor. The old codes stop working.',
        security: bearer,
        response: { 200: RecoveryCodes, ...problems(400, 401, 403, 429, 503) },
      },
    },
    async (request, reply) => {
      noStore(reply)
      const user = await currentUser(request)
      return { recovery_codes: await mfa.regenerateRecoveryCodes(user) }
    },
  )
}

export default mfaRoutes
