import { BROKEN_ERROR_CODES, NOT_SENT_ERROR_CODES } from '@meshlet/core';

/**
 * What a failed attempt's error says about whether the request left this process:
 *
 * - `not-sent`: the connection was never made (refused, unreachable, connect timeout, no
 *   address), its TLS handshake failed, or the instance's address and port make no URL.
 *   Nothing reached any server, so any method may be sent again elsewhere.
 * - `broken`: the connection broke before an answer (reset, closed by the other side).
 *   undici fails only the request that was being written or awaiting its answer when a
 *   socket closes (it re-dispatches the ones still queued), so such a request may have
 *   reached the server: only an idempotent one may be sent again (RFC 9110 §9.2.2).
 * - `stale`: broken, on a kept-alive connection that had carried an earlier exchange, before
 *   any byte of this attempt's answer: most likely the server closed the connection as idle
 *   just as the request was written (Node's best-known transient failure). Only a transport
 *   that watches its sockets can tell (the mesh's own: `markStaleConnection`); it is broken
 *   all the same for the methods that may be sent again (undici wrote the request: it cannot
 *   know whether the server read it), but the executor may send it once more to an instance
 *   already tried, on a new connection, when no untried instance is left.
 * - `other`: anything else (a timeout, an abort, a bug): says nothing either way.
 *
 * Checked against real sockets (test/send-failure-sockets.test.ts): a closed port gives
 * `ECONNREFUSED` with `syscall: 'connect'` — fetch wraps it as the `cause` of a TypeError,
 * undici's `request` throws it as is — and so does a keep-alive socket whose server was
 * killed (undici sees the close and reconnects); a server that dies or drops the
 * connection with the request in flight gives undici's `UND_ERR_SOCKET` ("other side closed").
 * An origin that is no URL (`http://[[::1]]:80`, a port of 70000, user info) fails in
 * undici's parseOrigin with Node's `ERR_INVALID_URL`, before any connection; the mesh sends
 * the path apart from the origin, so that error is always the instance's. undici writes a
 * request only once the TLS handshake is done (its connector waits for `secureConnect`), so
 * the errors of a failed handshake are not-sent: a plain HTTP server behind `secure=true`
 * (`ERR_SSL_WRONG_VERSION_NUMBER`), a certificate the client does not trust or that names
 * another host, a server that refuses the handshake. Alerts a server can send once the
 * request may be written (TLS 1.3 `certificate required`, a bad record) are not among them.
 */
export type SendFailure = 'not-sent' | 'broken' | 'stale' | 'other';

/** Errors a transport marked as its kept-alive connection's going stale (see SendFailure), each with whether it is `repeated`. */
const staleErrors = new WeakMap<object, boolean>();

/**
 * Marks `err` as the failure of a request written on a kept-alive connection that had
 * carried an earlier exchange, before any byte of its answer (SendFailure `stale`). For
 * a transport that watches its sockets: the mark is on the error object, wherever it is
 * nested (`cause`) by the time the executor classifies it.
 *
 * `repeated`: the instance's kept-alive connections broke so before, and none of them has
 * answered since. A stale failure that does not go again to its instance (it goes to
 * another one, or ends the call: a POST) counts on the instance's breaker only when
 * repeated: the idle-close race hits a healthy instance now and then, between answers on
 * its kept-alive connections, while an instance that breaks every reused connection never
 * answers on one. Default false: a transport that cannot tell leaves a lone race uncounted.
 */
export function markStaleConnection(err: object, repeated = false): void {
  staleErrors.set(err, repeated);
}

/** System calls that fail before a request byte is written. */
const NOT_SENT_SYSCALLS: ReadonlySet<string> = new Set(['connect', 'getaddrinfo']);

/** How deep into `cause` / AggregateError `errors` to look: fetch nests one level, happy eyeballs one more. */
const MAX_DEPTH = 4;

function classify(err: unknown, depth: number): SendFailure {
  if (err === null || typeof err !== 'object' || depth > MAX_DEPTH) return 'other';
  const e = err as { code?: unknown; syscall?: unknown; cause?: unknown; errors?: unknown };
  if (staleErrors.has(err)) return 'stale';
  if (typeof e.syscall === 'string' && NOT_SENT_SYSCALLS.has(e.syscall)) return 'not-sent';
  if (typeof e.code === 'string') {
    if (NOT_SENT_ERROR_CODES.has(e.code)) return 'not-sent';
    if (BROKEN_ERROR_CODES.has(e.code)) return 'broken';
  }
  // Happy eyeballs (net's autoSelectFamily) fails with an AggregateError of one error per
  // address: not sent only when no address took the request.
  if (Array.isArray(e.errors) && e.errors.length > 0) {
    let broken = false;
    let other = false;
    for (const inner of e.errors.slice(0, 8)) {
      const v = classify(inner, depth + 1);
      if (v === 'broken' || v === 'stale') broken = true;
      else if (v === 'other') other = true;
    }
    return broken ? 'broken' : other ? 'other' : 'not-sent';
  }
  return e.cause === undefined ? 'other' : classify(e.cause, depth + 1);
}

/** The mark markStaleConnection put on `err` or an error nested in it: undefined when none. */
function staleMark(err: unknown, depth: number): boolean | undefined {
  if (err === null || typeof err !== 'object' || depth > MAX_DEPTH) return undefined;
  const mark = staleErrors.get(err);
  if (mark !== undefined) return mark;
  const e = err as { cause?: unknown; errors?: unknown };
  if (Array.isArray(e.errors))
    for (const inner of e.errors.slice(0, 8)) {
      const m = staleMark(inner, depth + 1);
      if (m !== undefined) return m;
    }
  return staleMark(e.cause, depth + 1);
}

/**
 * True when a `stale` failure was marked repeated (markStaleConnection): it counts on its
 * instance's breaker even when the call does not go again to that instance.
 */
export function staleRepeated(err: unknown): boolean {
  return staleMark(err, 0) === true;
}

/** Classifies a failed attempt's error; see SendFailure. */
export function sendFailureOf(err: unknown): SendFailure {
  return classify(err, 0);
}
