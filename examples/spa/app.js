// Latchkey example single-page app, in browser mode: the refresh token lives in the API's
// HttpOnly `__Host-refresh_token` cookie, which this page can neither read nor leak; the access
// token lives in this module's memory only (never localStorage or sessionStorage), so a reload
// or a new tab gets a fresh one through the cookie.

const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]'])
/** How long before the access token runs out the page asks for the next one (at most). */
const REFRESH_LEAD_SECONDS = 60
/** After a failed background refresh (network, 429, 5xx), when to try again. */
const RETRY_SECONDS = 15

const API = apiBase()

/** The access token and when it runs out (ms since the epoch). Memory only. */
let accessToken = null
let accessTokenExpiresAt = 0
let refreshTimer
/** The one refresh in flight: concurrent callers share it instead of rotating twice. */
let refreshInFlight = null
/** The MFA challenge between the password step and the code step. */
let pendingMfaToken = null

const $ = (id) => document.getElementById(id)
const views = ['signed-out', 'second-factor', 'signed-in']
// Tells this app's other tabs about sign-in and sign-out (they share the cookie, not the token).
const tabs = 'BroadcastChannel' in window ? new BroadcastChannel('latchkey-example') : null

/**
 * The API's base URL: the `latchkey-api` meta tag, or `?api=` for development and tests. A link
 * could otherwise make this page send someone's password anywhere, so `?api=` is honoured only
 * when both this page and that API are on this machine (loopback).
 */
function apiBase() {
  const meta = document.querySelector('meta[name="latchkey-api"]')?.getAttribute('content')
  const override = new URLSearchParams(location.search).get('api')
  if (override && LOOPBACK_HOSTS.has(location.hostname)) {
    try {
      const url = new URL(override)
      if (/^https?:$/.test(url.protocol) && LOOPBACK_HOSTS.has(url.hostname)) return withoutSlash(url)
    } catch {
      // Not a URL: fall back to the meta tag.
    }
  }
  return withoutSlash(new URL(meta || location.origin, location.href))
}

function withoutSlash(url) {
  return `${url.origin}${url.pathname}`.replace(/\/+$/, '')
}

/**
 * One call to the API. `withCookie` sends the refresh cookie (`credentials: 'include'`, which is
 * also what lets the browser store the cookie an answer sets) and the `X-Requested-With` header
 * that the API demands of every cookie-authenticated request. Other calls never send cookies.
 */
