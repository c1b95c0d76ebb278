import { CATALOG_META_KEY } from '@meshlet/auth';
import { ADMIN_META_KEY, encodeTags, type Instance, MeshletError, MetaKey } from '@meshlet/core';
import { REGISTERED_AT_META } from '@meshlet/route';
import type { MeshMetadataKey } from './mesh-metadata.js';
import { checkAddress } from './mesh-option-checks.js';
import type { MeshOptions } from './mesh-options.js';
import { type MeshSettings, validPort } from './mesh-settings.js';
import type { OwnService } from './own-service.js';
import type { ServiceCatalog } from './service-catalog.js';

/**
 * This process as an instance of its service in the registry: what `register` puts there
 * (address, port, metadata with the registration time for callers' warm-up, the admin path
 * and the catalog's hash), the `x-meshlet-caller` header that names it on every call, and
 * deregistration, which never throws (the registry reaps an instance whose check fails).
 * It owns the order: registrations run one at a time, in the order asked; the instance is
 * this process's only once the registry has taken it, and one that a later registration
 * replaced under another id is deregistered; a deregistration waits for them all.
 */
export class Registration {
  readonly #settings: MeshSettings;
  readonly #options: MeshOptions;
  readonly #own: OwnService;
  readonly #catalog: ServiceCatalog | undefined;
  readonly #adminPath: string | undefined;
  /** The instance the registry took, until deregistered. */
  #instance: Instance | undefined;
  /** The last registration asked for, while on its way: the next one, and a deregistration, wait for it. */
  #registering: Promise<Instance> | undefined;
  #callerHeader: string;
  /** The gRPC port (mesh.grpc.serve), registered as `Meta.gRPC_port`. */
  #grpcPort: number | undefined;

  constructor(
    settings: MeshSettings,
    options: MeshOptions,
    parts: { readonly own: OwnService; readonly catalog: ServiceCatalog | undefined; readonly adminPath: string | undefined },
  ) {
    this.#settings = settings;
    this.#options = options;
    this.#own = parts.own;
    this.#catalog = parts.catalog;
    this.#adminPath = parts.adminPath;
    this.#callerHeader = this.#encodeCaller();
  }

  /** This process's instance while registered. */
  get instance(): Instance | undefined {
    return this.#instance;
  }

  /** The `x-meshlet-caller` value: service, version, namespace and, once registered, the instance. */
  get callerHeader(): string {
    return this.#callerHeader;
  }

  /** Sets the gRPC port written with the next registration. */
  setGrpcPort(port: number): void {
    this.#grpcPort = port;
  }

  /**
   * Registers this process's instance (again, with `overrides`), once the registration before
   * it has landed or failed: two at once would leave whichever landed last registered, and
   * the other unknown to the deregistration. A deregistration meanwhile waits for it.
   */
  register(overrides: { port?: number; address?: string } = {}): Promise<Instance> {
    const before = this.#registering?.catch(() => undefined) ?? Promise.resolve();
    const registering = before.then(() => this.#register(overrides));
    this.#registering = registering;
    registering
      .finally(() => {
        if (this.#registering === registering) this.#registering = undefined;
      })
      .catch(() => undefined);
    return registering;
  }

  async #register(overrides: { port?: number; address?: string }): Promise<Instance> {
    const { service, version, namespace, clock, metadata, registry } = this.#settings;
    const port = overrides.port ?? this.#options.port;
    if (port === undefined || !validPort(port)) {
      throw new MeshletError(
        'MESHLET_BAD_OPTION',
        `port: ${String(port)} — give createMesh({ port }) or register({ port }) the port the server listens on`,
      );
    }
    if (overrides.address !== undefined) checkAddress(overrides.address, 'address');
    const address = overrides.address ?? this.#options.address ?? '127.0.0.1';
    // The mesh's own keys (MESH_METADATA, which createMesh refuses in the app's metadata),
    // written after the app's so that no other value can stand for them.
    const own: { [K in MeshMetadataKey]?: string } = {
      [REGISTERED_AT_META]: String(Math.round(clock.wallNow())),
      [MetaKey.version]: version,
      [MetaKey.namespace]: namespace,
    };
    if (this.#adminPath !== undefined) own[ADMIN_META_KEY] = this.#adminPath;
    if (this.#grpcPort !== undefined) own[MetaKey.grpcPort] = String(this.#grpcPort);
    const catalogHash = await this.#catalog?.publish(this.#settings);
    if (catalogHash !== undefined) own[CATALOG_META_KEY] = catalogHash;
    const instance: Instance = {
      id: this.#options.instanceId ?? `${service}-${port}`,
      service,
      address,
      port,
      tags: [],
      metadata: { [MetaKey.secure]: 'false', ...metadata, ...own },
      health: 'passing',
    };
    await registry.register(instance);
    // Only once the registry took it: a refused registration leaves the one before in force
    // (or none), and names no instance the registry does not have.
    const replaced = this.#instance;
    this.#instance = instance;
    this.#callerHeader = this.#encodeCaller();
    this.#own.signer?.setIdentity({ service, namespace, instance: instance.id, version });
    // Registered again under another id (another port): the previous entry would otherwise
    // stay in the registry, called, after close() removed only the new one.
    if (replaced !== undefined && replaced.id !== instance.id) await this.#deregisterId(replaced.id);
    return instance;
  }

  /**
   * Deregisters the instance, once the registrations on their way have landed (or failed):
   * the instance is set only once the registry took it, so a deregistration that did not
   * wait would find none and leave the registration, when it lands, registered after the stop.
   */
  async deregister(): Promise<void> {
    await this.#registering?.catch(() => undefined);
    if (!this.#instance) return;
    const id = this.#instance.id;
    this.#instance = undefined;
    await this.#deregisterId(id);
  }

  async #deregisterId(id: string): Promise<void> {
    try {
      await this.#settings.registry.deregister(id);
    } catch (err) {
      this.#settings.logger.warn('deregistration failed; the registry will reap the instance when its check fails', {
        code: 'MESHLET_DEREGISTER_FAILED',
        error: (err as Error).message,
      });
    }
  }

  #encodeCaller(): string {
    const { service, version, namespace } = this.#settings;
    return encodeTags([
      ['service', service],
      ['version', version],
      ['namespace', namespace],
      ...(this.#instance ? [['instance', this.#instance.id] as const] : []),
    ]).header;
  }
}
