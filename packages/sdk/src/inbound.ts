import type { IncomingHttpHeaders } from 'node:http';
import {
  BadTagHeaderError,
  CALLER_HEADER,
  type Caller,
  createContext,
  decodeTags,
  type Logger,
  type MeshContext,
  type TraceHeaders,
} from '@meshlet/core';
import { attachRequestTags, type TagPropagation } from '@meshlet/dialects';

/** Lifts a request header into a custom tag at the edge, e.g. User-Agent into `ua.family`. */
export interface HeaderTag {
  /** The request header to read (any case). */
  readonly header: string;
  /** The tag to set. */
  readonly tag: string;
  /** Maps the header value to the tag value; `undefined` sets nothing. Default: the value as it is. */
  readonly transform?: (value: string) => string | undefined;
}

export interface InboundOptions {
  readonly tagsFromHeaders: readonly HeaderTag[];
  /** Reads tags in every accepted dialect (Meshlet, TSF, Polaris, Spring Cloud Tencent). */
  readonly propagation: TagPropagation;
  readonly logger: Logger;
  readonly owner: unknown;
}

const firstValue = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? v.join(',') : v);

/**
 * Builds the context of an inbound request from its headers. Never throws: a bad tag or
 * caller header is logged and ignored, so a client's garbage cannot turn into a 500.
 * Tags that arrived from upstream win over tags lifted from headers here, so a tag set
 * at the edge survives hops whose own User-Agent says something else.
 *
 * `caller`, when given, is the verified identity and the only source of the caller: the
 * caller header is then ignored, since anyone can type it.
 */
export function inboundContext(
  headers: IncomingHttpHeaders,
  method: string,
  url: string,
  options: InboundOptions,
  caller?: Caller,
): MeshContext {
  const { logger } = options;
  const tags = new Map<string, string>();
  for (const rule of options.tagsFromHeaders) {
    const raw = firstValue(headers[rule.header.toLowerCase()]);
    if (raw === undefined) continue;
    const value = rule.transform ? rule.transform(raw) : raw;
    if (value !== undefined) tags.set(rule.tag, value);
  }
  const got = options.propagation.extract(headers);
  for (const w of got.warnings) logger.warn('bad tag header ignored', { code: w.code, header: w.header, reason: w.reason });
  for (const d of got.dropped) logger.warn('tag dropped', { code: 'MESHLET_TAG_DROPPED', header: d.header, key: d.key, reason: d.reason });
  for (const [k, v] of got.tags) tags.set(k, v);
  const q = url.indexOf('?');
  const traceparent = firstValue(headers.traceparent);
  const tracestate = firstValue(headers.tracestate);
  const trace: TraceHeaders | undefined = traceparent ? { traceparent, ...(tracestate !== undefined ? { tracestate } : {}) } : undefined;
  const ctx = createContext({
    caller: caller ?? callerFromHeaders(headers, logger) ?? got.caller ?? {},
    tags,
    request: { method, path: q < 0 ? url : url.slice(0, q) },
    ...(trace ? { trace } : {}),
    owner: options.owner,
    logger,
  });
  attachRequestTags(ctx, { scopes: got.scopes, passThrough: got.passThrough });
  return ctx;
}

/** The unsigned caller header (`x-meshlet-caller`): who the caller says it is. */
function callerFromHeaders(headers: IncomingHttpHeaders, logger: Logger): Caller | undefined {
  const raw = firstValue(headers[CALLER_HEADER]);
  if (raw === undefined || raw === '') return undefined;
  try {
    const { tags } = decodeTags(raw, CALLER_HEADER);
    const pick = (k: string) => tags.get(k);
    const out: { -readonly [K in keyof Caller]: Caller[K] } = {};
    for (const k of ['service', 'version', 'namespace', 'instance'] as const) {
      const v = pick(k);
      if (v !== undefined) out[k] = v;
    }
    return out;
  } catch (err) {
    if (!(err instanceof BadTagHeaderError)) throw err;
    logger.warn('bad caller header ignored', { code: err.code, header: CALLER_HEADER, reason: err.message });
    return undefined;
  }
}
