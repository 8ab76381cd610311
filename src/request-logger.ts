import type { FastifyBaseLogger } from 'fastify'
import type { Bindings, ChildLoggerOptions, Level, Logger } from 'pino'

type LogArguments = Parameters<FastifyBaseLogger['info']>

/**
 * A request's logger (`request.log`), made on first use. Fastify asks for a pino child per
 * request, and pino serialises the child's bindings (the request id, through the redaction
 * paths) as it makes it: a few per cent of a short request's event-loop time. Most requests
 * write nothing at the configured level, so the child is made only when a line is written at
 * an enabled level, or when something asks for it (`child`, a level change).
 *
 * The lines written are the same as with an eager child: same bindings, same options, made
 * from the same parent.
 */
export class RequestLogger implements FastifyBaseLogger {
  #child: FastifyBaseLogger | undefined

  constructor(
    private readonly parent: Logger,
    private readonly bindings: Bindings,
    private readonly options: ChildLoggerOptions,
  ) {}

  #logger(): FastifyBaseLogger {
    this.#child ??= this.parent.child(this.bindings, this.options)
    return this.#child
  }

  /** pino's check, without making the child. */
  isLevelEnabled(level: Level): boolean {
    return ((this.#child as Logger | undefined) ?? this.parent).isLevelEnabled(level)
  }

  get level(): string {
    return this.#child?.level ?? this.parent.level
  }

  set level(level: string) {
    this.#logger().level = level
  }

  #write(level: Level, args: LogArguments): void {
    if (this.isLevelEnabled(level)) this.#logger()[level](...args)
  }

  fatal(...args: LogArguments): void {
    this.#write('fatal', args)
  }
  error(...args: LogArguments): void {
    this.#write('error', args)
  }
  warn(...args: LogArguments): void {
    this.#write('warn', args)
  }
  info(...args: LogArguments): void {
    this.#write('info', args)
  }
  debug(...args: LogArguments): void {
    this.#write('debug', args)
  }
  trace(...args: LogArguments): void {
    this.#write('trace', args)
  }
  silent(): void {}

  child(bindings: Bindings, options?: ChildLoggerOptions): FastifyBaseLogger {
    return this.#logger().child(bindings, options)
  }
}

/**
 * Fastify's `childLoggerFactory`: a lazy child for pino loggers without per-route options, an
 * eager one otherwise (a route's own level or serializers, or a logger that is not pino).
 */
export function requestLogger(
  logger: FastifyBaseLogger,
  bindings: Bindings,
  options: ChildLoggerOptions,
): FastifyBaseLogger {
  const pino = logger as Partial<Logger>
  if (
    typeof pino.isLevelEnabled !== 'function' ||
    options.level !== undefined ||
    options.serializers !== undefined
  )
    return logger.child(bindings, options)
  return new RequestLogger(logger as Logger, bindings, options)
}
