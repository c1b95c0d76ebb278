/**
 * The error codes of a failed connection or exchange (Node's system errors, undici's, TLS's),
 * in one place: the breaker tells from them whether a request may have been sent (SendFailure),
 * tracing names a failure by them (`error.type`: a fixed list, so no value from elsewhere
 * makes a new label).
 */

/** A connect that did not happen: nothing of the request was sent. */
export const NOT_SENT_ERROR_CODES: ReadonlySet<string> = new Set([
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
  // The instance's origin is no URL (undici's parseOrigin, before connecting).
  'ERR_INVALID_URL',
  // The TLS handshake failed: what the server answered is not TLS, or it refused the handshake.
  'ERR_SSL_WRONG_VERSION_NUMBER',
  'ERR_SSL_PACKET_LENGTH_TOO_LONG',
  'ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE',
  'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION',
  'ERR_SSL_UNSUPPORTED_PROTOCOL',
  // The server's certificate is not trusted or names another host (checked during the handshake).
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
]);

/** A connection that broke once the request may have been written. */
export const BROKEN_ERROR_CODES: ReadonlySet<string> = new Set(['UND_ERR_SOCKET', 'ECONNRESET', 'EPIPE', 'ECONNABORTED']);

/** Every code of a failed connection or exchange: those two, and timeouts and protocol errors. */
export const NETWORK_ERROR_CODES: ReadonlySet<string> = new Set([
  ...NOT_SENT_ERROR_CODES,
  ...BROKEN_ERROR_CODES,
  'ETIMEDOUT',
  'EPROTO',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_CLOSED',
  'UND_ERR_DESTROYED',
  'UND_ERR_RES_CONTENT_LENGTH_MISMATCH',
]);
