import { mkdir, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import {
  AdoptableLogger,
  type AdoptsLogger,
  type Clock,
  callListener,
  consoleLogger,
  failureReason,
  type Health,
  type Instance,
  type InstancesListener,
  instanceAddressProblem,
  instanceOrigin,
  instancePortProblem,
  type Logger,
  MeshletError,
  MetaKey,
  type Registry,
  readBoundedFile,
  sleep,
  systemClock,
  type Unsubscribe,
  urlHost,
} from '@meshlet/core';
import { BlockingWatch } from './blocking-watch.js';
import { CONSUL_MAX_BODY_BYTES, ConsulClient, type ConsulClientOptions, type ConsulError } from './consul-client.js';
import { checkConsulMeta } from './consul-meta.js';

/** How Consul checks an instance's health. */
export type HealthCheck =
  /** Consul calls the app: `GET <scheme>://<address>:<port><path>` every `interval`. Spring's default. */
  | { readonly type: 'http'; readonly path?: string; readonly interval?: string; readonly timeout?: string }
  /** The app calls Consul every ttl×2/3 to say it is alive. */
  | { readonly type: 'ttl'; readonly ttl?: string }
  /**
   * Consul calls the gRPC health service (`grpc.health.v1.Health/Check`) on the instance's
   * gRPC port (`Meta.gRPC_port`, else its port) every `interval`: for gRPC-only services
   * (`mesh.grpc.serve` adds the health service).
   */
  | { readonly type: 'grpc'; readonly interval?: string; readonly timeout?: string };

export interface ConsulRegistryOptions extends ConsulClientOptions {
  /** Default: HTTP check of `/health` every 10 s, as Spring Cloud Consul does for `/actuator/health`. */
  readonly healthCheck?: HealthCheck;
  /** Consul removes an instance critical this long. Default `1m` (Consul's minimum). */
  readonly deregisterCriticalAfter?: string;
  /**
   * For Spring Cloud Hoxton (2.2.x) estates, which keep metadata in tags: also write
   * metadata into tags as `key=value`, and read such tags of other instances as metadata.
   */
  readonly metadataInTags?: boolean;
  /**
   * A file where the last known instances are kept, so that a process started while
   * Consul is down still routes. Default: none.
   */
  readonly snapshotFile?: string;
  /**
   * With a `snapshotFile` that knows the service: how long the first answer waits for
   * Consul before the snapshot's instances are used (Consul's answer replaces them when it
   * comes). Bounds a start against an agent that accepts connections but does not answer;
   * an agent that refuses them falls back at once. Default 100 ms.
   */
  readonly snapshotWaitMs?: number;
  /** Time for the snapshot wait and the resync grace; tests pass a ManualClock. Default systemClock. */
  readonly clock?: Clock;
  readonly waitSeconds?: number;
  /**
   * How often to check that this process's own instances are still known to the agent,
   * and register them again if not (an agent restarted without its state). Default 1 000 ms:
   * one small request to the local agent per instance (answered by the agent itself, not
   * the servers), so that a restarted agent has this process's instances back within about
   * a second. While the agent is down the check waits on the client's probe instead.
   */
  readonly reregisterCheckMs?: number;
  /**
   * After an outage, for this long, an instance known before it that Consul reports but
   * not as passing is kept (a restarted agent reports restored checks critical until each
   * has run once), and an answer with no healthy instance at all is not believed (the
   * services have not registered again yet). Instances Consul no longer has go at once.
   * Default 15 000 ms.
   */
  readonly resyncGraceMs?: number;
  readonly logger?: Logger;
}

/** One entry of Consul's `/v1/health/service/<name>`. */
export interface HealthEntry {
  Node: { Node: string; Address: string };
  Service: { ID: string; Service: string; Address: string; Port: number; Tags: string[] | null; Meta: Record<string, string> | null };
  Checks: { Status: string; ServiceID: string }[];
}

/** One registration of this process's, kept registered (see #registered). */
interface Registration {
  readonly body: string;
  /** The timer that checks the agent still has it; set once its first PUT succeeded. */
  keeper: NodeJS.Timeout | undefined;
  /** Its PUT on its way to the agent, if one is. */
  putting: Promise<unknown> | undefined;
}

interface CatalogWatch {
  readonly watch: BlockingWatch<Record<string, string[]>>;
  names: readonly string[] | undefined;
  readonly listeners: Set<(s: readonly string[]) => void>;
}

interface ServiceWatch {
  readonly listeners: Set<InstancesListener>;
  instances: readonly Instance[] | undefined;
  /** The registered instances not passing, as last delivered; undefined when the snapshot file spoke. */
  unhealthy: readonly Instance[] | undefined;
  readonly watch: BlockingWatch<HealthEntry[]>;
  /** Resolves with the first answer (from Consul, or the snapshot during an outage). */
  readonly first: Promise<void>;
  /** Consul's last answer, for the look again when a resync grace ends. */
  lastAnswer: HealthEntry[] | undefined;
  graceTimer: (() => void) | undefined;
  /** The grace of this recovery was logged (once per recovery). */
  graceLogged: boolean;
  /** Ids of the entries Consul's last answer had that were left out: only new ones are logged. */
  badIds: ReadonlySet<string>;
}

export interface ConsulRegistryStatus {
  /** True while any watch cannot reach Consul and serves the last known state. */
  readonly degraded: boolean;
  /** Failed Consul queries since start. */
  readonly errors: number;
  readonly lastError: string | undefined;
  /** Snapshot files that could not be read (corrupt, unreadable) or written, since start. */
  readonly snapshotErrors: number;
}

/**
 * The Registry port on Consul, registering the way Spring Cloud Consul does so that
 * Spring's DiscoveryClient sees Meshlet services as its own, and following services with
 * blocking queries so that calls read memory. During a Consul outage every watch keeps
 * its last known instances (and the snapshot file keeps them across a restart).
 */
export class ConsulRegistry implements Registry, AdoptsLogger {
  readonly client: ConsulClient;
  readonly #opts: ConsulRegistryOptions;
  /**
   * Catalog entries left out (MESHLET_REGISTRY_BAD_INSTANCE): anyone who can register in
   * Consul decides how many there are, so at most one line a minute (with the count since
   * the last), by this logger or, once adopted, by the mesh's, which counts each.
   */
  readonly #logger: AdoptableLogger;
  readonly #services = new Map<string, ServiceWatch>();
  readonly #heartbeats = new Map<string, NodeJS.Timeout>();
  /**
   * This process's registrations, to register again after an agent lost them. An entry is
   * one registration: deregister (and close) remove it, and work begun for it before that
   * (its PUT, a check whether the agent still has it) sees, after each await, that it is no
   * longer the id's entry and stops.
   */
  readonly #registered = new Map<string, Registration>();
  #recoveredAt = Number.NEGATIVE_INFINITY;
  #catalog: CatalogWatch | undefined;
  #snapshot: Record<string, Instance[]> | undefined;
  /** What Consul said in this process, per service: what this process writes into the snapshot file. */
  readonly #heard = new Map<string, Instance[]>();
  #failing = new Set<string>();
  #errors = 0;
  #lastError: string | undefined;
  #snapshotErrors = 0;
  #snapshotWrite: Promise<void> = Promise.resolve();
  #snapshotLogged = false;
  /** The snapshot file was read and had the right shape (a refused one is logged as such, not as routing). */
  #snapshotUsable = false;
  /** Set while a round of #reregisterMissing is on its way. */
  #checking = false;
  /** Set while a failed re-registration check waits for the agent to answer again. */
  #awaitingAgent = false;
  readonly #closed = new AbortController();

  constructor(options: ConsulRegistryOptions = {}) {
    this.client = new ConsulClient(options);
    this.#opts = options;
    this.#logger = new AdoptableLogger(options.logger, consoleLogger('warn', 'meshlet-registry'), {
      codes: [BAD_INSTANCE],
      ...(options.clock ? { clock: options.clock } : {}),
    });
  }

  /**
   * Logs through `logger` from now on (its client too), when built without a `logger`: the
   * mesh given this registry calls it, so that its conditions are the mesh's (AdoptsLogger).
   */
  adoptLogger(logger: Logger): void {
    this.#logger.adoptLogger(logger);
    this.client.adoptLogger(logger);
  }

  /** Gives `logger` back (its mesh closed): the one adopted before it, or this store's own, logs again. */
  releaseLogger(logger: Logger): void {
    this.#logger.releaseLogger(logger);
    this.client.releaseLogger(logger);
  }

  get status(): ConsulRegistryStatus {
    return { degraded: this.#failing.size > 0, errors: this.#errors, lastError: this.#lastError, snapshotErrors: this.#snapshotErrors };
  }

  async register(instance: Instance): Promise<void> {
    // Closed: nothing may be registered (and kept registered by a keeper) any more.
    if (this.#closed.signal.aborted)
      throw new MeshletError('MESHLET_CLOSED', `register(${JSON.stringify(instance.id.slice(0, 128))}): this registry is closed`);
    const meta: Record<string, string> = { [MetaKey.secure]: 'false', ...instance.metadata };
    checkConsulMeta(meta);
    const secure = meta[MetaKey.secure] === 'true';
    const check = this.#opts.healthCheck ?? { type: 'http' };
    const deregister = this.#opts.deregisterCriticalAfter ?? '1m';
    const tags = [...instance.tags, ...(this.#opts.metadataInTags ? Object.entries(meta).map(([k, v]) => `${k}=${v}`) : [])];
    // Registered only once the app is ready (lossless start), so the check starts passing
    // rather than Consul's default critical, which would hide the instance for one interval.
    const body = {
      ID: instance.id,
      Name: instance.service,
      Address: instance.address,
      Port: instance.port,
      Tags: tags,
      Meta: meta,
      Check:
        check.type === 'http'
          ? {
              HTTP: `${instanceOrigin({ ...instance, metadata: meta })}${check.path ?? '/health'}`,
              Interval: check.interval ?? '10s',
              ...(check.timeout ? { Timeout: check.timeout } : {}),
              DeregisterCriticalServiceAfter: deregister,
              Status: 'passing',
            }
          : check.type === 'grpc'
            ? {
                GRPC: `${urlHost(instance.address)}:${meta[MetaKey.grpcPort] ?? instance.port}`,
                GRPCUseTLS: secure,
                Interval: check.interval ?? '10s',
                ...(check.timeout ? { Timeout: check.timeout } : {}),
                DeregisterCriticalServiceAfter: deregister,
                Status: 'passing',
              }
            : { TTL: check.ttl ?? '30s', DeregisterCriticalServiceAfter: deregister, Status: 'passing' },
    };
    const registration: Registration = { body: JSON.stringify(body), keeper: undefined, putting: undefined };
    const previous = this.#registered.get(instance.id);
    if (previous?.keeper) clearInterval(previous.keeper);
    this.#registered.set(instance.id, registration);
    try {
      await this.#put(registration);
    } catch (err) {
      if (this.#registered.get(instance.id) === registration) this.#registered.delete(instance.id);
      throw err;
    }
    // Deregistered (or closed) while the PUT was on its way: nothing to keep.
    if (this.#registered.get(instance.id) !== registration || this.#closed.signal.aborted) return;
    if (check.type === 'ttl') this.#startHeartbeat(instance.id, parseDuration(check.ttl ?? '30s'));
    this.#keepRegistered(registration);
  }

  async deregister(instanceId: string): Promise<void> {
    const kept = this.#registered.get(instanceId);
    if (kept?.keeper) clearInterval(kept.keeper);
    this.#registered.delete(instanceId);
    const hb = this.#heartbeats.get(instanceId);
    if (hb) clearInterval(hb);
    this.#heartbeats.delete(instanceId);
    // A registration of the id on its way to the agent goes first: the agent would
    // otherwise apply it after the deregistration and have the instance back.
    await kept?.putting?.catch(() => {});
    await this.client.request('PUT', `/v1/agent/service/deregister/${encodeURIComponent(instanceId)}`);
  }

  /** Sends a registration's PUT, recorded on it while on its way (see deregister). */
  #put(registration: Registration): Promise<unknown> {
    const putting = this.client.request('PUT', '/v1/agent/service/register', { body: registration.body });
    registration.putting = putting;
    return putting.finally(() => {
      if (registration.putting === putting) registration.putting = undefined;
    });
  }

  /** Tells Consul a TTL-checked instance is alive (done on a timer by register; exposed for apps that prefer to drive it). */
  async pass(instanceId: string): Promise<void> {
    await this.client.request('PUT', `/v1/agent/check/pass/service:${encodeURIComponent(instanceId)}`);
  }

  async healthyInstances(service: string): Promise<readonly Instance[]> {
    // Follow for as long as it takes to answer (an existing watch answers from memory).
    const hold = this.watch(service, () => {});
    try {
      const w = this.#follow(service);
      await w.first;
      return w.instances ?? [];
    } finally {
      hold();
    }
  }

  /**
   * Calls a watch's listener (application code) so that a throw or an async listener's
   * rejection is logged, not carried into the watch that delivered: the other listeners
   * are still told, and the watch goes on.
   */
  #tell(what: string, call: () => unknown): void {
    callListener(call, (err) =>
      this.#logger.warn('a registry watch listener failed', {
        code: 'MESHLET_REGISTRY_LISTENER_FAILED',
        watch: what,
        error: failureReason(err).slice(0, 200),
      }),
    );
  }

  async services(): Promise<readonly string[]> {
    return new Promise((resolve) => {
      const off = this.watchServices((names) => {
        queueMicrotask(() => off());
        resolve(names);
      });
    });
  }

  watch(service: string, listener: InstancesListener): Unsubscribe {
    const w = this.#follow(service);
    w.listeners.add(listener);
    if (w.instances) listener(w.instances, w.unhealthy);
    return () => {
      w.listeners.delete(listener);
      // Nobody follows the service any more: stop its blocking query.
      if (w.listeners.size === 0 && this.#services.get(service) === w) {
        this.#services.delete(service);
        w.graceTimer?.();
        w.watch.stop();
      }
    };
  }

  watchServices(listener: (services: readonly string[]) => void): Unsubscribe {
    const catalog = this.#catalog ?? this.#followCatalog();
    this.#catalog = catalog;
    catalog.listeners.add(listener);
    if (catalog.names) listener(catalog.names);
    return () => {
      catalog.listeners.delete(listener);
      if (catalog.listeners.size === 0 && this.#catalog === catalog) {
        this.#catalog = undefined;
        catalog.watch.stop();
      }
    };
  }

  /** Stops every watch and heartbeat; does not deregister. */
  async close(): Promise<void> {
    this.#closed.abort();
    for (const hb of this.#heartbeats.values()) clearInterval(hb);
    this.#heartbeats.clear();
    for (const r of this.#registered.values()) if (r.keeper) clearInterval(r.keeper);
    this.#registered.clear();
    for (const w of this.#services.values()) {
      w.graceTimer?.();
      w.watch.stop();
    }
    this.#catalog?.watch.stop();
    await Promise.all([...this.#services.values()].map((w) => w.watch.done));
    await this.#snapshotWrite;
  }

  #follow(service: string): ServiceWatch {
    const existing = this.#services.get(service);
    if (existing) return existing;
    let resolveFirst!: () => void;
    const first = new Promise<void>((r) => {
      resolveFirst = r;
    });
    // `unhealthy`: what Consul has registered but not passing (undefined from the snapshot
    // file, which keeps only passing ones), so routing tells a deregistration from a failing check.
    const deliver = (instances: readonly Instance[], unhealthy: readonly Instance[] | undefined) => {
      entry.instances = instances;
      entry.unhealthy = unhealthy;
      resolveFirst();
      for (const l of [...entry.listeners]) this.#tell(service, () => l(instances, unhealthy));
    };
    const key = `service:${service}`;
    const clock = this.#opts.clock ?? systemClock;
    const grace = this.#opts.resyncGraceMs ?? 15_000;
    /** Consul's answer, as delivered to listeners: right after an outage, a drop is not believed at once. */
    const apply = (entries: HealthEntry[]) => {
      entry.lastAnswer = entries;
      const all = this.#instancesOf(service, entry, entries);
      const healthy = all.filter((i) => i.health === 'passing');
      const unhealthy = all.filter((i) => i.health !== 'passing');
      const graceLeft = this.#recoveredAt + grace - clock.now();
      const known = entry.instances ?? [];
      if (graceLeft > 0 && known.length > 0) {
        // A restarted agent answers before its services have registered again (none at
        // all), or with their restored checks critical until each has run once (a server
        // restart, a client agent's data dir): keep the last known instances it reports but
        // not as passing, until they pass or the grace ends. Instances it no longer has at
        // all go at once.
        const passing = new Set(healthy.map((i) => i.id));
        const reported = new Set(all.map((i) => i.id));
        const kept = healthy.length === 0 ? known : known.filter((i) => !passing.has(i.id) && reported.has(i.id));
        if (kept.length > 0) {
          entry.graceTimer ??= clock.setTimeout(() => {
            entry.graceTimer = undefined;
            if (this.#services.get(service) === entry && entry.lastAnswer) apply(entry.lastAnswer);
          }, graceLeft);
          if (!entry.graceLogged) {
            entry.graceLogged = true;
            this.#logger.warn('consul came back reporting fewer healthy instances: keeping the last known until they pass again', {
              code: 'MESHLET_REGISTRY_RESYNC',
              service,
              kept: kept.map((i) => i.id),
              graceMs: grace,
            });
          }
          if (healthy.length > 0) {
            const keptIds = new Set(kept.map((i) => i.id));
            deliver(Object.freeze([...healthy, ...kept]), Object.freeze(unhealthy.filter((i) => !keptIds.has(i.id))));
          }
          return;
        }
      }
      deliver(Object.freeze(healthy), Object.freeze(unhealthy));
      this.#remember(service, healthy);
    };
    const watch = new BlockingWatch<HealthEntry[]>({
      query: (index, wait, signal) =>
        this.client.request<HealthEntry[]>('GET', `/v1/health/service/${encodeURIComponent(service)}?index=${index}&wait=${wait}s`, {
          signal,
          expect: 'list',
          timeoutMs: (wait + wait / 16 + 5) * 1000,
        }),
      waitSeconds: this.#opts.waitSeconds ?? 25,
      probe: (signal) => this.client.probe.wait(signal),
      onChange: (entries) => apply(entries),
      onError: (err, consecutive) => {
        this.#degrade(key, err, consecutive);
        if (consecutive === 1 && entry.instances === undefined) {
          // Consul is down before we ever heard from it: fall back to the snapshot file.
          void this.#fromSnapshot(service).then((saved) => {
            if (entry.instances !== undefined) return;
            this.#routingFromSnapshot('consul is unreachable');
            deliver(Object.freeze(saved ?? []), undefined);
          });
        }
      },
      onRecover: () => this.#recover(key),
    });
    const entry: ServiceWatch = {
      listeners: new Set(),
      instances: undefined,
      unhealthy: undefined,
      watch,
      first,
      lastAnswer: undefined,
      graceTimer: undefined,
      graceLogged: false,
      badIds: new Set(),
    };
    this.#services.set(service, entry);
    watch.start();
    // Consul slow to give its first answer: the snapshot's instances of the service, if it has them.
    this.#afterSnapshotWait(async () => {
      if (entry.instances !== undefined) return;
      const saved = await this.#fromSnapshot(service);
      if (saved === undefined || entry.instances !== undefined || this.#services.get(service) !== entry) return;
      this.#routingFromSnapshot(`consul has not answered within ${this.#opts.snapshotWaitMs ?? 100} ms`);
      deliver(Object.freeze(saved), undefined);
    });
    return entry;
  }

  /**
   * The instances of Consul's answer that can be called: an entry whose address or port
   * makes no URL (anyone who can register says what they are) is left out, and logged the
   * first answer it is in.
   */
  #instancesOf(service: string, watch: ServiceWatch, entries: readonly HealthEntry[]): Instance[] {
    const bad = new Set<string>();
    const out = callableInstances(
      entries,
      (id, problem) => {
        bad.add(id);
        if (!watch.badIds.has(id))
          this.#logger.warn('a catalog entry cannot be called: left out', {
            code: BAD_INSTANCE,
            service,
            instanceId: id.slice(0, 200),
            field: problem.field,
            reason: problem.reason,
          });
      },
      { metadataFromTags: this.#opts.metadataInTags === true },
    );
    watch.badIds = bad;
    return out;
  }

  #followCatalog(): CatalogWatch {
    const listeners = new Set<(s: readonly string[]) => void>();
    const state: CatalogWatch = {
      listeners,
      names: undefined,
      watch: new BlockingWatch<Record<string, string[]>>({
        query: (index, wait, signal) =>
          this.client.request<Record<string, string[]>>('GET', `/v1/catalog/services?index=${index}&wait=${wait}s`, {
            signal,
            expect: 'object',
            timeoutMs: (wait + wait / 16 + 5) * 1000,
          }),
        waitSeconds: this.#opts.waitSeconds ?? 25,
        probe: (signal) => this.client.probe.wait(signal),
        onChange: (services) => {
          state.names = Object.freeze(
            Object.keys(services)
              .filter((n) => n !== 'consul')
              .sort(),
          );
          const names = state.names;
          for (const l of [...listeners]) this.#tell('catalog', () => l(names));
        },
        onError: (err, consecutive) => {
          this.#degrade('catalog', err, consecutive);
          if (consecutive === 1 && state.names === undefined) {
            void this.#loadSnapshot().then((snap) => {
              if (state.names !== undefined) return;
              state.names = Object.freeze(Object.keys(snap ?? {}).sort());
              const names = state.names;
              for (const l of [...listeners]) this.#tell('catalog', () => l(names));
            });
          }
        },
        onRecover: () => this.#recover('catalog'),
      }),
    };
    state.watch.start();
    this.#afterSnapshotWait(async () => {
      if (state.names !== undefined) return;
      const snap = await this.#loadSnapshot();
      if (!snap || Object.keys(snap).length === 0 || state.names !== undefined || this.#catalog !== state) return;
      state.names = Object.freeze(Object.keys(snap).sort());
      const names = state.names;
      for (const l of [...listeners]) this.#tell('catalog', () => l(names));
    });
    return state;
  }

  /** Runs `fallback` once snapshotWaitMs has passed, when there is a snapshot file. */
  #afterSnapshotWait(fallback: () => Promise<void>): void {
    if (!this.#opts.snapshotFile) return;
    (this.#opts.clock ?? systemClock).setTimeout(() => void fallback(), this.#opts.snapshotWaitMs ?? 100);
  }

  #degrade(key: string, err: unknown, consecutive: number): void {
    this.#errors++;
    this.#lastError = (err as Error).message;
    if (consecutive === 1) {
      this.#failing.add(key);
      this.#logger.warn('consul query failed: serving the last known instances', {
        code: 'MESHLET_REGISTRY_DEGRADED',
        watch: key,
        error: this.#lastError,
      });
    }
  }

  #recover(key: string): void {
    this.#recoveredAt = (this.#opts.clock ?? systemClock).now();
    for (const w of this.#services.values()) w.graceLogged = false;
    if (this.#failing.delete(key))
      this.#logger.warn('consul reachable again: resynced', { code: 'MESHLET_REGISTRY_RECOVERED', watch: key });
    void this.#reregisterMissing();
  }

  /** Checks, every reregisterCheckMs, that the agent still knows an instance this process registered. */
  #keepRegistered(registration: Registration): void {
    const keeper = setInterval(() => void this.#reregisterMissing(), this.#opts.reregisterCheckMs ?? 1_000);
    keeper.unref();
    registration.keeper = keeper;
  }

  /**
   * One round at a time: every keeper and the recovery start one, and rounds that overlapped
   * on a slow agent would each register a lost instance again.
   */
  async #reregisterMissing(): Promise<void> {
    if (this.#checking) return;
    this.#checking = true;
    try {
      await this.#checkRegistrations();
    } finally {
      this.#checking = false;
    }
  }

  async #checkRegistrations(): Promise<void> {
    for (const [id, registration] of this.#registered) {
      // Still being registered (its own PUT on its way): nothing to check yet.
      if (registration.keeper === undefined || registration.putting !== undefined) continue;
      try {
        const res = await this.client.request('GET', `/v1/agent/service/${encodeURIComponent(id)}`, { notFound: true });
        // Deregistered, registered anew or closed while the agent answered: the answer is
        // about a registration that is no longer this one.
        if (res.status !== 404 || this.#registered.get(id) !== registration) continue;
        await this.#put(registration);
        this.#logger.warn('the agent had lost this instance: registered it again', {
          code: 'MESHLET_REGISTRY_REREGISTERED',
          instanceId: id,
        });
      } catch (err) {
        // Consul down: check again as soon as it answers (not a keeper interval later), so
        // that an agent restarted without its state has this instance back within about a
        // second. A refusal (4xx) waits for the keeper's next round.
        const status = (err as ConsulError).status;
        if (status === undefined || status >= 500) this.#retryWhenAnswering();
        return;
      }
    }
  }

  #retryWhenAnswering(): void {
    if (this.#awaitingAgent || this.#closed.signal.aborted) return;
    this.#awaitingAgent = true;
    const signal = this.#closed.signal;
    // A pause first, so that an agent that answers the probe but fails the check is not hammered.
    sleep(systemClock, 500 + Math.random() * 500, signal)
      .then(() => this.client.probe.wait(signal, { keepAlive: false }))
      .then(
        () => {
          this.#awaitingAgent = false;
          void this.#reregisterMissing();
        },
        () => {
          this.#awaitingAgent = false;
        },
      );
  }

  #startHeartbeat(instanceId: string, ttlMs: number): void {
    const existing = this.#heartbeats.get(instanceId);
    if (existing) clearInterval(existing);
    const beat = () =>
      this.pass(instanceId).catch((err: Error) => this.#logger.warn('ttl heartbeat failed', { instanceId, error: err.message }));
    void beat();
    const timer = setInterval(beat, Math.max(1000, (ttlMs * 2) / 3));
    timer.unref();
    this.#heartbeats.set(instanceId, timer);
  }

  async #loadSnapshot(): Promise<Record<string, Instance[]> | undefined> {
    const file = this.#opts.snapshotFile;
    if (!file) return undefined;
    if (this.#snapshot) return this.#snapshot;
    const read = readSnapshotFile(file);
    if (!read.ok) {
      this.#snapshot = Object.fromEntries(this.#heard);
      // No file yet is a state too: Consul is down and nothing was ever saved.
      this.#snapshotProblem(
        read.missing ? 'MESHLET_REGISTRY_NO_SNAPSHOT' : 'MESHLET_REGISTRY_SNAPSHOT_UNREADABLE',
        read.missing
          ? 'no registry snapshot file: no instances until Consul answers'
          : 'registry snapshot unreadable or corrupt: no instances until Consul answers',
        file,
        read.reason,
        !read.missing,
      );
      return this.#snapshot;
    }
    const { services, skipped, firstSkipped } = read.content;
    if (skipped > 0)
      this.#logger.warn('registry snapshot entries that are not instances: left out', {
        code: BAD_INSTANCE,
        file,
        skipped,
        first: firstSkipped,
      });
    this.#snapshot = { ...services, ...Object.fromEntries(this.#heard) };
    this.#snapshotUsable = true;
    return this.#snapshot;
  }

  #snapshotProblem(code: string, message: string, file: string, reason: string, isError: boolean): void {
    if (isError) this.#snapshotErrors++;
    this.#logger.warn(message, { code, file, reason: reason.slice(0, 200) });
  }

  /** Logs, once per process, that instances come from the snapshot file. */
  #routingFromSnapshot(why: string): void {
    if (this.#snapshotLogged || !this.#snapshotUsable) return;
    this.#snapshotLogged = true;
    this.#logger.warn('routing from the registry snapshot file', { code: 'MESHLET_REGISTRY_SNAPSHOT', file: this.#opts.snapshotFile, why });
  }

  async #fromSnapshot(service: string): Promise<Instance[] | undefined> {
    return (await this.#loadSnapshot())?.[service];
  }

  /**
   * Keeps the file in step with what Consul said; writes are serialised and atomic. Each
   * write merges into what the file holds at that moment, so that the services this process
   * does not follow (or not yet) stay there: another process's on the same host, or an
   * earlier run's. A file that is missing or unreadable is started afresh.
   */
  #remember(service: string, instances: Instance[]): void {
    const file = this.#opts.snapshotFile;
    if (!file) return;
    this.#heard.set(service, instances);
    // Not loaded yet: left for #loadSnapshot, which reads the file (and what was heard).
    if (this.#snapshot) this.#snapshot = { ...this.#snapshot, [service]: instances };
    this.#snapshotWrite = this.#snapshotWrite.then(async () => {
      try {
        const onFile = readSnapshotFile(file);
        const services = { ...(onFile.ok ? onFile.content.services : {}), ...Object.fromEntries(this.#heard) };
        const data = JSON.stringify({ savedAt: new Date().toISOString(), services });
        await mkdir(dirname(file), { recursive: true });
        const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
        await writeFile(tmp, data);
        await rename(tmp, file);
      } catch (err) {
        this.#snapshotErrors++;
        this.#logger.warn('could not write the registry snapshot', {
          code: 'MESHLET_REGISTRY_SNAPSHOT_UNWRITABLE',
          file,
          error: (err as Error).message,
        });
      }
    });
  }
}

