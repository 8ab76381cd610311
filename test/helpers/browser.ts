import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { extname, resolve, sep } from 'node:path'
import { fileURLToPath } from 'node:url'
import { type Browser, type ConsoleMessage, chromium, type Page } from 'playwright-core'
import type { Test } from 'tap'

/** Debian's chromium: .ci/run installs it; playwright-core never downloads a browser. */
export const CHROMIUM_PATH = '/usr/bin/chromium'

/** The example single-page app that the browser tests drive. */
export const SPA_ROOT = fileURLToPath(new URL('../../examples/spa/', import.meta.url))

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]

/**
 * Whether the browser tests can run. Without chromium they are skipped on a developer's machine
 * (with the reason) but fail in CI, where .ci/run installs it: a browser test must never pass
 * there by not running.
 */
export function chromiumAvailable(t: Test): boolean {
  if (existsSync(CHROMIUM_PATH)) return true
  if (process.env.CI) {
    t.fail(`${CHROMIUM_PATH} is missing; .ci/run installs Debian's chromium before the tests`)
  } else {
    t.skip(`browser tests: ${CHROMIUM_PATH} is missing (apt-get install chromium)`, () => {})
  }
  return false
}

/** Launches headless chromium for one test file and closes it at teardown. */
export async function launchBrowser(t: Test): Promise<Browser> {
  const browser = await chromium.launch({
    executablePath: CHROMIUM_PATH,
    args: CHROMIUM_ARGS,
    timeout: 60_000,
  })
  t.teardown(() => browser.close())
  return browser
}

/**
 * What a page said that a test must see: Content Security Policy violations (reported on the
 * console) and uncaught script errors.
 */
export interface PageProblems {
  csp: string[]
  scriptErrors: string[]
}

/** Starts collecting a page's CSP violations and uncaught errors. */
export function watchPage(page: Page): PageProblems {
  const problems: PageProblems = { csp: [], scriptErrors: [] }
  page.on('console', (message: ConsoleMessage) => {
    if (/Content Security Policy/i.test(message.text())) problems.csp.push(message.text())
  })
  page.on('pageerror', (error) => problems.scriptErrors.push(String(error)))
  return problems
}

export interface StaticServer {
  /** `http://host:port`, the origin pages served here run in. */
  origin: string
  url(path: string): string
}

export interface StaticServerOptions {
  /** A folder to serve (`/` is its index.html). */
  root?: string
  /** Pages given inline, by path: served as text/html. */
  pages?: Record<string, string>
  /**
   * `localhost` listens on 127.0.0.1 and, where the machine has it, ::1 on the same port, since
   * a browser may try either; any other host is listened on as given.
   */
  host?: string
  /** Headers for every answer (a function, so they can name a port known only later). */
  headers?: () => Record<string, string>
}

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
}

function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise((resolveListen, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => {
      server.off('error', reject)
      resolveListen()
    })
  })
}

/** A tiny static file server (GET and HEAD only), closed at teardown. */
export async function startStaticServer(t: Test, options: StaticServerOptions = {}): Promise<StaticServer> {
  const root = options.root ? resolve(options.root) : undefined
  const host = options.host ?? 'localhost'

  async function answer(request: IncomingMessage, response: ServerResponse) {
    const headers = {
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      ...options.headers?.(),
    }
    const send = (status: number, type: string, body: string | Buffer) => {
      response.writeHead(status, {
        ...headers,
        'content-type': type,
        'content-length': Buffer.byteLength(body),
      })
      response.end(request.method === 'HEAD' ? undefined : body)
    }
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.writeHead(405, { allow: 'GET, HEAD' }).end()
      return
    }
    const path = decodeURIComponent(new URL(request.url ?? '/', 'http://static.test').pathname)
    const inline = options.pages?.[path]
    if (inline !== undefined) return send(200, CONTENT_TYPES['.html']!, inline)
    if (root) {
      const file = resolve(root, `.${path.endsWith('/') ? `${path}index.html` : path}`)
      if (file.startsWith(root + sep) && existsSync(file)) {
        const type = CONTENT_TYPES[extname(file)] ?? 'application/octet-stream'
        return send(200, type, await readFile(file))
      }
    }
    return send(404, 'text/plain; charset=utf-8', 'not found')
  }

  const handler = (request: IncomingMessage, response: ServerResponse) => {
    answer(request, response).catch(() => {
      if (!response.headersSent) response.writeHead(500)
      response.end()
    })
  }

  const servers: Server[] = []
  const ipv4 = createServer(handler)
  await listen(ipv4, 0, host === 'localhost' ? '127.0.0.1' : host)
  servers.push(ipv4)
  const { port } = ipv4.address() as AddressInfo
  if (host === 'localhost') {
    const ipv6 = createServer(handler)
    try {
      await listen(ipv6, port, '::1')
      servers.push(ipv6)
    } catch {
      // No IPv6 loopback here (or the port is taken on it): 127.0.0.1 alone serves.
    }
  }
  t.teardown(async () => {
    for (const server of servers) {
      server.closeAllConnections()
      await new Promise<void>((resolveClose) => server.close(() => resolveClose()))
    }
  })

  const origin = `http://${host.includes(':') ? `[${host}]` : host}:${port}`
  return { origin, url: (path) => new URL(path, origin).toString() }
}
