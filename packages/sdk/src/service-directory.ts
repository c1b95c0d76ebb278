import { type Clock, type Instance, type Logger, type Registry, UnknownServiceError, type Unsubscribe } from '@meshlet/core';

/** What the directory tells the mesh about a service it follows. */
export interface DirectoryListener {
  /**
   * The first time a service is used (and again after it was released): start what it
   * needs (its rules). Awaited before the first call. May throw (the cap on destinations
   * followed at once): the service is then not followed, and the call fails with that error.
   */
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
  /** When a call to the service was last seen (`ensure`, or a look after `use`), on the mesh's clock. */
  lastCalled: number;
  /** Called since `lastCalled` was last read: `use` sets a flag instead of reading the clock on every call. */
  calledSince: boolean;
  unsubscribe: Unsubscribe;
}

/**
 * A local view of the registry: which names are services, and the healthy instances of
 * each service this process calls, fed to routing as they change. Calls read memory,
 * never the network. A name once seen stays a service for the life of the process, so a
 * service whose last instance went away fails with NoInstanceError instead of falling
 * through to DNS. A service is followed (one registry watch) from its first call until
 * the mesh releases it (`unfollow`: idle, see Destinations); the next call follows it again.
 */
/** Distinct unknown single-label hosts said in the log, at most: the lines a process can write about them. */
const UNKNOWN_HOSTS_KEPT = 64;

export class ServiceDirectory {
  readonly #registry: Registry;
  readonly #clock: Clock;
  readonly #listener: DirectoryListener;
  readonly #logger: Logger;
  readonly #known = new Set<string>();
  /** Single-label hosts called that were no service, each said once (MESHLET_NOT_A_SERVICE), at most UNKNOWN_HOSTS_KEPT. */
  readonly #unknownHosts = new Set<string>();
  readonly #followed = new Map<string, Followed>();
  readonly #unsubscribeServices: Unsubscribe;
  #servicesLoaded = false;
  readonly #servicesReady: Promise<void>;

  /** `logger`: the mesh's (throttled, counted), for the calls to a host that is not a service (`governs`). */
  constructor(registry: Registry, clock: Clock, logger: Logger, listener: DirectoryListener) {
    this.#registry = registry;
    this.#clock = clock;
    this.#listener = listener;
    this.#logger = logger;
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

  /**
   * Whether a call to `host` is governed: isService, what every front end (fetch, request,
   * axios, got) asks of a host it has not called as a service yet. A single-label host that
   * is not a service is most likely a misspelt or never registered one, whose call would fail
   * at DNS with nothing said: `MESHLET_NOT_A_SERVICE`, once per host (so not a per-request
   * code: each host's line is written, none throttled behind another's), counted. At warn,
   * the mesh's default level, or the one it is for would not see it.
   */
  async governs(host: string): Promise<boolean> {
    if (await this.isService(host)) return true;
    if (singleLabel(host)) {
      // Once per host, for the first UNKNOWN_HOSTS_KEPT: a misspelt service is said when it is
      // first called, and a short name called on purpose (a Kubernetes service outside the
      // mesh) once, not every minute for the life of the process. `services`: what the
      // registry listed (0: not read yet, or empty).
      const cut = host.slice(0, 128);
      if (this.#unknownHosts.size < UNKNOWN_HOSTS_KEPT && !this.#unknownHosts.has(cut)) {
        this.#unknownHosts.add(cut);
        this.#logger.warn('call sent ungoverned, as a plain HTTP call through DNS: its host is not a service in the registry', {
          code: 'MESHLET_NOT_A_SERVICE',
          host: cut,
          services: this.#known.size,
        });
      }
    }
    return false;
  }

  /**
   * Follows `service` (once while it is followed) and resolves when its instances and rules
   * are known; notes the call. Rejects when the listener refuses to follow it (the cap).
   */
  ensure(service: string): Promise<void> {
    const entry = this.#followed.get(service);
    if (entry === undefined) {
      try {
        return this.#follow(service).ready;
      } catch (err) {
        return Promise.reject(err);
      }
    }
    entry.lastCalled = this.#clock.now();
    return entry.ready;
  }

  /**
   * Notes a call to `service` (so it is not released as idle) and says whether it is
   * followed and ready (ensure has resolved): the state of every call after the first.
   * Synchronous, so the call path awaits isService and ensure only until then, not on every call.
   */
  use(service: string): boolean {
    const entry = this.#followed.get(service);
    if (entry?.settled !== true) return false;
    entry.calledSince = true;
    return true;
  }

  /**
   * When a call to `service` was last seen, as of `now`: a call since the last look counts
   * as made `now` (idle release is judged at a look's granularity, not per call);
   * +Infinity while its first call waits for it (it is in use), undefined when it is not followed.
   */
  lastCalled(service: string, now: number): number | undefined {
    const entry = this.#followed.get(service);
    if (entry === undefined) return undefined;
    if (!entry.settled) return Number.POSITIVE_INFINITY;
    if (entry.calledSince) {
      entry.calledSince = false;
      entry.lastCalled = now;
    }
    return entry.lastCalled;
  }

  /** Stops following `service` (its registry watch ends); the next call follows it again, as a first call. */
  unfollow(service: string): void {
    const entry = this.#followed.get(service);
    if (entry === undefined) return;
    this.#followed.delete(service);
    entry.unsubscribe();
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
    // Throws before anything is kept when the listener refuses the service (the cap).
    const rules = this.#listener.follow(service);
    const entry: Followed = {
      instances: [],
      ready: snapshot,
      settled: false,
      lastCalled: this.#clock.now(),
      calledSince: false,
      unsubscribe: () => {},
    };
    this.#followed.set(service, entry);
    entry.ready = Promise.all([snapshot, rules]).then(() => {
      entry.settled = true;
    });
    entry.unsubscribe = this.#registry.watch(service, (instances, unhealthy) => {
      // A snapshot already on its way when the service was released is not its concern any more.
      if (this.#followed.get(service) !== entry) return;
      entry.instances = instances;
      this.#listener.instances(service, instances, unhealthy);
      firstSnapshot();
    });
    return entry;
  }
}

/**
 * A host of one label, as a service name is: no dot (a URL writes an all-digit host as a
 * dotted IPv4 address), not an IPv6 address (a `:`), not `localhost`.
 */
function singleLabel(host: string): boolean {
  return host !== '' && host !== 'localhost' && !host.includes('.') && !host.includes(':');
}
