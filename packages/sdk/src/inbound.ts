import type { IncomingHttpHeaders } from 'node:http';
import {
  BadTagHeaderError,
  badOption,
  CALLER_HEADER,
  type Caller,
  checkTag,
  createContext,
  decodeTagPairs,
  decodeTags,
  isHeaderName,
  type Logger,
  type MeshContext,
  onlyOptionKeys,
  optionObject,
  requestPath,
  shownValue,
  TagLimits,
  type TraceHeaders,
} from '@meshlet/core';
import { attachRequestTags, type TagPropagation } from '@meshlet/propagation';

/**
 * Lifts a part of the request into a custom tag at the edge: a header (User-Agent into
 * `ua.family`), a cookie or a query parameter. Exactly one of `header`, `cookie`, `query`.
 */
export type HeaderTag = {
  /** The tag to set. */
  readonly tag: string;
  /**
   * Maps the value to the tag value; `undefined` sets nothing. Default: the value as it is.
   * It runs on what the client sent: when it throws (or gives something other than a
   * string) the tag is not set, and the drop is logged (`MESHLET_TAG_DROPPED`, at most once
   * per interval) with the error's name, never its message (it may hold the value).
   */
  readonly transform?: (value: string) => string | undefined;
} & (
  | { /** A request header (any case). */ readonly header: string; readonly cookie?: undefined; readonly query?: undefined }
  | {
      /** A cookie of the Cookie header, percent-decoded. */ readonly cookie: string;
      readonly header?: undefined;
      readonly query?: undefined;
    }
  | { /** A query parameter, decoded. */ readonly query: string; readonly header?: undefined; readonly cookie?: undefined }
);

/**
 * Whose tag headers (`x-meshlet-tags` and every other accepted dialect's) are believed:
 * `any` sender's, only a `verified` mesh caller's (needs `auth`), or `none` (an edge service:
 * its tags come from `tagsFromHeaders` only).
 */
export type TagHeaderTrust = 'any' | 'verified' | 'none';
export const TAG_HEADER_TRUST: readonly TagHeaderTrust[] = ['any', 'verified', 'none'];

const HEADER_TAG_KEYS = ['header', 'cookie', 'query', 'tag', 'transform'] as const;

/**
 * Checks `tagsFromHeaders` at createMesh: a list of objects of these keys only, each with
 * one source (a header by its name, a cookie or a query parameter), a tag name, and a
 * `transform` that is a function if given. `MESHLET_BAD_OPTION` naming the field.
 */
export function checkHeaderTags(value: unknown): void {
  if (!Array.isArray(value)) throw badOption('tagsFromHeaders', `${shownValue(value)} must be a list`);
  value.forEach((entry, i) => {
    const at = `tagsFromHeaders[${i}]`;
    const rule = optionObject(entry, at);
    onlyOptionKeys(rule, at, HEADER_TAG_KEYS);
    const sources = (['header', 'cookie', 'query'] as const).filter((k) => typeof rule[k] === 'string' && rule[k] !== '');
    if (sources.length !== 1) throw badOption(at, `give exactly one of header, cookie or query (got ${sources.join(', ') || 'none'})`);
    if (typeof rule.header === 'string' && !isHeaderName(rule.header))
      throw badOption(`${at}.header`, `${shownValue(rule.header)} is not a header name`);
    if (typeof rule.tag !== 'string' || rule.tag === '') throw badOption(`${at}.tag`, 'must be a tag name');
    if (rule.transform !== undefined && typeof rule.transform !== 'function') throw badOption(`${at}.transform`, 'must be a function');
  });
}

/** The raw value a HeaderTag reads from one request; cookies and the query string are parsed once, on first use. */
function requestValues(headers: IncomingHttpHeaders, url: string): (rule: HeaderTag) => string | undefined {
  let cookies: Map<string, string> | undefined;
  let query: URLSearchParams | undefined;
  return (rule) => {
    if (rule.header !== undefined) return firstValue(headers[rule.header.toLowerCase()]);
    if (rule.cookie !== undefined) {
      cookies ??= parseCookies(firstValue(headers.cookie));
      return cookies.get(rule.cookie);
    }
    if (rule.query !== undefined) {
      const q = url.indexOf('?');
      query ??= new URLSearchParams(q < 0 ? '' : url.slice(q + 1));
      return query.get(rule.query) ?? undefined;
    }
    return undefined;
  };
}

/** `a=1; b=x%20y` as RFC 6265 sends it; a value that does not percent-decode is kept as it came. */
function parseCookies(header: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  if (!header) return out;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq <= 0) continue;
    const name = part.slice(0, eq).trim();
    let value = part.slice(eq + 1).trim();
    if (value.startsWith('"') && value.endsWith('"') && value.length >= 2) value = value.slice(1, -1);
    if (out.has(name)) continue; // the first of a repeated name wins, as browsers order the most specific first
    try {
      out.set(name, decodeURIComponent(value));
    } catch {
      out.set(name, value);
    }
  }
  return out;
}

export interface InboundOptions {
  readonly tagsFromHeaders: readonly HeaderTag[];
  /** Reads tags in every accepted dialect (Meshlet, TSF, Polaris, Spring Cloud Tencent). */
  readonly propagation: TagPropagation;
  readonly logger: Logger;
  readonly owner: unknown;
}

const firstValue = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? v.join(',') : v);

/** The name of what a hook of the app threw, for a log line: never its message, which may quote the client's value. */
export const thrownName = (err: unknown): string => (err instanceof Error ? err.name : typeof err).slice(0, 64);

