import { status as Status } from '@grpc/grpc-js';

/**
 * The HTTP status that stands for a gRPC status code where the mesh's HTTP-shaped parts
 * read one (breaker failure classes, metrics): the mapping of google.rpc.Code's
 * documentation (the one grpc-gateway uses). UNAVAILABLE is 503 and INTERNAL 500, so a
 * breaker rule's default failure class `5xx` counts what a gRPC client would call a server
 * failure; INVALID_ARGUMENT or NOT_FOUND (4xx) are the caller's and trip nothing.
 */
const TO_HTTP: readonly number[] = (() => {
  const t: number[] = [];
  t[Status.OK] = 200;
  t[Status.CANCELLED] = 499;
  t[Status.UNKNOWN] = 500;
  t[Status.INVALID_ARGUMENT] = 400;
  t[Status.DEADLINE_EXCEEDED] = 504;
  t[Status.NOT_FOUND] = 404;
  t[Status.ALREADY_EXISTS] = 409;
  t[Status.PERMISSION_DENIED] = 403;
  t[Status.RESOURCE_EXHAUSTED] = 429;
  t[Status.FAILED_PRECONDITION] = 400;
  t[Status.ABORTED] = 409;
  t[Status.OUT_OF_RANGE] = 400;
  t[Status.UNIMPLEMENTED] = 501;
  t[Status.INTERNAL] = 500;
  t[Status.UNAVAILABLE] = 503;
  t[Status.DATA_LOSS] = 500;
  t[Status.UNAUTHENTICATED] = 401;
  return t;
})();

export function httpStatusOf(code: number): number {
  return TO_HTTP[code] ?? 500;
}

/**
 * The gRPC code for an HTTP status the mesh produced itself (an injected fault, a breaker
 * fallback): gRPC's own mapping for HTTP responses that carry no grpc-status
 * (doc/http-grpc-status-mapping.md in grpc/grpc), with 429/502/503/504 as UNAVAILABLE. A 2xx
 * from a fallback is no gRPC answer: UNKNOWN.
 */
export function grpcCodeOf(httpStatus: number): number {
  switch (httpStatus) {
    case 400:
      return Status.INTERNAL;
    case 401:
      return Status.UNAUTHENTICATED;
    case 403:
      return Status.PERMISSION_DENIED;
    case 404:
      return Status.UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
      return Status.UNAVAILABLE;
    default:
      return Status.UNKNOWN;
  }
}

/** The last code gRPC defines (UNAUTHENTICATED); 0 to it are the codes there are. */
const LAST_CODE = Status.UNAUTHENTICATED;

/**
 * A status as read from a peer, with a code gRPC does not define (past 16, negative, not a
 * number: grpc-js passes the `grpc-status` number on as it is) as UNKNOWN, its number kept in
 * the details — as grpc-java's `Status.fromCodeValue` and grpc-go do. What reads the code
 * (metrics' `error_type`, span names, breakers) then sees one of the 17, whatever a peer sends.
 */
export function knownStatus<S extends { code: number; details: string }>(s: S): S {
  const code = s.code;
  if (isDefinedCode(code)) return s;
  return { ...s, code: Status.UNKNOWN, details: `Unknown code ${String(code)}${s.details ? `: ${s.details}` : ''}` };
}

/** `rpc.grpc.status_code`'s name, for span status messages, logs and metrics; UNKNOWN for a code gRPC does not define. */
export function statusName(code: number): string {
  return isDefinedCode(code) ? ((Status as unknown as Record<number, string>)[code] as string) : 'UNKNOWN';
}

/** One of the 17 codes gRPC defines. */
const isDefinedCode = (code: number): boolean => Number.isInteger(code) && code >= 0 && code <= LAST_CODE;
