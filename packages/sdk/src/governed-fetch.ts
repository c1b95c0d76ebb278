import { CALLER_HEADER, currentContext, encodeTags, instanceOrigin, type Logger, TAG_HEADER } from '@meshlet/core';
import type { ServiceDirectory } from './service-directory.js';

export type Fetch = typeof globalThis.fetch;
type FetchInput = Parameters<Fetch>[0];

export interface GovernedFetchDeps {
  readonly directory: ServiceDirectory;
  /** The encoded identity of this service, sent as the caller header on every governed call. */
  readonly callerHeader: string;
  readonly logger: Logger;
  /** The client that sends the request; global fetch by default. */
  readonly send: Fetch;
}

/**
 * Builds a fetch with the WHATWG signature that resolves service names. A URL whose host
 * is a service in the registry goes to one of its healthy instances, carrying the current
 * request's tags and this service's identity; any other URL is passed to `send` untouched.
 * The port in a service URL, if any, is ignored: the instance's port is used.
 */
export function governedFetch(deps: GovernedFetchDeps): Fetch {
  const { directory, send, logger } = deps;
  return async function fetch(input: FetchInput, init?: RequestInit): Promise<Response> {
    const request = input instanceof Request ? input : undefined;
    const url = new URL(request ? request.url : input instanceof URL ? input.href : String(input));
    const service = url.hostname;
    if (!(await directory.isService(service))) return send(input, init);

    const instance = await directory.pick(service);
    const target = `${instanceOrigin(instance)}${url.pathname}${url.search}`;
    // As in fetch itself, init.headers replace a Request's headers rather than merge.
    const headers = new Headers(init?.headers ?? request?.headers);
    const ctx = currentContext();
    if (ctx.tags.size > 0 && !headers.has(TAG_HEADER)) {
      const { header, dropped } = encodeTags(ctx.tags);
      for (const d of dropped) logger.warn('tag not sent', { code: 'MESHLET_TAG_DROPPED', key: d.key, reason: d.reason, service });
      if (header) headers.set(TAG_HEADER, header);
    }
    headers.set(CALLER_HEADER, deps.callerHeader);
    if (ctx.trace && !headers.has('traceparent')) {
      headers.set('traceparent', ctx.trace.traceparent);
      if (ctx.trace.tracestate) headers.set('tracestate', ctx.trace.tracestate);
    }
    if (request) return send(new Request(target, request), { ...init, headers });
    return send(target, { ...init, headers });
  };
}
