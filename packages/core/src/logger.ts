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
