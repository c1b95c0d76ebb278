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

/**
 * A node:http handler that serves the catalog as JSON at `path` (GET and HEAD, with an
 * ETag of the catalog hash so pollers get 304s). Returns false, having done nothing, for
 * any other path, so it chains in front of the application:
 * `if (!serveCatalog(req, res)) app(req, res)`.
 * Body: `{ "service": "...", "hash": "...", "apis": [{ "method", "path", "operationId"?, "summary"? }] }`.
 */
export function catalogHandler(
  source: ApiCatalog | (() => ApiCatalog),
  options: CatalogHandlerOptions = {},
): (req: IncomingMessage, res: ServerResponse) => boolean {
  const at = options.path ?? CATALOG_PATH;
  let served: ApiCatalog | undefined;
  let body = '';
  return (req, res) => {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    if (path !== at && path !== `${at}/`) return false;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return true;
    }
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
    if (req.headers['if-none-match'] === etag) {
      res.writeHead(304, { etag }).end();
      return true;
    }
    res.writeHead(200, { 'content-type': 'application/json', etag, 'content-length': Buffer.byteLength(body) });
    res.end(req.method === 'HEAD' ? undefined : body);
    return true;
  };
}
