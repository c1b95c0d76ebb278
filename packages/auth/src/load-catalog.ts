import { type Logger, silentLogger } from '@meshlet/core';
import { type ApiCatalog, createCatalog, declaredRoutes, type RouteDeclaration, routesFromOpenApi } from './api-catalog.js';

/** The part of swagger-jsdoc used here: it reads `@openapi` JSDoc blocks from files. */
export type SwaggerJsdoc = (options: { definition: object; apis: string[]; failOnErrors?: boolean }) => object;

export interface LoadCatalogOptions {
  /** Route files holding `@openapi` (or `@swagger`) JSDoc blocks: paths or globs, as swagger-jsdoc takes them. */
  readonly openapiFiles?: readonly string[];
  /** Routes declared in code. Default: everything given to declareRoutes(). */
  readonly routes?: readonly RouteDeclaration[];
  readonly logger?: Logger;
  /** How swagger-jsdoc is loaded; for tests. Default: `import('swagger-jsdoc')`. */
  readonly loadSwaggerJsdoc?: () => Promise<SwaggerJsdoc>;
}

/**
 * Builds this service's catalog from its OpenAPI JSDoc and its declared routes. Never
 * throws: when swagger-jsdoc is not installed or a file does not parse, the error is
 * logged and the catalog holds what could be read (possibly nothing) — the service
 * starts, without API-level names for what is missing.
 */
export async function loadCatalog(options: LoadCatalogOptions = {}): Promise<ApiCatalog> {
  const logger = options.logger ?? silentLogger;
  const routes: RouteDeclaration[] = [...(options.routes ?? declaredRoutes())];
  if (options.openapiFiles !== undefined && options.openapiFiles.length > 0) {
    const doc = await openApiFromJsdoc(options.openapiFiles, logger, options.loadSwaggerJsdoc);
    if (doc !== undefined) routes.push(...routesFromOpenApi(doc, logger));
  }
  return createCatalog(routes, logger);
}

/** The OpenAPI document swagger-jsdoc builds from `files`, or undefined (logged) when it cannot. */
export async function openApiFromJsdoc(
  files: readonly string[],
  logger: Logger = silentLogger,
  load: () => Promise<SwaggerJsdoc> = importSwaggerJsdoc,
): Promise<object | undefined> {
  let swaggerJsdoc: SwaggerJsdoc;
  try {
    swaggerJsdoc = await load();
  } catch (err) {
    logger.error('swagger-jsdoc is not available: the catalog has only declared routes. Install it with `npm install swagger-jsdoc`', {
      code: 'MESHLET_BAD_CATALOG',
      reason: (err as Error).message,
    });
    return undefined;
  }
  try {
    return swaggerJsdoc({
      definition: { openapi: '3.0.0', info: { title: 'meshlet catalog', version: '0' } },
      apis: [...files],
      // Throw rather than print: the error goes to our logger, once.
      failOnErrors: true,
    });
  } catch (err) {
    logger.error('OpenAPI annotations could not be parsed: the catalog has only declared routes', {
      code: 'MESHLET_BAD_CATALOG',
      files: files.slice(0, 10),
      reason: String((err as Error).message ?? err).slice(0, 2000),
    });
    return undefined;
  }
}

async function importSwaggerJsdoc(): Promise<SwaggerJsdoc> {
  // A variable specifier keeps TypeScript from needing the (optional) package's types.
  const name = 'swagger-jsdoc';
  const mod = (await import(name)) as { default?: unknown };
  const fn = mod.default ?? mod;
  if (typeof fn !== 'function') throw new Error('swagger-jsdoc did not export a function');
  return fn as SwaggerJsdoc;
}
