import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ApiCatalog } from './api-catalog.js';

/** Where a service serves its catalog by default. */
export const CATALOG_PATH = '/meshlet/apis';

export interface CatalogHandlerOptions {
  /** Default CATALOG_PATH (`/meshlet/apis`). */
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
 * Writes nothing, so a pipeline can answer it where it answers its own refusals (the mesh
 * does, once a request has been admitted, as any API of the service).
 * Body: `{ "service": "...", "hash": "...", "apis": [{ "method", "path", "operationId"?, "summary"? }] }`.
 */
export function catalogAnswers(
  source: ApiCatalog | (() => ApiCatalog),
  options: CatalogHandlerOptions = {},
): (req: Pick<IncomingMessage, 'method' | 'url' | 'headers'>) => CatalogAnswer | undefined {
  const at = options.path ?? CATALOG_PATH;
  let served: ApiCatalog | undefined;
  let body = '';
  return (req) => {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    if (path !== at && path !== `${at}/`) return undefined;
    if (req.method !== 'GET' && req.method !== 'HEAD') return { status: 405, headers: { allow: 'GET, HEAD' }, body: '' };
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
    if (req.headers['if-none-match'] === etag) return { status: 304, headers: { etag }, body: '' };
    return {
      status: 200,
      headers: { 'content-type': 'application/json', etag, 'content-length': String(Buffer.byteLength(body)) },
      body: req.method === 'HEAD' ? '' : body,
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
    const a = answer(req);
    if (a === undefined) return false;
    res.writeHead(a.status, a.headers).end(a.body === '' ? undefined : a.body);
    return true;
  };
}