/** The code of an instance left out because it cannot be called (a Consul entry, a snapshot file's). */
const BAD_INSTANCE = 'MESHLET_REGISTRY_BAD_INSTANCE';

/** What a snapshot file holds: the instances that can be called, and how many entries were not. */
export interface SnapshotContent {
  readonly services: Record<string, Instance[]>;
  /** Entries left out (not an instance, or one that cannot be called), and services that are not lists. */
  readonly skipped: number;
  /** Where the first of them is and what is wrong with it (`services.junk[0] port: …`). */
  readonly firstSkipped: string | undefined;
}

/** The most of a registry snapshot file read: as much as Consul may answer (CONSUL_MAX_BODY_BYTES). */
export const REGISTRY_SNAPSHOT_MAX_BYTES = CONSUL_MAX_BODY_BYTES;

/** A registry snapshot file read (readSnapshotFile): its content, or why it cannot be used. */
export type SnapshotRead =
  | { readonly ok: true; readonly content: SnapshotContent }
  /** `missing`: there is no file (nothing saved yet), not a broken one. */
  | { readonly ok: false; readonly missing: boolean; readonly reason: string };

/**
 * A registry snapshot file (ConsulRegistry's `snapshotFile`) read as ConsulRegistry and
 * `meshlet --snapshot` read it: a regular file of at most `maxBytes` (core's
 * readBoundedFile: a FIFO, a device or a file past the bound is refused, not read without
 * end), its services checked by snapshotServices.
 */
