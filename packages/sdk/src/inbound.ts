import type { IncomingHttpHeaders } from 'node:http';
import {
  BadTagHeaderError,
  CALLER_HEADER,
  type Caller,
  createContext,
  decodeTags,
  type Logger,
  type MeshContext,
  TAG_HEADER,
  type TraceHeaders,
} from '@meshlet/core';

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
  readonly logger: Logger;
  readonly owner: unknown;
}

const firstValue = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? v.join(',') : v);

/**
 * Builds the context of an inbound request from its headers. Never throws: a bad tag or
 * caller header is logged and ignored, so a client's garbage cannot turn into a 500.
 * Tags that arrived from upstream win over tags lifted from headers here, so a tag set
 * at the edge survives hops whose own User-Agent says something else.
 */
export function inboundContext(headers: IncomingHttpHeaders, method: string, url: string, options: InboundOptions): MeshContext {
  const { logger } = options;
  const tags = new Map<string, string>();
  for (const rule of options.tagsFromHeaders) {
    const raw = firstValue(headers[rule.header.toLowerCase()]);
    if (raw === undefined) continue;
    const value = rule.transform ? rule.transform(raw) : raw;
    if (value !== undefined) tags.set(rule.tag, value);
  }
  for (const [k, v] of readHeaderTags(headers, TAG_HEADER, logger)) tags.set(k, v);
  const callerTags = readHeaderTags(headers, CALLER_HEADER, logger);
  const caller: Caller = {
    ...optional('service', callerTags.get('service')),
    ...optional('version', callerTags.get('version')),
    ...optional('namespace', callerTags.get('namespace')),
    ...optional('instance', callerTags.get('instance')),
  };
  const q = url.indexOf('?');
  const traceparent = firstValue(headers.traceparent);
  const tracestate = firstValue(headers.tracestate);
  const trace: TraceHeaders | undefined = traceparent ? { traceparent, ...(tracestate !== undefined ? { tracestate } : {}) } : undefined;
  return createContext({
    caller,
    tags,
    request: { method, path: q < 0 ? url : url.slice(0, q) },
    ...(trace ? { trace } : {}),
    owner: options.owner,
    logger,
  });
}

function readHeaderTags(headers: IncomingHttpHeaders, name: string, logger: Logger): Map<string, string> {
  const raw = firstValue(headers[name]);
  if (raw === undefined || raw === '') return new Map();
  try {
    const { tags, dropped } = decodeTags(raw, name);
    for (const d of dropped) logger.warn('tag dropped', { code: 'MESHLET_TAG_DROPPED', header: name, key: d.key, reason: d.reason });
    return tags;
  } catch (err) {
    if (!(err instanceof BadTagHeaderError)) throw err;
    logger.warn('bad tag header ignored', { code: err.code, header: name, reason: err.message });
    return new Map();
  }
}

function optional<K extends string>(key: K, value: string | undefined): { [P in K]?: string } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: string };
}