/**
 * Builds the context of an inbound request from its headers. A bad tag or caller header is
 * logged and ignored, and so is a `transform` that throws, so a client's garbage cannot
 * turn into a 500.
 * Tags that arrived from upstream win over tags lifted from headers here, so a tag set
 * at the edge survives hops whose own User-Agent says something else.
 *
 * `caller`, when given, is the verified identity and the only source of the caller: the
 * caller header is then ignored, since anyone can type it. `readTagHeaders` false: the
 * sender is not trusted with tags, and only `tagsFromHeaders` set any.
 *
 * `path`: the request's canonical path (`requestPath`), when the caller has it already; a
 * target `requestPath` refuses is `/` here (the pipeline answers such a request 400 first).
 */
export function inboundContext(
  headers: IncomingHttpHeaders,
  method: string,
  url: string,
  options: InboundOptions,
  caller?: Caller,
  readTagHeaders = true,
  path: string = requestPath(url) ?? '/',
): MeshContext {
  const { logger } = options;
  // Tags lifted from headers here, if any: they go through createContext's bounds, and the
  // tags that arrived win over them. Without any, the Map extract made is the context's own.
  let lifted: Map<string, string> | undefined;
  if (options.tagsFromHeaders.length > 0) {
    lifted = new Map<string, string>();
    const read = requestValues(headers, url);
    for (const rule of options.tagsFromHeaders) {
      const raw = read(rule);
      if (raw === undefined) continue;
      let value: unknown = raw;
      if (rule.transform) {
        try {
          value = rule.transform(raw);
        } catch (err) {
          logger.warn('tag dropped', {
            code: 'MESHLET_TAG_DROPPED',
            key: rule.tag.slice(0, 128),
            reason: 'transform-threw',
            error: thrownName(err),
          });
          continue;
        }
      }
      if (value === undefined) continue;
      if (typeof value === 'string') lifted.set(rule.tag, value);
      else logger.warn('tag dropped', { code: 'MESHLET_TAG_DROPPED', key: rule.tag.slice(0, 128), reason: 'transform-not-string' });
    }
  }
  // An untrusted sender's tag headers are not parsed at all (only pass-through headers are read).
  const got = options.propagation.extract(headers, readTagHeaders ? undefined : { tags: false });
  // Logged at most once per code per interval (the mesh's logger throttles), with fields cut short.
  for (const w of got.warnings)
    logger.warn('bad tag header ignored', { code: w.code, header: w.header.slice(0, 128), reason: w.reason.slice(0, 200) });
  for (const d of got.dropped)
    logger.warn('tag dropped', { code: 'MESHLET_TAG_DROPPED', header: d.header.slice(0, 128), key: d.key.slice(0, 128), reason: d.reason });
  if (lifted) for (const [k, v] of got.tags) lifted.set(k, v);
  const traceparent = firstValue(headers.traceparent);
  const tracestate = firstValue(headers.tracestate);
  const trace: TraceHeaders | undefined =
    traceparent === undefined || traceparent === '' ? undefined : tracestate !== undefined ? { traceparent, tracestate } : { traceparent };
  const ctx = createContext({
    // No caller: createContext's one shared empty caller.
    caller: caller ?? callerFromHeaders(headers, logger) ?? got.caller,
    // Every tag extract gives passed core's per-tag checks (each dialect checks them).
    tags: lifted,
    ownTags: lifted ? undefined : got.tags,
    // The canonical path: what path rules compare (see requestPath), and the `request.path` tag.
    request: { method, path },
    trace,
    owner: options.owner,
    logger,
  });
  attachRequestTags(ctx, { scopes: got.scopes, passThrough: got.passThrough });
  return ctx;
}

const CALLER_FIELDS = ['service', 'version', 'namespace', 'instance'] as const;

/** The unsigned caller header (`x-meshlet-caller`): who the caller says it is. */
function callerFromHeaders(headers: IncomingHttpHeaders, logger: Logger): Caller | undefined {
  const raw = firstValue(headers[CALLER_HEADER]);
  if (raw === undefined || raw === '') return undefined;
  try {
    const pairs = decodeTagPairs(raw, CALLER_HEADER);
    const out: { -readonly [K in keyof Caller]: Caller[K] } = {};
    if (pairs.length > 2 * TagLimits.maxTags) {
      // More entries than the tag count bound: decodeTags decides which of them count.
      const { tags } = decodeTags(raw, CALLER_HEADER);
      for (const k of CALLER_FIELDS) {
        const v = tags.get(k);
        if (v !== undefined) out[k] = v;
      }
      return out;
    }
    // As decodeTags would keep them: the last value within the per-tag bounds wins.
    let service: string | undefined;
    let version: string | undefined;
    let namespace: string | undefined;
    let instance: string | undefined;
    for (let i = 0; i < pairs.length; i += 2) {
      const k = pairs[i] as string;
      if (k !== 'service' && k !== 'version' && k !== 'namespace' && k !== 'instance') continue;
      const v = pairs[i + 1] as string;
      if (checkTag(k, v) !== undefined) continue;
      if (k === 'service') service = v;
      else if (k === 'version') version = v;
      else if (k === 'namespace') namespace = v;
      else instance = v;
    }
    // In the fields' order, as the Map's reading made them.
    if (service !== undefined) out.service = service;
    if (version !== undefined) out.version = version;
    if (namespace !== undefined) out.namespace = namespace;
    if (instance !== undefined) out.instance = instance;
    return out;
  } catch (err) {
    if (!(err instanceof BadTagHeaderError)) throw err;
    logger.warn('bad caller header ignored', { code: err.code, header: CALLER_HEADER, reason: err.message.slice(0, 200) });
    return undefined;
  }
}
