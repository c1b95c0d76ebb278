import type { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import type { ReadableStream as NodeReadableStream } from 'node:stream/web';
import { meshInternals } from './mesh-internals.js';
import type { Mesh } from './mesh-options.js';

/** The part of got's options a `beforeRequest` hook reads (got 12 and later). */
export interface GotRequestOptions {
  readonly url?: URL | string | undefined;
  readonly method: string;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body?: unknown;
  readonly signal?: AbortSignal | undefined;
}

/** What got takes back from a `beforeRequest` hook instead of sending: an IncomingMessage-like stream. */
export type GotResponseLike = IncomingMessage;

export interface GotHooks {
  readonly beforeRequest: ((options: GotRequestOptions) => Promise<GotResponseLike | undefined>)[];
}

function responseLike(res: Response, url: string): GotResponseLike {
  const body = res.body ? Readable.fromWeb(res.body as NodeReadableStream) : Readable.from([]);
  const headers: Record<string, string | string[]> = {};
  for (const [k, v] of res.headers) if (k !== 'set-cookie') headers[k] = v;
  const cookies = res.headers.getSetCookie();
  if (cookies.length) headers['set-cookie'] = cookies;
  return Object.assign(body, {
    statusCode: res.status,
    statusMessage: res.statusText,
    headers,
    url,
    complete: true,
  }) as unknown as GotResponseLike;
}

/**
 * got hooks that govern calls to services: `got.extend({ hooks: gotHooks(mesh) })`. got
 * takes no `fetch`, but a `beforeRequest` hook may answer a request itself; for a URL whose
 * host is a service, the hook makes the call with `mesh.fetch` (routing, breakers, timeouts,
 * retries, tags, identity, spans) and hands got the response, which got then reads as its
 * own (`responseType`, `throwHttpErrors`, hooks after it). Any other URL is left to got.
 * got's own retries run on top of the mesh's: set `retry: { limit: 0 }` to leave retries to
 * the mesh's rules. Bodies got sends as a stream are sent once (never retried).
 */
export function gotHooks(mesh: Mesh): GotHooks {
  const { directory } = meshInternals(mesh);
  return {
    beforeRequest: [
      async (options) => {
        if (options.url === undefined) return undefined;
        const url = new URL(String(options.url));
        if (!directory.use(url.hostname) && !(await directory.governs(url.hostname))) return undefined;
        const headers = new Headers();
        for (const [k, v] of Object.entries(options.headers)) {
          if (v === undefined) continue;
          for (const one of Array.isArray(v) ? v : [v]) headers.append(k, String(one));
        }
        const body = options.body;
        const init: RequestInit & { duplex?: 'half' } = { method: options.method, headers };
        if (body !== undefined && body !== null) {
          if (body instanceof Readable) {
            init.body = Readable.toWeb(body) as ReadableStream;
            init.duplex = 'half';
          } else init.body = body as NonNullable<RequestInit['body']>;
        }
        if (options.signal) init.signal = options.signal;
        const res = await mesh.fetch(url, init);
        return responseLike(res, url.href);
      },
    ],
  };
}
