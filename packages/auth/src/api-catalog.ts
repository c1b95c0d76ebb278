import { createHash } from 'node:crypto';
import { type ApiTemplate, HTTP_METHODS, type Logger, PathTemplate, PathTemplateError, silentLogger } from '@meshlet/core';

/** One API of a service, normalised: method in capitals, OpenAPI path template. */
export interface ApiEntry extends ApiTemplate {
  readonly operationId?: string;
  readonly summary?: string;
}

/** A service's API list, sorted and deduplicated, with a short hash of it for the registration `Meta`. */
export interface ApiCatalog {
  readonly apis: readonly ApiEntry[];
  /** 16 hex characters of SHA-256 over the canonical JSON of `apis`. */
  readonly hash: string;
}

/** An API as a project declares it: any method case, `{id}` or Express `:id` parameters. */
export interface RouteDeclaration {
  readonly method: string;
  readonly path: string;
  readonly operationId?: string;
  readonly summary?: string;
}

/** Most APIs a catalog holds; more are dropped with a warning. */
export const MAX_CATALOG_APIS = 2048;
const METHODS = new Set<string>(HTTP_METHODS);
/** Bad entries a skipped-entries warning names; it counts the rest. */
const NAMED_SKIPS = 5;

const declared: RouteDeclaration[] = [];

/**
 * Declares routes for the catalog where a project has no OpenAPI JSDoc. Nothing is
 * checked here: loadCatalog/createCatalog log and skip bad entries, so a typo cannot stop
 * the service from starting.
 */
export function declareRoutes(routes: readonly RouteDeclaration[]): void {
  declared.push(...routes);
}

/** Every route declared with declareRoutes so far. */
export function declaredRoutes(): readonly RouteDeclaration[] {
  return declared;
}

/**
 * Builds a catalog: methods in capitals, templates in their canonical spelling (`:id` →
 * `{id}`, no trailing slash), one entry per method and template (the first keeps its
 * summary), sorted by path then method. Bad entries are skipped, never thrown, and logged
 * once: how many, the first few named.
 */
export function createCatalog(routes: Iterable<RouteDeclaration>, logger: Logger = silentLogger): ApiCatalog {
  const byKey = new Map<string, ApiEntry>();
  // One warning for all bad entries: 10,000 of them made 10,000 log lines at start.
  const skipped: { method: string; path: string; reason: string }[] = [];
  let skippedCount = 0;
  const skip = (method: string, path: unknown, reason: string): void => {
    skippedCount++;
    if (skipped.length < NAMED_SKIPS) skipped.push({ method, path: String(path).slice(0, 200), reason });
  };
  for (const r of routes) {
    const method = typeof r.method === 'string' ? r.method.toUpperCase() : '';
    if (!METHODS.has(method)) {
      skip(String(r.method).slice(0, 20), r.path, 'unknown method');
      continue;
    }
    let path: string;
    try {
      path = PathTemplate.parse(r.path).template;
    } catch (err) {
      if (!(err instanceof PathTemplateError)) throw err;
      skip(method, r.path, `bad path template: ${err.reason}`);
      continue;
    }
    const key = `${method} ${path}`;
    if (byKey.has(key)) continue;
    if (byKey.size >= MAX_CATALOG_APIS) {
      logger.warn('catalog full: further APIs dropped', { code: 'MESHLET_BAD_CATALOG', max: MAX_CATALOG_APIS });
      break;
    }
    byKey.set(key, {
      method,
      path,
      ...(typeof r.operationId === 'string' && r.operationId !== '' ? { operationId: r.operationId.slice(0, 128) } : {}),
      ...(typeof r.summary === 'string' && r.summary !== '' ? { summary: r.summary.slice(0, 512) } : {}),
    });
  }
  if (skippedCount > 0) {
    logger.warn(`${skippedCount} catalog entries skipped: unknown method or bad path template`, {
      code: 'MESHLET_BAD_CATALOG',
      skipped: skippedCount,
      first: skipped,
    });
  }
  const apis = [...byKey.values()].sort((a, b) =>
    a.path < b.path ? -1 : a.path > b.path ? 1 : a.method < b.method ? -1 : a.method > b.method ? 1 : 0,
  );
  return { apis, hash: catalogHash(apis) };
}

/** The hash of an API list, as published in the registration `Meta` under `apis-hash`. */
export function catalogHash(apis: readonly ApiEntry[]): string {
  const canonical = JSON.stringify(apis.map((a) => [a.method, a.path, a.operationId ?? '', a.summary ?? '']));
  return createHash('sha256').update(canonical).digest('hex').slice(0, 16);
}

/**
 * The routes of an OpenAPI (3.x or Swagger 2) document: one per operation under `paths`.
 * Anything not shaped like a document gives no routes and a warning.
 */
export function routesFromOpenApi(doc: unknown, logger: Logger = silentLogger): RouteDeclaration[] {
  const paths = isObject(doc) ? doc.paths : undefined;
  if (paths === undefined) return [];
  if (!isObject(paths)) {
    logger.warn('OpenAPI document has no usable "paths"; no APIs taken from it', { code: 'MESHLET_BAD_CATALOG' });
    return [];
  }
  const out: RouteDeclaration[] = [];
  for (const [path, item] of Object.entries(paths)) {
    if (!isObject(item)) continue;
    for (const [key, op] of Object.entries(item)) {
      const method = key.toUpperCase();
      // Path items also hold `parameters`, `servers`, `summary`, `$ref`: not operations.
      if (!METHODS.has(method) || !isObject(op)) continue;
      out.push({
        method,
        path,
        ...(typeof op.operationId === 'string' ? { operationId: op.operationId } : {}),
        ...(typeof op.summary === 'string' ? { summary: op.summary } : {}),
      });
    }
  }
  return out;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
