import type { IncomingHttpHeaders } from 'node:http';
import { type CatalogAnswer, catalogAnswers, loadCatalog, publishCatalog } from '@meshlet/auth';
import { ApiMatcher, MeshletError } from '@meshlet/core';
import type { MeshOptions } from './mesh-options.js';
import type { MeshSettings } from './mesh-settings.js';

type Catalog = Awaited<ReturnType<typeof loadCatalog>>;
type CatalogOptions = { readonly [K in keyof NonNullable<MeshOptions['catalog']>]?: NonNullable<MeshOptions['catalog']>[K] | undefined };

/**
 * This service's API catalog (OpenAPI JSDoc or declared routes), when configured: served
 * at its path, published with the registration, and used to name server spans by route.
 */
export class ServiceCatalog {
  /**
   * The catalog endpoint's answer to a request (undefined for other paths), unless its path
   * is false. The inbound pipeline answers it where it would call the app: after the
   * service's auth rules and limits, as any API of the service.
   */
  readonly answer: ((method: string, path: string, headers: IncomingHttpHeaders) => CatalogAnswer | undefined) | undefined;
  readonly #loading: Promise<Catalog>;
  #routes: ApiMatcher | undefined;

  /**
   * A catalog when options ask for one: its own option, else what `auth` carried before there
   * was one (so with `auth` the catalog is on, as it was then; its endpoint is admitted as any API).
   */
  static of(settings: MeshSettings, options: MeshOptions): ServiceCatalog | undefined {
    const auth = options.auth;
    const catalogOptions =
      options.catalog ?? (auth ? { openapiFiles: auth.openapiFiles, routes: auth.routes, path: auth.catalogPath } : undefined);
    return catalogOptions ? new ServiceCatalog(settings, catalogOptions as CatalogOptions) : undefined;
  }

  private constructor(settings: MeshSettings, options: CatalogOptions) {
    this.#loading = loadCatalog({
      ...(options.openapiFiles ? { openapiFiles: options.openapiFiles } : {}),
      ...(options.routes ? { routes: options.routes } : {}),
      logger: settings.logger,
    });
    let loaded: Catalog | undefined;
    void this.#loading.then((c) => {
      loaded = c;
      if (c.apis.length > 0) this.#routes = new ApiMatcher(c.apis);
    });
    this.answer =
      options.path !== false
        ? catalogAnswers(() => loaded ?? { apis: [], hash: '' }, {
            service: settings.service,
            ...(options.path ? { path: options.path } : {}),
          })
        : undefined;
  }

  /** The route template of a request, once the catalog is loaded. */
  routeOf(method: string, path: string): string | undefined {
    return this.#routes?.match(method, path)?.entry.path;
  }

  /** Publishes the catalog in the rule store; its hash, which the registration names it by (`apis-hash`), or none. */
  async publish(settings: MeshSettings): Promise<string | undefined> {
    const c = await this.#loading;
    if (c.apis.length === 0) return undefined;
    try {
      return await publishCatalog(settings.kv, settings.service, c);
    } catch (err) {
      settings.logger.warn('API catalog not published; registering without it', {
        // The cause's own code: MESHLET_CATALOG_TOO_LARGE tells what to change, a store's error that it failed.
        code: err instanceof MeshletError ? err.code : 'MESHLET_BAD_CATALOG',
        error: (err as Error).message,
      });
      return undefined;
    }
  }
}
