import { NewestLive } from './newest-live.js';
import { type ThrottledLoggerOptions, throttledLogger } from './throttled-logger.js';

export type LogFields = Readonly<Record<string, unknown>>;

/** Logging as a port: plug in pino, winston or anything with these four methods. */
export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';
const rank: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

/** One JSON line per entry on stderr, at `level` and above. */
export function consoleLogger(level: LogLevel = 'info', name = 'meshlet'): Logger {
  const write = (at: Exclude<LogLevel, 'silent'>, message: string, fields?: LogFields) => {
    if (rank[at] < rank[level]) return;
    process.stderr.write(`${JSON.stringify({ level: at, name, msg: message, ...fields })}\n`);
  };
  return {
    debug: (m, f) => write('debug', m, f),
    info: (m, f) => write('info', m, f),
    warn: (m, f) => write('warn', m, f),
    error: (m, f) => write('error', m, f),
  };
}

export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

/** A logger that keeps entries in memory; for tests and for reading back what was said. */
export class MemoryLogger implements Logger {
  readonly entries: { level: Exclude<LogLevel, 'silent'>; message: string; fields: LogFields | undefined }[] = [];
  debug(message: string, fields?: LogFields) {
    this.entries.push({ level: 'debug', message, fields });
  }
  info(message: string, fields?: LogFields) {
    this.entries.push({ level: 'info', message, fields });
  }
  warn(message: string, fields?: LogFields) {
    this.entries.push({ level: 'warn', message, fields });
  }
  error(message: string, fields?: LogFields) {
    this.entries.push({ level: 'error', message, fields });
  }
}

/**
 * A component that can log through the mesh that uses it (ConsulRegistry, ConsulKvStore,
 * Config): one built without a logger of its own logs through the last logger adopted, so
 * that its conditions follow the mesh's logger and level and are counted in
 * `meshlet_conditions_total`; one given a logger at construction keeps it.
 */
export interface AdoptsLogger {
  adoptLogger(logger: Logger): void;
  /**
   * Optional: gives back `logger` (its mesh closed): the one adopted before it, if still
   * open, or the component's own logs again. A component without it keeps the last adopted.
   */
  releaseLogger?(logger: Logger): void;
}

/** Whether `component` can take the mesh's logger (AdoptsLogger). */
export const adoptsLogger = (component: unknown): component is AdoptsLogger =>
  typeof component === 'object' && component !== null && typeof (component as AdoptsLogger).adoptLogger === 'function';

/**
 * A component's logger: `own` when one was given at construction (never replaced), else
 * `fallback` until a logger is adopted, then the newest one adopted and not given back
 * (releaseLogger: its mesh closed).
 *
 * `throttle` names the codes the component can log once per answer or entry (anyone who can
 * write to Consul decides how often): written to `own` or `fallback` at most once per code
 * per interval (throttledLogger). Entries go to an adopted logger, the mesh's, unthrottled:
 * it throttles these codes itself (they are in PER_REQUEST_CODES) after counting each in
 * `meshlet_conditions_total`, which a throttle here would undercount.
 */
export class AdoptableLogger implements Logger, AdoptsLogger {
  /** The logger given at construction, else the fallback (throttled when asked). */
  readonly #base: Logger;
  readonly #own: boolean;
  /** The loggers adopted and not given back, newest first: several meshes may share a component. */
  readonly #adopted = new NewestLive<Logger>();
  constructor(own: Logger | undefined, fallback: Logger, throttle?: ThrottledLoggerOptions) {
    const given = own ?? fallback;
    this.#base = throttle === undefined ? given : throttledLogger(given, throttle);
    this.#own = own !== undefined;
  }
  adoptLogger(logger: Logger): void {
    if (!this.#own) this.#adopted.add(logger);
  }
  releaseLogger(logger: Logger): void {
    this.#adopted.remove(logger);
  }
  #to(): Logger {
    return this.#own ? this.#base : (this.#adopted.newest() ?? this.#base);
  }
  debug(message: string, fields?: LogFields) {
    this.#to().debug(message, fields);
  }
  info(message: string, fields?: LogFields) {
    this.#to().info(message, fields);
  }
  warn(message: string, fields?: LogFields) {
    this.#to().warn(message, fields);
  }
  error(message: string, fields?: LogFields) {
    this.#to().error(message, fields);
  }
}

/** The log levels a mesh's `logLevel` (`meshlet.log.level`) takes. */
export const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];

/** `logger` without the entries below `level`. */
export function atLevel(logger: Logger, level: LogLevel): Logger {
  const at =
    (entry: Exclude<LogLevel, 'silent'>, write: (message: string, fields?: LogFields) => void) => (message: string, fields?: LogFields) => {
      if (rank[entry] >= rank[level]) write(message, fields);
    };
  return {
    debug: at('debug', (m, f) => logger.debug(m, f)),
    info: at('info', (m, f) => logger.info(m, f)),
    warn: at('warn', (m, f) => logger.warn(m, f)),
    error: at('error', (m, f) => logger.error(m, f)),
  };
}
