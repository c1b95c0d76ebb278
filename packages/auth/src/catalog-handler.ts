import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { canonicalPath, requestPath } from '@meshlet/core';
import type { ApiCatalog } from './api-catalog.js';

/** Where a service serves its catalog by default. */
export const CATALOG_PATH = '/meshlet/apis';

export interface CatalogHandlerOptions {
  /**
   * Default CATALOG_PATH (`/meshlet/apis`). The request's whole path, as rules compare it:
   * under a mount (`app.use('/api', mesh.express())`) the catalog at `/api/meshlet/apis` is
   * `path: '/api/meshlet/apis'`, so an auth rule on that path is a rule on the catalog.
   */
  readonly path?: string;
  /** Named in the body. */
  readonly service?: string;
}

/** What the catalog endpoint answers: status, headers, body ('' for HEAD, 304 and 405). */
export interface CatalogAnswer {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

/**
 * The catalog endpoint's answer to a request, or undefined for any path but `path`: JSON
 * for GET and HEAD, with an ETag of the catalog hash so pollers get 304s; 405 otherwise.
 * `path` is the request's canonical path (core's requestPath of the whole target, Express's
 * `originalUrl`): the one the service's rules compared, so the catalog is answered exactly
 * where a rule on its path applies; a trailing `/` is the same path, as for rules.
 * Writes nothing, so a pipeline can answer it where it answers its own refusals (the mesh
 * does, once a request has been admitted, as any API of the service).
 * Body: `{ "service": "...", "hash": "...", "apis": [{ "method", "path", "operationId"?, "summary"? }] }`.
 */
export function catalogAnswers(
  source: ApiCatalog | (() => ApiCatalog),
  options: CatalogHandlerOptions = {},
): (method: string, path: string, headers: IncomingHttpHeaders) => CatalogAnswer | undefined {
  // In the form requestPath gives, so a path written with escapes or "//" is still met.
  const at = canonicalPath(options.path ?? CATALOG_PATH);
  const atSlash = `${at}/`;
  let served: ApiCatalog | undefined;
  let body = '';
  return (method, path, headers) => {
    if (path !== at && path !== atSlash) return undefined;
    if (method !== 'GET' && method !== 'HEAD') return { status: 405, headers: { allow: 'GET, HEAD' }, body: '' };
    const catalog = typeof source === 'function' ? source() : source;
    // Serialised once per catalog, not per request.
    if (catalog !== served) {
      served = catalog;
      body = JSON.stringify({
        ...(options.service !== undefined ? { service: options.service } : {}),
        hash: catalog.hash,
        apis: catalog.apis,
      });
    }
    const etag = `"${catalog.hash}"`;
    if (headers['if-none-match'] === etag) return { status: 304, headers: { etag }, body: '' };
    return {
      status: 200,
      headers: { 'content-type': 'application/json', etag, 'content-length': String(Buffer.byteLength(body)) },
      body: method === 'HEAD' ? '' : body,
    };
  };
}

/**
 * A node:http handler that serves the catalog as JSON at `path` (see catalogAnswers).
 * Returns false, having done nothing, for any other path, so it chains in front of the
 * application: `if (!serveCatalog(req, res)) app(req, res)`. In front of the application
 * it is in front of whatever guards it too: put it behind them.
 */
export function catalogHandler(
  source: ApiCatalog | (() => ApiCatalog),
  options: CatalogHandlerOptions = {},
): (req: IncomingMessage, res: ServerResponse) => boolean {
  const answer = catalogAnswers(source, options);
  return (req, res) => {
    // A target with no one canonical path (see requestPath) is not the catalog: the app's to answer.
    const path = requestPath(req.url ?? '/');
    const a = path === undefined ? undefined : answer(req.method ?? 'GET', path, req.headers);
    if (a === undefined) return false;
    res.writeHead(a.status, a.headers).end(a.body === '' ? undefined : a.body);
    return true;
  };
}