export function readSnapshotFile(file: string, maxBytes = REGISTRY_SNAPSHOT_MAX_BYTES): SnapshotRead {
  let text: string;
  let missing = false;
  try {
    text = readBoundedFile(file, maxBytes, (why, errno) => {
      missing = errno === 'ENOENT';
      return new Error(why);
    });
  } catch (err) {
    return { ok: false, missing, reason: (err as Error).message };
  }
  const content = snapshotServices(text);
  return typeof content === 'string' ? { ok: false, missing: false, reason: content } : { ok: true, content };
}

/**
 * The services of a snapshot file's text, or why it cannot be used. A file that is not JSON
 * or has no `services` object is refused whole; within it, each entry that is not an
 * instance routing can call (see instanceProblem) is left out and counted, so that one bad
 * entry (an older version's, a hand edit) does not cost every other service its instances.
 */
export function snapshotServices(text: string): SnapshotContent | string {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    return `not JSON: ${(err as Error).message}`;
  }
  const services = (parsed as { services?: unknown } | null)?.services;
  if (typeof services !== 'object' || services === null || Array.isArray(services)) return '"services" is not an object';
  const out: Record<string, Instance[]> = {};
  let skipped = 0;
  let firstSkipped: string | undefined;
  const skip = (where: string) => {
    skipped++;
    firstSkipped ??= where.slice(0, 200);
  };
  for (const [name, list] of Object.entries(services)) {
    if (!Array.isArray(list)) {
      skip(`services.${name} is not a list`);
      continue;
    }
    const kept: Instance[] = [];
    for (const [i, v] of list.entries()) {
      const problem = instanceProblem(v);
      if (problem === undefined) kept.push(v as Instance);
      else skip(`services.${name}[${i}] ${problem.field}: ${problem.reason}`);
    }
    out[name] = kept;
  }
  return { services: out, skipped, firstSkipped };
}

