/**
 * The emails the service sends, each as plain text plus a minimal HTML alternative. The HTML is
 * self-contained (no images, fonts or stylesheets fetched from elsewhere) so that opening it
 * reveals nothing to a third party, and every interpolated value goes through `escapeHtml`.
 */

/** One rendered email, ready for `Mailer.send` once a recipient is added. */
export interface MailContent {
  subject: string
  text: string
  html: string
}

const PRODUCT = 'Latchkey'

/** Escapes the five characters that are significant in HTML text and attribute values. */
export function escapeHtml(value: string): string {
  return value
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;')
    .replaceAll("'", '&#39;')
}

/** The link a new user follows to prove they own the address. */
export function verifyEmail(input: { appUrl: string; token: string; ttlHours: number }): MailContent {
  const link = tokenLink(input.appUrl, '/verify-email', input.token)
  const expiry = `This link expires in ${plural(input.ttlHours, 'hour')}.`
  const ignore = 'If you did not create an account, you can ignore this email.'
  return {
    subject: `Confirm your email address for ${PRODUCT}`,
    text: lines('Confirm your email address by opening this link:', '', link, '', expiry, ignore),
    html: page('Confirm your email address', [
      paragraph('Confirm your email address by following this link:'),
      linkParagraph(link, 'Confirm my email address'),
      paragraph(expiry),
      paragraph(ignore),
    ]),
  }
}

/** Sent instead of a verification link when someone signs up with an address that has an account. */
export function accountExists(input: { appUrl: string }): MailContent {
  const signIn = `${base(input.appUrl)}/`
  const reset = `${base(input.appUrl)}/reset-password`
  const intro = 'Someone tried to create a new account with this email address, but you already have one.'
  const ignore = 'If that was not you, you can ignore this email: your account has not changed.'
  return {
    subject: `You already have a ${PRODUCT} account`,
    text: lines(
      intro,
      '',
      `If it was you, sign in instead: ${signIn}`,
      `If you forgot your password, reset it: ${reset}`,
      '',
      ignore,
    ),
    html: page('You already have an account', [
      paragraph(intro),
      `<p>If it was you, <a href="${escapeHtml(signIn)}">sign in</a> instead. If you forgot your password, <a href="${escapeHtml(reset)}">reset it</a>.</p>`,
      paragraph(ignore),
    ]),
  }
}

/** The link that lets the owner of the address choose a new password. */
export function passwordReset(input: { appUrl: string; token: string; ttlMinutes: number }): MailContent {
  const link = tokenLink(input.appUrl, '/reset-password', input.token)
  const expiry = `This link expires in ${plural(input.ttlMinutes, 'minute')} and can be used once.`
  const ignore =
    'If you did not ask to reset your password, you can ignore this email: your password has not changed.'
  return {
    subject: `Reset your ${PRODUCT} password`,
    text: lines('Choose a new password by opening this link:', '', link, '', expiry, ignore),
    html: page('Reset your password', [
      paragraph('Choose a new password by following this link:'),
      linkParagraph(link, 'Choose a new password'),
      paragraph(expiry),
      paragraph(ignore),
    ]),
  }
}

/** Tells the owner their password changed, so a takeover does not go unnoticed. */
export function passwordChanged(): MailContent {
  const body = 'The password of your account was just changed.'
  const warn = 'If you did not do this, reset your password now and review your account.'
  return {
    subject: `Your ${PRODUCT} password was changed`,
    text: lines(body, '', warn),
    html: page('Your password was changed', [paragraph(body), paragraph(warn)]),
  }
}

/** Tells the owner that two-step sign-in was turned on or off. */
export function mfaChanged(input: { enabled: boolean }): MailContent {
  const body = input.enabled
    ? 'Two-step sign-in with an authenticator app was turned on for your account.'
    : 'Two-step sign-in was turned off for your account: a password alone now signs you in.'
  const warn = 'If you did not do this, reset your password now and review your account.'
  const title = input.enabled ? 'Two-step sign-in is on' : 'Two-step sign-in is off'
  return {
    subject: `${title} for your ${PRODUCT} account`,
    text: lines(body, '', warn),
    html: page(title, [paragraph(body), paragraph(warn)]),
  }
}

/** Tells the owner that a recovery code was used to sign in. */
export function recoveryCodeUsed(input: { left: number; appUrl: string }): MailContent {
  const body = `A recovery code was used to sign in to your account. ${plural(input.left, 'recovery code')} left.`
  const warn = 'If this was not you, reset your password and generate new recovery codes.'
  return {
    subject: `A ${PRODUCT} recovery code was used`,
    text: lines(body, '', warn),
    html: page('A recovery code was used', [paragraph(body), paragraph(warn)]),
  }
}

/** Tells the owner that repeated failures slowed sign-ins to their account. */
export function signInAttemptsSlowed(input: { appUrl: string }): MailContent {
  const body =
    'Several sign-in attempts on your account failed in a row, so further attempts from the addresses that failed are being slowed down. You can still sign in as usual.'
  const warn = 'If this was not you, someone may be guessing your password: choose a new one.'
  const reset = `${base(input.appUrl)}/reset-password`
  return {
    subject: `Failed sign-in attempts on your ${PRODUCT} account`,
    text: lines(body, '', warn, reset),
    html: page('Failed sign-in attempts', [
      paragraph(body),
      paragraph(warn),
      linkParagraph(reset, 'Choose a new password'),
    ]),
  }
}

/** Tells the owner that their account was deleted. */
export function accountDeleted(): MailContent {
  const body = 'Your account and all its sessions were deleted at your request.'
  const warn = 'If you did not do this, contact the service that uses this sign-in.'
  return {
    subject: `Your ${PRODUCT} account was deleted`,
    text: lines(body, '', warn),
    html: page('Your account was deleted', [paragraph(body), paragraph(warn)]),
  }
}

/** Explains an unexpected sign-out after a refresh token was replayed, which may mean it was stolen. */
export function sessionEndedByReuse(): MailContent {
  const body =
    'A sign-in token of your account was used twice, which can mean that a copy of it was taken. As a precaution, that session was ended and you need to sign in again on that device.'
  const warn = 'If you do not recognise this, change your password.'
  return {
    subject: `A ${PRODUCT} session was ended as a precaution`,
    text: lines(body, '', warn),
    html: page('A session was ended as a precaution', [paragraph(body), paragraph(warn)]),
  }
}

function base(appUrl: string): string {
  return appUrl.replace(/\/+$/, '')
}

function tokenLink(appUrl: string, path: string, token: string): string {
  return `${base(appUrl)}${path}?token=${encodeURIComponent(token)}`
}

function plural(count: number, unit: string): string {
  return `${count} ${unit}${count === 1 ? '' : 's'}`
}

function lines(...parts: string[]): string {
  return `${parts.join('\n')}\n`
}

function paragraph(text: string): string {
  return `<p>${escapeHtml(text)}</p>`
}

// The URL is also shown as text, for clients that strip links and for readers who check where it leads.
function linkParagraph(href: string, label: string): string {
  const url = escapeHtml(href)
  return `<p><a href="${url}">${escapeHtml(label)}</a></p>\n<p>Or copy this address into your browser:<br>${url}</p>`
}

function page(title: string, body: string[]): string {
  return [
    '<!doctype html>',
    '<html lang="en">',
    '<head>',
    '<meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>${escapeHtml(title)}</title>`,
    '</head>',
    '<body>',
    `<h1>${escapeHtml(title)}</h1>`,
    ...body,
    '</body>',
    '</html>',
    '',
  ].join('\n')
}
