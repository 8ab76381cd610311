import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { Email, Password, problems, TokenResponse } from '../../schemas/common.js'
import { answerTokens, countsAsLogin, requestContext, shedWhenHashingIsFull } from '../context.js'

const LoginRequest = Type.Object(
  {
    email: Email,
    password: Password,
    remember: Type.Optional(Type.Boolean({ description: 'Remember me: 7 days idle / 30 days absolute' })),
    use_cookie: Type.Optional(
      Type.Boolean({
        description:
          'Browser mode: the refresh token is set as the __Host-refresh_token cookie (HttpOnly; Secure; SameSite=Strict) and left out of the body',
      }),
    ),
    scope: Type.Optional(
      Type.String({
        maxLength: 512,
        description: 'Space-separated; narrower than the roles grant, never wider',
      }),
    ),
  },
  {
    additionalProperties: false,
    examples: [{ email: 'ada@example.com', password: 'correct horse battery staple 42!', remember: true }],
  },
)

/** Password sign-in. */
const loginRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { accounts, hasher } = app.services

  app.post(
    '/login',
    {
      onRequest: [countsAsLogin('password'), shedWhenHashingIsFull(hasher), app.rateLimits.loginIp],
      preHandler: app.rateLimits.loginAccount,
      schema: {
        tags: ['sign-in'],
        summary: 'Sign in with email and password',
        description:
          'Unknown email and wrong password answer the same 401 invalid_credentials. email_not_verified and account_disabled are told only to a caller who gave the right password.\n\nPasswords are checked a few at a time; the other logins wait their turn. One that has waited ARGON2_QUEUE_TIMEOUT (2 s by default), or that finds ARGON2_MAX_QUEUE logins waiting, gets 503 service_unavailable with Retry-After.',
        body: LoginRequest,
        response: { 200: TokenResponse, ...problems(400, 401, 403, 415, 429, 503) },
      },
    },
    async (request, reply) => {
      const { email, password, remember, scope, use_cookie: useCookie } = request.body
      const issued = await accounts.login({
        email,
        password,
        remember,
        scope,
        useCookie,
        context: requestContext(request),
      })
      return answerTokens(app, reply, issued, useCookie === true)
    },
  )
}

export default loginRoutes