/**
 * What makes `v` an instance routing cannot call, naming the field, or undefined when it can
 * be called: an id, an address and a port that make a URL (core's instanceAddressProblem and
 * instancePortProblem), and metadata.
 */
export function instanceProblem(v: unknown): { field: string; reason: string } | undefined {
  if (typeof v !== 'object' || v === null) return { field: 'instance', reason: 'is not an object' };
  const inst = v as Partial<Record<keyof Instance, unknown>>;
  if (typeof inst.id !== 'string' || inst.id === '') return { field: 'id', reason: 'is not a non-empty string' };
  const address = instanceAddressProblem(inst.address);
  if (address !== undefined) return { field: 'address', reason: address };
  const port = instancePortProblem(inst.port);
  if (port !== undefined) return { field: 'port', reason: port };
  if (typeof inst.metadata !== 'object' || inst.metadata === null) return { field: 'metadata', reason: 'is not an object' };
  return undefined;
}

/**
 * The instances of Consul's health entries that routing can call (instanceFromHealthEntry,
 * then instanceProblem): an entry whose id, address or port makes no URL (anyone who can
 * register says what they are) is left out and told to `leftOut`, with its id and what is
 * wrong. ConsulRegistry logs it; the CLI's view counts it.
 */
export function callableInstances(
  entries: readonly HealthEntry[],
  leftOut: (id: string, problem: { field: string; reason: string }) => void,
  options: { metadataFromTags?: boolean } = {},
): Instance[] {
  const out: Instance[] = [];
  for (const e of entries) {
    const instance = instanceFromHealthEntry(e, options);
    const problem = instanceProblem(instance);
    if (problem === undefined) out.push(instance);
    else leftOut(String(instance.id), problem);
  }
  return out;
}

