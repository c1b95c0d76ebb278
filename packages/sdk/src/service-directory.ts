import { type Instance, type Registry, UnknownServiceError, type Unsubscribe } from '@meshlet/core';

/** What the directory tells the mesh about a service it follows. */
export interface DirectoryListener {
  /** The first time a service is used: start what it needs (its rules). Awaited before the first call. */
  follow(service: string): Promise<void>;
  /**
   * Every snapshot of the service's healthy instances, with its registered instances that
   * are not passing when the registry gives them (core's InstancesListener).
   */
  instances(service: string, instances: readonly Instance[], unhealthy: readonly Instance[] | undefined): void;
}

interface Followed {
  instances: readonly Instance[];
  ready: Promise<void>;
  /** True once `ready` has resolved: calls then skip awaiting it. */
  settled: boolean;
  unsubscribe: Unsubscribe;
}

/**
 * A local view of the registry: which names are services, and the healthy instances of
 * each service this process calls, fed to routing as they change. Calls read memory,
 * never the network. A name once seen stays a service for the life of the process, so a
 * service whose last instance went away fails with NoInstanceError instead of falling
 * through to DNS.
 */
export class ServiceDirectory {
  readonly #registry: Registry;
  readonly #listener: DirectoryListener;
  readonly #known = new Set<string>();
  readonly #followed = new Map<string, Followed>();
  readonly #unsubscribeServices: Unsubscribe;
  #servicesLoaded = false;
  readonly #servicesReady: Promise<void>;

  constructor(registry: Registry, listener: DirectoryListener) {
    this.#registry = registry;
    this.#listener = listener;
    let markReady!: () => void;
    this.#servicesReady = new Promise((resolve) => {
      markReady = resolve;
    });
    this.#unsubscribeServices = registry.watchServices((names) => {
      for (const n of names) this.#known.add(n);
      this.#servicesLoaded = true;
      markReady();
    });
  }

  /** True when `name` is a service. Waits for the registry's first answer only once. */
  async isService(name: string): Promise<boolean> {
    if (!this.#servicesLoaded) await this.#servicesReady;
    return this.#known.has(name) || this.#followed.has(name);
  }

  /** Follows `service` (once) and resolves when its instances and rules are known. */
  ensure(service: string): Promise<void> {
    return (this.#followed.get(service) ?? this.#follow(service)).ready;
  }

  /**
   * True when `service` is followed and ready (ensure has resolved): the state of every
   * call after the first. Synchronous, so the call path awaits isService and ensure only
   * until then, not on every call.
   */
  isReady(service: string): boolean {
    return this.#followed.get(service)?.settled === true;
  }

  /** Like ensure, but for a name that must be a service. */
  async require(service: string): Promise<void> {
    if (!(await this.isService(service))) throw new UnknownServiceError(service);
    await this.ensure(service);
  }

  /** The healthy instances of a followed service, as last seen. */
  instances(service: string): readonly Instance[] {
    return this.#followed.get(service)?.instances ?? [];
  }

  close(): void {
    this.#unsubscribeServices();
    for (const f of this.#followed.values()) f.unsubscribe();
    this.#followed.clear();
  }

  #follow(service: string): Followed {
    let firstSnapshot!: () => void;
    const snapshot = new Promise<void>((resolve) => {
      firstSnapshot = resolve;
    });
    const entry: Followed = { instances: [], ready: snapshot, settled: false, unsubscribe: () => {} };
    this.#followed.set(service, entry);
    entry.ready = Promise.all([snapshot, this.#listener.follow(service)]).then(() => {
      entry.settled = true;
    });
    entry.unsubscribe = this.#registry.watch(service, (instances, unhealthy) => {
      entry.instances = instances;
      this.#listener.instances(service, instances, unhealthy);
      firstSnapshot();
    });
    return entry;
  }
}
