import { type Instance, NoInstanceError, type Registry, UnknownServiceError, type Unsubscribe } from '@meshlet/core';

interface ServiceEntry {
  instances: readonly Instance[];
  next: number;
  unsubscribe: Unsubscribe;
  readonly ready: Promise<void>;
}

/**
 * A local view of the registry: which names are services, and the healthy instances of
 * each service this process has called. It follows the registry's watches, so a call
 * reads memory, never the network. A name once seen stays a service for the life of the
 * process, so a service whose last instance went away fails with NoInstanceError instead
 * of falling through to DNS.
 */
export class ServiceDirectory {
  readonly #registry: Registry;
  readonly #known = new Set<string>();
  readonly #entries = new Map<string, ServiceEntry>();
  readonly #unsubscribeServices: Unsubscribe;
  #servicesLoaded = false;
  readonly #servicesReady: Promise<void>;

  constructor(registry: Registry) {
    this.#registry = registry;
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
    return this.#known.has(name);
  }

  /** The healthy instances of `service`, as last seen. */
  async instances(service: string): Promise<readonly Instance[]> {
    if (!(await this.isService(service))) throw new UnknownServiceError(service);
    const entry = this.#entries.get(service) ?? this.#follow(service);
    if (entry.instances.length === 0) await entry.ready;
    return entry.instances;
  }

  /** Picks a healthy instance of `service`, round robin. */
  async pick(service: string): Promise<Instance> {
    const instances = await this.instances(service);
    const entry = this.#entries.get(service);
    if (instances.length === 0 || !entry) throw new NoInstanceError(service);
    const chosen = instances[entry.next++ % instances.length];
    if (entry.next >= Number.MAX_SAFE_INTEGER) entry.next = 0;
    // biome-ignore lint/style/noNonNullAssertion: the index is in range: length > 0 was checked.
    return chosen!;
  }

  close(): void {
    this.#unsubscribeServices();
    for (const e of this.#entries.values()) e.unsubscribe();
    this.#entries.clear();
  }

  #follow(service: string): ServiceEntry {
    let markReady!: () => void;
    const ready = new Promise<void>((resolve) => {
      markReady = resolve;
    });
    const entry: ServiceEntry = {
      instances: [],
      next: 0,
      ready,
      unsubscribe: () => {},
    };
    this.#entries.set(service, entry);
    entry.unsubscribe = this.#registry.watch(service, (instances) => {
      entry.instances = instances;
      markReady();
    });
    return entry;
  }
}