/**
 * A Consul health entry as an Instance, read the way Spring does (service address, else
 * the node's). With `metadataFromTags`, `key=value` tags are metadata too, as Spring Cloud
 * Hoxton (2.2.x) wrote them; `Meta` wins where both have a key.
 */
export function instanceFromHealthEntry(e: HealthEntry, options: { metadataFromTags?: boolean } = {}): Instance {
  const statuses = e.Checks.map((c) => c.Status);
  const health: Health = statuses.includes('critical') ? 'critical' : statuses.every((s) => s === 'passing') ? 'passing' : 'warning';
  return {
    id: e.Service.ID,
    service: e.Service.Service,
    // Spring's rule: the service address, else the node's.
    address: e.Service.Address || e.Node.Address,
    port: e.Service.Port,
    tags: e.Service.Tags ?? [],
    metadata: options.metadataFromTags ? { ...metadataInTags(e.Service.Tags ?? []), ...e.Service.Meta } : (e.Service.Meta ?? {}),
    health,
  };
}

function metadataInTags(tags: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const tag of tags) {
    const eq = tag.indexOf('=');
    if (eq > 0) out[tag.slice(0, eq)] = tag.slice(eq + 1);
  }
  return out;
}

/** Parses a Go duration as Consul writes them (`10s`, `1m`, `500ms`, `1h30m`). */
export function parseDuration(text: string): number {
  const unit: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let total = 0;
  let rest = text.trim();
  while (rest.length) {
    const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)/.exec(rest);
    if (!m) throw new Error(`"${text}" is not a duration (e.g. 10s, 1m, 500ms)`);
    total += Number(m[1]) * (unit[m[2] as string] ?? 0);
    rest = rest.slice(m[0].length);
  }
  return total;
}
