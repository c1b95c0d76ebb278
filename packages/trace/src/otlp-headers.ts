import { badOption, grpcMetadataProblem, isHeaderName, isHeaderValue, optionObject, shownValue } from '@meshlet/core';
import type { OtlpProtocol } from './otlp-exporter-base.js';

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

/** What is wrong with a collector setting: the header it is about, if one (bounded), and why. */
export interface OtlpProblem {
  readonly header?: string;
  readonly problem: string;
}

/**
 * Why a header cannot be gRPC metadata sent as text, or undefined: a name gRPC reserves or
 * takes as bytes, or a value with a character other than printable ASCII (grpc-js refuses
 * it, and its error shows the value, a credential maybe: so it is refused first, without it).
 */
export function otlpGrpcHeaderProblem(name: string, value: string): string | undefined {
  if (name.toLowerCase().startsWith('grpc-')) return 'is reserved by gRPC (grpc-…)';
  return grpcMetadataProblem(name, value);
}

/**
 * What is wrong with a set of collector headers, or undefined: more than 64, a name that is
 * not RFC 9110's token or is reserved (`isReservedOtlpHeader`), a value that is not a string
 * or has a character HTTP refuses in a header (a line break, NUL, another control character,
 * anything past U+00FF), more than 16 KiB in all; with `protocol` grpc, also what cannot be
 * gRPC metadata (`otlpGrpcHeaderProblem`). Never a value: a collector's headers carry its
 * credential. The options check, the exporters (on what they are given and on what a
 * headers function gives) and the sdk's readers of configuration and OpenTelemetry's
 * variables all ask this.
 */
export function otlpHeadersProblem(headers: Readonly<Record<string, unknown>>, protocol?: OtlpProtocol): OtlpProblem | undefined {
  const names = Object.keys(headers);
  if (names.length > OTLP_HEADER_BOUNDS.headers) return { problem: `at most ${OTLP_HEADER_BOUNDS.headers} headers` };
  let chars = 0;
  for (const name of names) {
    const v = headers[name];
    if (!isHeaderName(name)) return { problem: `${shownValue(name)} is not a header name` };
    const header = name.slice(0, 80);
    if (isReservedOtlpHeader(name)) return { header, problem: 'is set by the exporter or by HTTP itself, not given: leave it out' };
    // undici's own rule for a header value (it would refuse the request, every attempt).
    if (typeof v !== 'string' || !isHeaderValue(v))
      return {
        header,
        problem: 'must be a string without line breaks, NUL or other characters HTTP refuses in a header (the value is not shown)',
      };
    const grpc = protocol === 'grpc' ? otlpGrpcHeaderProblem(name, v) : undefined;
    if (grpc !== undefined) return { header, problem: grpc };
    chars += name.length + v.length;
  }
  if (chars > OTLP_HEADER_BOUNDS.chars) return { problem: `${chars} characters; at most ${OTLP_HEADER_BOUNDS.chars} in all` };
  return undefined;
}

/** `otlpHeadersProblem` as an option check: MeshletError `MESHLET_BAD_OPTION` naming `path` (and the header). */
export function checkOtlpHeaders(value: unknown, path: string, protocol?: OtlpProtocol): void {
  const found = otlpHeadersProblem(optionObject(value, path), protocol);
  if (found !== undefined) throw badOption(found.header === undefined ? path : `${path}.${found.header}`, found.problem);
}

/** The collector's URL, in characters. */
export const OTLP_URL_CHARS = 2048;

/**
 * What is wrong with a collector URL, or undefined: not an `http:` or `https:` URL of at
 * most 2,048 characters (shown, bounded), or a user or password in it (then not shown: the
 * credential belongs in `otlp.headers`, and a URL is logged with each failed export).
 */
export function otlpUrlProblem(url: unknown): string | undefined {
  const parsed = typeof url === 'string' && url.length <= OTLP_URL_CHARS && URL.canParse(url) ? new URL(url) : undefined;
  if (parsed !== undefined && (parsed.username !== '' || parsed.password !== ''))
    return "must not carry a user or password: give the collector's credential in otlp.headers (the URL is not shown)";
  if (parsed?.protocol !== 'http:' && parsed?.protocol !== 'https:')
    return `${shownValue(url)} must be an http: or https: URL of at most ${OTLP_URL_CHARS} characters`;
  return undefined;
}

/** A collector URL as logs show it: origin and path, no query (a vendor's key may ride there). */
export const shownOtlpUrl = (url: URL): string => `${url.origin}${url.pathname}`;