async function request(path, { method = 'GET', body, bearer, withCookie = false } = {}) {
  const headers = { Accept: 'application/json' }
  if (body !== undefined) headers['Content-Type'] = 'application/json'
  if (bearer) headers.Authorization = `Bearer ${bearer}`
  if (withCookie) headers['X-Requested-With'] = 'XMLHttpRequest'
  const response = await fetch(`${API}${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: withCookie ? 'include' : 'omit',
    cache: 'no-store',
    referrerPolicy: 'no-referrer',
  })
  let data = null
  if (response.status !== 204) {
    try {
      data = await response.json()
    } catch {
      data = null
    }
  }
  return { ok: response.ok, status: response.status, data, retryAfter: response.headers.get('retry-after') }
}

function keepAccessToken(tokens) {
  accessToken = tokens.access_token
  accessTokenExpiresAt = Date.now() + tokens.expires_in * 1000
  scheduleRefresh(tokens.expires_in)
}

function forgetAccessToken() {
  clearTimeout(refreshTimer)
  accessToken = null
  accessTokenExpiresAt = 0
}

/** Asks for the next access token shortly before this one runs out. */
function scheduleRefresh(expiresInSeconds) {
  clearTimeout(refreshTimer)
  const lead = Math.min(REFRESH_LEAD_SECONDS, expiresInSeconds / 5)
  refreshTimer = setTimeout(refreshInBackground, Math.max(1, expiresInSeconds - lead) * 1000)
}

async function refreshInBackground() {
  const outcome = await refresh()
  if (outcome === 'signed-out') showSignedOut('Your session has ended. Please sign in again.')
  // Keep the current token while it lasts and try again soon.
  else if (outcome === 'unavailable') refreshTimer = setTimeout(refreshInBackground, RETRY_SECONDS * 1000)
}

/**
 * A new access token through the refresh cookie (the API rotates the cookie as it answers).
 * Resolves to 'ok', 'signed-out' (no session, or it ended) or 'unavailable' (network, 429, 5xx).
 * Only one refresh is ever in flight: a second caller gets the first one's promise, so one
 * cookie is never spent twice by this tab.
 */
export function refresh() {
  if (!refreshInFlight) {
    refreshInFlight = rotate().finally(() => {
      refreshInFlight = null
    })
  }
  return refreshInFlight
}

async function rotate() {
  let result
  try {
    result = await request('/v1/auth/token', {
      method: 'POST',
      body: { grant_type: 'refresh_token' },
      withCookie: true,
    })
  } catch {
    return 'unavailable'
  }
  if (result.ok && typeof result.data?.access_token === 'string') {
    keepAccessToken(result.data)
    return 'ok'
  }
  if (result.status === 429 || result.status >= 500) return 'unavailable'
  forgetAccessToken()
  return 'signed-out'
}

/**
 * A call with the access token: refreshed first when it has run out, and once more on a 401 (the
 * token may have expired in flight). Resolves to null when there is no session any more.
 */
async function withAccessToken(path, options = {}) {
  if (!accessToken || Date.now() >= accessTokenExpiresAt - 5000) {
    const outcome = await refresh()
    if (outcome === 'signed-out') return null
    if (outcome === 'unavailable') throw new Error('unavailable')
  }
  const sent = accessToken
  let result = await request(path, { ...options, bearer: sent })
  if (result.status === 401) {
    // Another call may have refreshed meanwhile; otherwise refresh now.
    if (accessToken === sent) {
      const outcome = await refresh()
      if (outcome === 'signed-out') return null
      if (outcome === 'unavailable') throw new Error('unavailable')
    }
    result = await request(path, { ...options, bearer: accessToken })
    if (result.status === 401) {
      forgetAccessToken()
      return null
    }
  }
  return result
}

// --- The page -------------------------------------------------------------------------------

function show(view, { focus = true } = {}) {
  for (const name of views) $(name).hidden = name !== view
  if (view && focus) $(view).querySelector('h1')?.focus()
}

function setStatus(text) {
  $('status').textContent = text
}

function showError(text) {
  const box = $('error')
  box.textContent = text
  box.hidden = !text
}

function describe(result) {
  const data = result.data ?? {}
  const code = data.code ?? data.error
  switch (code) {
    case 'invalid_credentials':
      return 'The email address or password is not right.'
    case 'email_not_verified':
      return 'Confirm your email address first: follow the link in the email we sent you.'
    case 'account_disabled':
      return 'This account is disabled.'
    case 'invalid_code':
      return 'That code is not right. Try again.'
    case 'rate_limited':
      return `Too many attempts. Try again in ${result.retryAfter ?? 'a few'} seconds.`
    case 'validation_failed':
      return (data.errors ?? []).map((error) => error.message).join(' ') || data.detail || 'Check the form.'
    default:
      return data.detail ?? data.error_description ?? data.title ?? `The server answered ${result.status}.`
  }
}

const UNREACHABLE = 'The sign-in service cannot be reached right now. Try again in a moment.'

function showSignedOut(message = '') {
  forgetAccessToken()
  pendingMfaToken = null
  setStatus(message)
  show('signed-out')
}

function renderProfile(me) {
  const values = {
    email: me.email,
    email_verified: me.email_verified ? 'Yes' : 'No',
    roles: (me.roles ?? []).join(', '),
    mfa: me.mfa?.totp ? `On (${me.mfa.recovery_codes_left} recovery codes left)` : 'Off',
    created_at: new Date(me.created_at).toLocaleString(),
    id: me.id,
  }
  for (const [field, value] of Object.entries(values)) {
    // textContent only: nothing the API answers is ever parsed as HTML.
    document.querySelector(`[data-field="${field}"]`).textContent = value
  }
}

async function showProfile() {
  let result
  try {
    result = await withAccessToken('/v1/me')
  } catch {
    showError(UNREACHABLE)
    return
  }
  if (!result) {
    showSignedOut('Your session has ended. Please sign in again.')
    return
  }
  if (!result.ok) {
    showError(describe(result))
    return
  }
  renderProfile(result.data)
  setStatus('')
  show('signed-in')
}

/** What a successful sign-in step does: keep the token, tell the other tabs, show the profile. */
async function signedIn(tokens) {
  keepAccessToken(tokens)
  pendingMfaToken = null
  tabs?.postMessage('signed-in')
  await showProfile()
}

async function busy(form, work) {
  const controls = form.querySelectorAll('button, input')
  for (const control of controls) control.disabled = true
  try {
    await work()
  } finally {
    for (const control of controls) control.disabled = false
  }
}

async function onSignIn(event) {
  event.preventDefault()
  const form = event.currentTarget
  showError('')
  await busy(form, async () => {
    setStatus('Signing in…')
    let result
    try {
      result = await request('/v1/auth/login', {
        method: 'POST',
        body: {
          email: form.elements.email.value,
          password: form.elements.password.value,
          remember: form.elements.remember.checked,
          use_cookie: true,
        },
        withCookie: true,
      })
    } catch {
      setStatus('')
      showError(UNREACHABLE)
      return
    }
    if (result.ok) {
      form.elements.password.value = ''
      await signedIn(result.data)
      return
    }
    setStatus('')
    if (result.status === 403 && result.data?.code === 'mfa_required') {
      form.elements.password.value = ''
      pendingMfaToken = result.data.mfa_token
      show('second-factor')
      $('code').focus()
      return
    }
    showError(describe(result))
  })
}

async function onSecondFactor(event) {
  event.preventDefault()
  const form = event.currentTarget
  const value = form.elements.code.value.trim()
  showError('')
  await busy(form, async () => {
    const proof = /^\d{6}$/.test(value) ? { code: value } : { recovery_code: value }
    let result
    try {
      result = await request('/v1/auth/mfa/verify', {
        method: 'POST',
        body: { mfa_token: pendingMfaToken, ...proof },
        withCookie: true,
      })
    } catch {
      showError(UNREACHABLE)
      return
    }
    form.elements.code.value = ''
    if (result.ok) {
      await signedIn(result.data)
      return
    }
    if (result.data?.code === 'invalid_code') {
      showError(describe(result))
      return
    }
    // The challenge expired or was used up: start again from the password.
    showSignedOut()
    showError(describe(result))
  })
}

async function onSignOut(event) {
  const button = event.currentTarget
  button.disabled = true
  showError('')
  clearTimeout(refreshTimer)
  // A refresh in flight replaces the cookie: end the session it leaves behind.
  if (refreshInFlight) await refreshInFlight
  let result
  try {
    result = await request('/v1/auth/logout', { method: 'POST', body: {}, withCookie: true })
  } catch {
    result = null
  }
  button.disabled = false
  if (!result?.ok) {
    // Still signed in: the session (and its cookie) lives on, so keep refreshing.
    if (accessToken) scheduleRefresh(Math.max(1, (accessTokenExpiresAt - Date.now()) / 1000))
    showError(result ? describe(result) : UNREACHABLE)
    return
  }
  tabs?.postMessage('signed-out')
  showSignedOut('You have signed out.')
}

tabs?.addEventListener('message', (event) => {
  if (event.data === 'signed-out' && accessToken) showSignedOut('You have signed out in another tab.')
  if (event.data === 'signed-in' && !accessToken) {
    refresh().then((outcome) => (outcome === 'ok' ? showProfile() : undefined))
  }
})

// Background tabs may run timers late: catch up when the page is seen again.
document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'visible' && accessToken && Date.now() >= accessTokenExpiresAt - 5000) {
    refreshInBackground()
  }
})

$('sign-in-form').addEventListener('submit', onSignIn)
$('second-factor-form').addEventListener('submit', onSecondFactor)
$('second-factor-cancel').addEventListener('click', () => showSignedOut())
$('sign-out').addEventListener('click', onSignOut)

/** On load: a silent refresh through the cookie decides which view to show. */
async function start() {
  setStatus('Checking your session…')
  const outcome = await refresh()
  if (outcome === 'ok') {
    await showProfile()
    return
  }
  setStatus('')
  show('signed-out', { focus: false })
  if (outcome === 'unavailable') showError(UNREACHABLE)
}

start()
