import { ZxcvbnFactory } from '@zxcvbn-ts/core'
import * as zxcvbnCommon from '@zxcvbn-ts/language-common'
import * as zxcvbnEn from '@zxcvbn-ts/language-en'
import type { FieldError } from '../errors.js'

/**
 * The password policy (NIST SP 800-63B style): length and guessability, no composition rules.
 * Passwords are compared and hashed in NFKC form so that visually identical input typed on
 * different keyboards or input methods is the same password; they are never trimmed or
 * case-folded, because spaces and case are part of what the user chose.
 */

const MIN_LENGTH = 12
const MAX_LENGTH = 256
const MIN_SCORE = 3
const MIN_EMAIL_PART = 3
const PATH = '/password'

let estimator: ZxcvbnFactory | undefined

// Building the ranked dictionaries takes tens of milliseconds, so it is done once, on first use.
function zxcvbn(): ZxcvbnFactory {
  estimator ??= new ZxcvbnFactory({
    dictionary: { ...zxcvbnCommon.dictionary, ...zxcvbnEn.dictionary },
    graphs: zxcvbnCommon.adjacencyGraphs,
    translations: zxcvbnEn.translations,
    maxLength: MAX_LENGTH,
  })
  return estimator
}

/** NFKC form of a password: the one form that is checked, hashed and verified. */
export function normalizePassword(p: string): string {
  return p.normalize('NFKC')
}

/** Reasons the password is refused for the account with this email; an empty list means acceptable. */
export function checkPassword(password: string, email: string): FieldError[] {
  const normalized = normalizePassword(password)
  // Code points, not UTF-16 units: an emoji is one character to the person typing it.
  const length = [...normalized].length
  if (length > MAX_LENGTH) return [refuse(`must be at most ${MAX_LENGTH} characters`)]

  const errors: FieldError[] = []
  if (length < MIN_LENGTH) errors.push(refuse(`must be at least ${MIN_LENGTH} characters`))
  const { parts, builtFrom } = emailParts(email)
  if (builtFrom(normalized)) errors.push(refuse('must not contain your email address'))
  if (errors.length > 0) return errors

  const result = zxcvbn().check(normalized, parts)
  if (result.score >= MIN_SCORE) return []
  errors.push(refuse('is too common or easy to guess'))
  if (result.feedback.warning) errors.push(refuse(result.feedback.warning))
  return errors
}

function refuse(message: string): FieldError {
  return { path: PATH, message }
}

// The pieces of an address an attacker who knows it would try first.
function emailParts(email: string): { parts: string[]; builtFrom: (password: string) => boolean } {
  const address = email.normalize('NFKC').toLowerCase()
  const at = address.lastIndexOf('@')
  const local = at < 0 ? address : address.slice(0, at)
  const domain = at < 0 ? '' : address.slice(at + 1)
  // `alice+shop@` is still alice: plus-addressing tags do not make the base name secret.
  const base = local.split('+')[0] ?? local
  const localWords = local.split(/[._+-]+/)
  const labels = domain.split('.')
  const parts = unique([local, base, ...localWords, ...labels, address].filter((part) => part.length > 0))
  const needles = unique([local, base].filter((part) => part.length >= MIN_EMAIL_PART))
  return {
    parts,
    builtFrom: (password) => {
      const lower = password.toLowerCase()
      return lower === address || needles.some((needle) => lower.includes(needle))
    },
  }
}

function unique(items: string[]): string[] {
  return [...new Set(items)]
}
