import { type KvStore, type Logger, MeshletError, silentLogger } from '@meshlet/core';
import { type ApiCatalog, type ApiEntry, createCatalog } from './api-catalog.js';

/** Where catalogs live in the KvStore: `meshlet/catalog/<service>`. */
export const CATALOG_PREFIX = 'meshlet/catalog/';
/** The registration `Meta` key that carries the catalog's hash. */
export const CATALOG_META_KEY = 'apis-hash';
/**
 * Largest catalog value written, in bytes of UTF-8: half Consul's value limit (`kv_max_value_size`,
 * 512 KiB of request body by default; past it Consul answers 413). Counted in bytes because
 * Consul counts bytes: 256 Ki characters of CJK summaries are 570 KB.
 */
export const MAX_CATALOG_VALUE = 256 * 1024;

/** A catalog as stored and listed. */
export interface PublishedCatalog extends ApiCatalog {
  readonly service: string;
}

/**
 * Writes `catalog` under `meshlet/catalog/<service>` and returns its hash, for the
 * registration `Meta` (`apis-hash`). An unchanged catalog is not written again, so a fleet
 * restarting does not churn the store. Instances of one service share the key: the last
 * one to start with a different catalog wins (a rolling upgrade ends with the new one).
 * Throws MeshletError `MESHLET_CATALOG_TOO_LARGE` over MAX_CATALOG_VALUE.
 */
export async function publishCatalog(kv: KvStore, service: string, catalog: ApiCatalog): Promise<string> {
  const key = `${CATALOG_PREFIX}${service}`;
  const value = JSON.stringify({ service, hash: catalog.hash, apis: catalog.apis });
  const bytes = Buffer.byteLength(value);
  if (bytes > MAX_CATALOG_VALUE) {
    throw new MeshletError(
      'MESHLET_CATALOG_TOO_LARGE',
      `catalog of ${service} is ${bytes} bytes of UTF-8 (limit ${MAX_CATALOG_VALUE}): drop summaries or split the service`,
    );
  }
  const current = await kv.get(key);
  if (current?.value !== value) await kv.put(key, value);
  return catalog.hash;
}

/** The published catalog of `service`, or undefined when there is none or it does not parse. */
export async function readCatalog(kv: KvStore, service: string, logger: Logger = silentLogger): Promise<PublishedCatalog | undefined> {
  const entry = await kv.get(`${CATALOG_PREFIX}${service}`);
  return entry === undefined ? undefined : decode(entry.key, entry.value, logger);
}

/** Every published catalog, by service name; entries that do not parse are logged and left out. */
export async function listCatalogs(kv: KvStore, logger: Logger = silentLogger): Promise<readonly PublishedCatalog[]> {
  const out: PublishedCatalog[] = [];
  for (const e of await kv.list(CATALOG_PREFIX)) {
    const c = decode(e.key, e.value, logger);
    if (c) out.push(c);
  }
  return out;
}

function decode(key: string, value: string, logger: Logger): PublishedCatalog | undefined {
  const service = key.slice(CATALOG_PREFIX.length);
  try {
    const raw = JSON.parse(value) as { apis?: unknown };
    if (!Array.isArray(raw.apis)) throw new Error('no "apis" array');
    // Re-normalise: whatever wrote it, readers get valid templates and a hash they can recompute.
    const catalog = createCatalog(raw.apis as ApiEntry[], logger);
    return { service, apis: catalog.apis, hash: catalog.hash };
  } catch (err) {
    logger.warn('catalog entry ignored: not valid JSON', { code: 'MESHLET_BAD_CATALOG', key, reason: (err as Error).message });
    return undefined;
  }
}
