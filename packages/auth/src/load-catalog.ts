import { glob } from 'node:fs/promises';
import { type Logger, readBoundedFile, silentLogger } from '@meshlet/core';
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
 * What `openapiFiles` may read. swagger-jsdoc parses every JSDoc block of every file it is
 * given synchronously, on the event loop, and holds the document many times over: one 30 MB
 * file stalled the process 12 s and took 1.1 GB; 4 MiB of terse annotations (21,900 blocks)
 * stalled it 8.4 s on a loaded two-core machine. A hand-written route file is
 * tens of KiB (one over 1 MiB is generated or bundled code, whose comments swagger-jsdoc
 * cannot use anyway), and a catalog keeps MAX_CATALOG_APIS (2,048) operations: 4,096 blocks
 * is twice that (at the bound: a 1.5 s stall and +210 MB on that machine). A file past a bound is skipped, not the whole
 * catalog. The bounds are for mistakes (a glob that matches a bundle or a data file):
 * swagger-jsdoc reads the files again by path, so a file that grows in between is read whole.
 */
export const OPENAPI_FILE_BOUNDS = {
  /** Largest file read, in bytes. */
  maxFileBytes: 1024 * 1024,
  /** Most files the patterns may match, each opened and read; the rest are not. */
  maxFiles: 1000,
  /** Most bytes read in all; a file that would pass it is skipped. */
  maxTotalBytes: 4 * 1024 * 1024,
  /** Most JSDoc blocks (`/**`) in all, what swagger-jsdoc's time grows with; a file that would pass it is skipped. */
  maxJsdocBlocks: 4096,
} as const;

/** Files a skipped-file warning names; it counts the rest. */
const NAMED_SKIPS = 5;

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
  const readable = await boundedFiles(files, logger);
  if (readable.length === 0) return undefined;
  try {
    return swaggerJsdoc({
      definition: { openapi: '3.0.0', info: { title: 'meshlet catalog', version: '0' } },
      // Each path escaped: swagger-jsdoc globs what it is given, and must read only these files.
      apis: readable.map(escapeGlob),
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

/**
 * The files `patterns` match, each a regular file read bounded (readBoundedFile, so a FIFO
 * or a device is not read without end) within OPENAPI_FILE_BOUNDS, in the order matched.
 * What is skipped is logged once: how many, the first few named with the bound they passed.
 */
async function boundedFiles(patterns: readonly string[], logger: Logger): Promise<string[]> {
  const { maxFileBytes, maxFiles, maxTotalBytes, maxJsdocBlocks } = OPENAPI_FILE_BOUNDS;
  const seen = new Set<string>();
  const readable: string[] = [];
  const skipped: string[] = [];
  let totalBytes = 0;
  let totalBlocks = 0;
  walk: for (const pattern of patterns) {
    try {
      for await (const file of glob(pattern)) {
        if (seen.has(file)) continue;
        if (seen.size === maxFiles) {
          skipped.push(`more than ${maxFiles} files matched: the rest not read`);
          break walk;
        }
        seen.add(file);
        let text: string;
        try {
          text = readBoundedFile(file, maxFileBytes, (why) => new Error(why));
        } catch (err) {
          skipped.push((err as Error).message);
          continue;
        }
        const bytes = Buffer.byteLength(text);
        const blocks = text.split('/**').length - 1;
        if (totalBytes + bytes > maxTotalBytes) {
          skipped.push(`${JSON.stringify(file)} would take the files read past ${maxTotalBytes} bytes in all`);
        } else if (totalBlocks + blocks > maxJsdocBlocks) {
          skipped.push(`${JSON.stringify(file)} would take the files read past ${maxJsdocBlocks} JSDoc blocks in all`);
        } else {
          totalBytes += bytes;
          totalBlocks += blocks;
          readable.push(file);
        }
      }
    } catch (err) {
      // A directory the walk cannot read: what it matched so far stays.
      skipped.push(`${JSON.stringify(pattern)} could not be listed (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
  }
  if (skipped.length > 0) {
    logger.warn(`catalog.openapiFiles: ${skipped.length} skipped, the rest read`, {
      code: 'MESHLET_BAD_CATALOG',
      skipped: skipped.length,
      first: skipped.slice(0, NAMED_SKIPS),
      maxFileBytes,
      maxFiles,
      maxTotalBytes,
      maxJsdocBlocks,
    });
  }
  return readable;
}

/** A path as a glob that matches only itself (glob's backslash escape). */
const escapeGlob = (path: string): string => path.replace(/[\\*?[\]{}()!+@]/g, '\\$&');

async function importSwaggerJsdoc(): Promise<SwaggerJsdoc> {
  // A variable specifier keeps TypeScript from needing the (optional) package's types.
  const name = 'swagger-jsdoc';
  const mod = (await import(name)) as { default?: unknown };
  const fn = mod.default ?? mod;
  if (typeof fn !== 'function') throw new Error('swagger-jsdoc did not export a function');
  return fn as SwaggerJsdoc;
}
