import { randomUUID } from 'node:crypto'
import type { Clock } from './clock.js'
import { epochSeconds } from './clock.js'
import { signCompact } from './jws.js'
import type { KeyRing } from './key-ring.js'

/** The claims of an RFC 9068 access token as this API issues and checks them. */
export interface AccessTokenClaims {
  iss: string
  sub: string
  aud: string
  exp: number
  iat: number
  nbf: number
  jti: string
  client_id: string
  scope: string
  roles: string[]
  sid: string
  auth_time: number
  amr: string[]
}

export interface AccessTokenSettings {
  issuer: string
  audience: string
  clientId: string
  ttlSeconds: number
}

export interface AccessTokenSubject {
  userId: string
  sessionId: string
  scope: string
  roles: string[]
  /** Seconds since the epoch. */
  authTime: number
  amr: string[]
}

/** Issues RFC 9068 access tokens with the key ring's current signing key. */
export class AccessTokenIssuer {
  constructor(
    private readonly keyRing: KeyRing,
    private readonly settings: AccessTokenSettings,
    private readonly clock: Clock,
  ) {}

  /** Signs an access token for `subject`; returns it with its lifetime in seconds. */
  async issue(subject: AccessTokenSubject): Promise<{ token: string; expiresIn: number }> {
    const now = epochSeconds(this.clock.now())
    const token = await signCompact(this.keyRing.signingKey(), 'at+jwt', {
      iss: this.settings.issuer,
      sub: subject.userId,
      aud: this.settings.audience,
      exp: now + this.settings.ttlSeconds,
      iat: now,
      nbf: now,
      jti: randomUUID(),
      client_id: this.settings.clientId,
      scope: subject.scope,
      roles: subject.roles,
      sid: subject.sessionId,
      auth_time: subject.authTime,
      amr: subject.amr,
    } satisfies AccessTokenClaims)
    return { token, expiresIn: this.settings.ttlSeconds }
  }
}
