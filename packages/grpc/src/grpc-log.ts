import { setLogger } from '@grpc/grpc-js';
// grpc-js exports setLogger but not getLogger; its logging module has both (no `exports` map keeps it out).
import { getLogger } from '@grpc/grpc-js/build/src/logging.js';
import type { Logger } from '@meshlet/core';

/** grpc-js's own log lines, through the mesh's logger: a per-request code, throttled. */
export const GRPC_LOG_CODE = 'MESHLET_GRPC_LOG';

/** A grpc-js log line is cut here: some quote what a peer sent. */
export const GRPC_LOG_LINE_MAX = 200;

/**
 * grpc-js's logger when this module loaded: its default, unless the application set one in
 * code that ran before @meshlet/grpc was imported.
 */
const GRPC_DEFAULT_LOGGER = getLogger();

/** The loggers of the live meshes that route grpc-js's lines, first routed first. */
const live = new Set<Logger>();

/** The grpc-js logger this module installed, while it is installed. */
let installed: Partial<Console> | undefined;

/**
 * Routes grpc-js's log lines (process-global: `grpc.setLogger`) through `logger`, under
 * `MESHLET_GRPC_LOG`, each line cut (`grpcLogLine`): grpc-js logs, per call, every metadata
 * value it refuses, with the value, to stderr, unthrottled. grpc-js has one logger for the
 * process and does not say which call a line is about: its lines go to the first routed
 * logger still routed (`unrouteGrpcLog` when its mesh closes), and with none left grpc-js's
 * default is back. Only over grpc-js's default logger: a logger the application set before
 * stays, and one it sets after wins.
 */
export function routeGrpcLog(logger: Logger): void {
  live.add(logger);
  if (installed !== undefined || getLogger() !== GRPC_DEFAULT_LOGGER) return;
  const line =
    (level: 'error' | 'info' | 'debug') =>
    (message?: unknown): void =>
      live
        .values()
        .next()
        .value?.[level]('grpc-js', { code: GRPC_LOG_CODE, line: grpcLogLine(message) });
  installed = { error: line('error'), info: line('info'), debug: line('debug') };
  setLogger(installed);
}

/**
 * Stops routing grpc-js's lines through `logger` (its mesh closed): they go to the next
 * routed logger, or, with none left, to grpc-js's default logger again (unless the
 * application has set one of its own since).
 */
export function unrouteGrpcLog(logger: Logger): void {
  if (!live.delete(logger) || live.size > 0 || installed === undefined) return;
  if (getLogger() === installed) setLogger(GRPC_DEFAULT_LOGGER);
  installed = undefined;
}

/** metadata.ts's line for a value it refuses: "Failed to add metadata entry <key>: <value>. <why, quoting the value>". */
const METADATA_ENTRY = /^(Failed to add metadata entry [^:]*):/;
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g;

/** A grpc-js log line as logged: a refused metadata value left out, control characters replaced, at most GRPC_LOG_LINE_MAX characters. */
export function grpcLogLine(message: unknown): string {
  let text = typeof message === 'string' ? message : String(message);
  const entry = METADATA_ENTRY.exec(text.slice(0, GRPC_LOG_LINE_MAX + 64));
  if (entry !== null) text = `${entry[1]}: value refused (not shown)`;
  if (text.length > GRPC_LOG_LINE_MAX) text = `${text.slice(0, GRPC_LOG_LINE_MAX)}…`;
  return text.replace(CONTROL, '\ufffd');
}
