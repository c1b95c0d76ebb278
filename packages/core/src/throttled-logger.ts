import { type Clock, systemClock } from './clock.js';
import type { LogFields, Logger } from './logger.js';

/**
 * Codes of conditions a single request can cause (a bad header, a dropped tag, a limiter
 * that failed for one decision). A client controls how often they happen, so they are
 * logged at most once per code per interval; everything else is logged as it comes.
 */
export const PER_REQUEST_CODES: readonly string[] = [
  'MESHLET_TAG_DROPPED',
  'MESHLET_BAD_TAG_HEADER',
  'MESHLET_NO_TAG_SCOPES',
  'MESHLET_RATELIMIT_FAILED',
  // A request a rate limit rule refused (429), named by its rule.
  'MESHLET_RATE_LIMITED',
  'MESHLET_RATELIMIT_SHADOW',
  // A request without a usable value of a rate limit rule's `by` tags: counted against its shared bucket.
  'MESHLET_RATELIMIT_TAG_ABSENT',
  'MESHLET_AUTH_SHADOW',
  'MESHLET_ROUTE_SHADOW',
  // A request without the tag of a route rule's `stickyBy`: its group drawn at random.
  'MESHLET_ROUTE_STICKY_TAG_ABSENT',
  // A call whose route rule chose a group with no instance to route to, sent to its fallback or the default route.
  'MESHLET_ROUTE_GROUP_EMPTY',
  // A failed call not retried because the destination's retry budget was spent: one per call.
  'MESHLET_RETRY_BUDGET',
  'MESHLET_FAULT_SHADOW',
  'MESHLET_BREAKER_SHADOW',
  // An enforced breaker's opening and closing: under flapping, or many instances, one per call.
  'MESHLET_BREAKER_OPENED',
  'MESHLET_BREAKER_CLOSED',
  'MESHLET_INSTANCE_COUNT_UNKNOWN',
  'MESHLET_ATTEMPT_OBSERVER_FAILED',
  'MESHLET_CONTEXT_FAILED',
  'MESHLET_ADMISSION_FAILED',
  // A request target with a dot segment or a backslash, refused 400 (requestPath).
  'MESHLET_BAD_REQUEST_TARGET',
  // A request path longer than REQUEST_PATH_MAX_LENGTH, refused 414.
  'MESHLET_REQUEST_PATH_TOO_LONG',
  // A header left out of an outbound call (gRPC metadata refuses its value, a trace header not valid W3C).
  'MESHLET_HEADER_DROPPED',
  // A call to a new destination past `destinations.max`, every one followed having a call in flight.
  'MESHLET_TOO_MANY_DESTINATIONS',
  // grpc-js's own log lines (@meshlet/grpc routes them here): a refused metadata value is one per call.
  'MESHLET_GRPC_LOG',
  // A Consul answer refused or corrected (@meshlet/registry's ConsulClient): one per answer,
  // and a proxy or a broken agent can make every answer one.
  'MESHLET_CONSUL_BAD_INDEX',
  'MESHLET_CONSUL_BAD_ANSWER',
  'MESHLET_CONSUL_ANSWER_TOO_LARGE',
  // A catalog entry that cannot be called, left out: anyone who can register decides how many.
  'MESHLET_REGISTRY_BAD_INSTANCE',
];

/** Default interval between two lines of one per-request code. */
export const DEFAULT_LOG_INTERVAL_MS = 60_000;
/** Distinct codes counted; codes are constants in the code, this bounds a mistake. */
const MAX_CODES = 256;
const OTHER_CODE = 'other';

export interface ThrottledLoggerOptions {
  readonly clock?: Clock;
  /** Default DEFAULT_LOG_INTERVAL_MS (60 s). */
  readonly intervalMs?: number;
  /** The codes throttled. Default PER_REQUEST_CODES. */
  readonly codes?: readonly string[];
}

/** A Logger that also counts every coded entry, and throttles the per-request codes. */
export interface ThrottledLogger extends Logger {
  /** Entries seen per `code` since start, logged or not: what the metrics export. */
  readonly counts: ReadonlyMap<string, number>;
  /** Entries of throttled codes not written (counted in `counts` all the same). */
  readonly suppressed: number;
  /**
   * A logger that writes to `logger`, throttled as this one is (its clock, interval and
   * codes; its own lines and `suppressed`), its entries counted in this one's `counts`: a
   * second sink of the same conditions (a router's logger of the app's own), one count.
   */
  writingTo(logger: Logger): ThrottledLogger;
}

interface CodeState {
  /** When the last line of this code was written. */
  at: number;
  /** Entries since then that were not written. */
  skipped: number;
}

/**
 * Wraps `logger` so that the log stays bounded whatever clients send: an entry whose `code`
 * is a per-request code is written at most once per `intervalMs`, and the line written
 * carries `count`, the entries of that code since the previous line (this one included).
 * Entries in between are only counted. Every entry with a `code` is counted in `counts`,
 * for the metrics. The clock is injected: tests move time, not wait for it.
 */
export function throttledLogger(logger: Logger, options: ThrottledLoggerOptions = {}): ThrottledLogger {
  return throttledInto(logger, options, new Map());
}

/** throttledLogger counting into `counts`: its own map, or the one of the logger it was made from (writingTo). */
function throttledInto(logger: Logger, options: ThrottledLoggerOptions, counts: Map<string, number>): ThrottledLogger {
  const clock = options.clock ?? systemClock;
  const intervalMs = options.intervalMs ?? DEFAULT_LOG_INTERVAL_MS;
  const throttled = new Set(options.codes ?? PER_REQUEST_CODES);
  const states = new Map<string, CodeState>();
  let suppressed = 0;

  const entry =
    (write: (message: string, fields?: LogFields) => void) =>
    (message: string, fields?: LogFields): void => {
      const code = fields?.code;
      if (typeof code !== 'string') {
        write(message, fields);
        return;
      }
      const key = counts.has(code) || counts.size < MAX_CODES ? code : OTHER_CODE;
      counts.set(key, (counts.get(key) ?? 0) + 1);
      if (!throttled.has(code)) {
        write(message, fields);
        return;
      }
      const now = clock.now();
      const state = states.get(code);
      if (state !== undefined && now - state.at < intervalMs) {
        state.skipped++;
        suppressed++;
        return;
      }
      const count = (state?.skipped ?? 0) + 1;
      states.set(code, { at: now, skipped: 0 });
      write(message, { ...fields, count, intervalMs });
    };

  return {
    debug: entry((m, f) => logger.debug(m, f)),
    info: entry((m, f) => logger.info(m, f)),
    warn: entry((m, f) => logger.warn(m, f)),
    error: entry((m, f) => logger.error(m, f)),
    counts,
    get suppressed() {
      return suppressed;
    },
    writingTo: (other) => throttledInto(other, options, counts),
  };
}
