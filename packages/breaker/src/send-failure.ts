/**
 * What a failed attempt's error says about whether the request left this process:
 *
 * - `not-sent`: the connection was never made (refused, unreachable, connect timeout, no
 *   address). Nothing reached any server, so any method may be sent again elsewhere.
 * - `broken`: the connection broke before an answer (reset, closed by the other side).
 *   undici fails only the request that was being written or awaiting its answer when a
 *   socket closes (it re-dispatches the ones still queued), so such a request may have
 *   reached the server: only an idempotent one may be sent again (RFC 9110 §9.2.2).
 * - `other`: anything else (a timeout, an abort, a bug): says nothing either way.
 *
 * Checked against real sockets (test/send-failure-sockets.test.ts): a closed port gives
 * `ECONNREFUSED` with `syscall: 'connect'` — fetch wraps it as the `cause` of a TypeError,
 * undici's `request` throws it as is — and so does a keep-alive socket whose server was
 * killed (undici sees the close and reconnects); a server that dies or drops the
 * connection with the request in flight gives undici's `UND_ERR_SOCKET` ("other side closed").
 */
export type SendFailure = 'not-sent' | 'broken' | 'other';

/** Error codes of a connect that did not happen. */
const NOT_SENT_CODES: ReadonlySet<string> = new Set([
  'ECONNREFUSED',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'EADDRNOTAVAIL',
  'ENOTFOUND',
  'EAI_AGAIN',
  // undici's ConnectTimeoutError: the TCP (or TLS) connect took too long.
  'UND_ERR_CONNECT_TIMEOUT',
]);

/** System calls that fail before a request byte is written. */
const NOT_SENT_SYSCALLS: ReadonlySet<string> = new Set(['connect', 'getaddrinfo']);

/** A connection that broke once the request may have been written. */
const BROKEN_CODES: ReadonlySet<string> = new Set(['UND_ERR_SOCKET', 'ECONNRESET', 'EPIPE', 'ECONNABORTED']);

/** How deep into `cause` / AggregateError `errors` to look: fetch nests one level, happy eyeballs one more. */
const MAX_DEPTH = 4;

function classify(err: unknown, depth: number): SendFailure {
  if (err === null || typeof err !== 'object' || depth > MAX_DEPTH) return 'other';
  const e = err as { code?: unknown; syscall?: unknown; cause?: unknown; errors?: unknown };
  if (typeof e.syscall === 'string' && NOT_SENT_SYSCALLS.has(e.syscall)) return 'not-sent';
  if (typeof e.code === 'string') {
    if (NOT_SENT_CODES.has(e.code)) return 'not-sent';
    if (BROKEN_CODES.has(e.code)) return 'broken';
  }
  // Happy eyeballs (net's autoSelectFamily) fails with an AggregateError of one error per
  // address: not sent only when no address took the request.
  if (Array.isArray(e.errors) && e.errors.length > 0) {
    let broken = false;
    let other = false;
    for (const inner of e.errors.slice(0, 8)) {
      const v = classify(inner, depth + 1);
      if (v === 'broken') broken = true;
      else if (v === 'other') other = true;
    }
    return broken ? 'broken' : other ? 'other' : 'not-sent';
  }
  return e.cause === undefined ? 'other' : classify(e.cause, depth + 1);
}

/** Classifies a failed attempt's error; see SendFailure. */
export function sendFailureOf(err: unknown): SendFailure {
  return classify(err, 0);
}
