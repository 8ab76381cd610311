import type { FastifyInstance } from 'fastify'
import type { ReceivedMessage } from './smtp.js'

/** A password the policy accepts. */
export const STRONG_PASSWORD = 'correct horse battery staple 42!'

/** Decodes the quoted-printable soft breaks and `=3D` of a raw message, enough to read links. */
export function readableMail(raw: string): string {
  return raw.replace(/=\r?\n/g, '').replace(/=3D/gi, '=')
}

/** The token of the first `{appUrl}{path}?token=...` link in a received message. */
export function tokenFromMail(message: ReceivedMessage, path: string): string {
  const match = readableMail(message.raw).match(new RegExp(`${path}\\?token=([A-Za-z0-9_%-]+)`))
  if (!match?.[1]) throw new Error(`no ${path} link in the message`)
  return decodeURIComponent(match[1])
}

/** Signs up, verifies through the emailed link and logs in; returns the token response. */
export async function signUpAndLogin(
  app: FastifyInstance,
  smtp: { waitFor(predicate: (message: ReceivedMessage) => boolean): Promise<ReceivedMessage> },
  email: string,
  password = STRONG_PASSWORD,
  login: Record<string, unknown> = {},
) {
  const signup = await app.inject({ method: 'POST', url: '/v1/auth/signup', payload: { email, password } })
  if (signup.statusCode !== 202) throw new Error(`signup answered ${signup.statusCode}: ${signup.body}`)
  const mail = await smtp.waitFor((message) => message.to.includes(email) && /verify-email/.test(message.raw))
  const token = tokenFromMail(mail, '/verify-email')
  const verify = await app.inject({ method: 'POST', url: '/v1/auth/verify-email', payload: { token } })
  if (verify.statusCode !== 204) throw new Error(`verify answered ${verify.statusCode}: ${verify.body}`)
  const response = await app.inject({
    method: 'POST',
    url: '/v1/auth/login',
    payload: { email, password, ...login },
  })
  if (response.statusCode !== 200) throw new Error(`login answered ${response.statusCode}: ${response.body}`)
  return response.json() as {
    access_token: string
    refresh_token: string
    expires_in: number
    scope: string
    token_type: string
  }
}
