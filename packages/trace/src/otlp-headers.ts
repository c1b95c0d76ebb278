import { badOption, isHeaderName, optionObject, shownValue } from '@meshlet/core';

/** Extra headers sent to the collector, and their characters in all (names and values). */
export const OTLP_HEADER_BOUNDS = Object.freeze({ headers: 64, chars: 16 * 1024 });

/**
 * The collector's headers as given, or a function giving them before each attempt (a token
 * that expires: fetched or refreshed by the app), as OpenTelemetry's exporters take them.
 */
export type OtlpHeaders =
  | Readonly<Record<string, string>>
  | (() => Readonly<Record<string, string>> | Promise<Readonly<Record<string, string>>>);

/**
 * Header names the exporter sets itself (`content-type`, `content-encoding`) or HTTP's
 * framing owns: given in `otlp.headers`, one would be sent twice or make undici refuse
 * every export, so they are refused when given.
 */
const RESERVED = new Set([
  'content-type',
  'content-encoding',
  'content-length',
  'transfer-encoding',
  'host',
  'connection',
  'keep-alive',
  'proxy-connection',
  'upgrade',
  'expect',
  'te',
  'trailer',
]);

/** Whether `name` (any case) is one the exporter or HTTP's framing sets, not a collector header. */
export const isReservedOtlpHeader = (name: string): boolean => RESERVED.has(name.toLowerCase());

/**
 * Checks a set of collector headers: at most 64, RFC 9110 names none of them reserved
 * (`isReservedOtlpHeader`), string values without a
 * line break or NUL, 16 KiB in all. MeshletError `MESHLET_BAD_OPTION` naming `path`; a
 * value is never shown, as it carries the collector's credential. The options check runs
 * it on headers given as an object; the exporter on what a headers function gives.
 */
export function checkOtlpHeaders(value: unknown, path: string): void {
  const headers = optionObject(value, path);
  const names = Object.keys(headers);
  if (names.length > OTLP_HEADER_BOUNDS.headers) throw badOption(path, `at most ${OTLP_HEADER_BOUNDS.headers} headers`);
  let chars = 0;
  for (const name of names) {
    const v = headers[name];
    if (!isHeaderName(name)) throw badOption(path, `${shownValue(name)} is not a header name`);
    if (isReservedOtlpHeader(name))
      throw badOption(`${path}.${name.slice(0, 80)}`, 'is set by the exporter or by HTTP itself, not given: leave it out');
    // The value is not shown: a collector's headers carry its credential.
    if (typeof v !== 'string' || /[\r\n\0]/.test(v))
      throw badOption(`${path}.${name.slice(0, 80)}`, 'must be a string without line breaks or NUL (the value is not shown)');
    chars += name.length + v.length;
  }
  if (chars > OTLP_HEADER_BOUNDS.chars) throw badOption(path, `${chars} characters; at most ${OTLP_HEADER_BOUNDS.chars} in all`);
}

/**
 * Why a collector URL that parses is refused, or undefined: a user or password in it (the
 * credential belongs in `otlp.headers`, which are never shown; a URL is logged with each
 * failed export).
 */
export function otlpUrlProblem(url: URL): string | undefined {
  return url.username !== '' || url.password !== ''
    ? "must not carry a user or password: give the collector's credential in otlp.headers (the URL is not shown)"
    : undefined;
}

/** A collector URL as logs show it: origin and path, no query (a vendor's key may ride there). */
export const shownOtlpUrl = (url: URL): string => `${url.origin}${url.pathname}`;
