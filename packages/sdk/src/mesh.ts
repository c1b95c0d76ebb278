import type { Server } from 'node:http';
import {
  Authorizer,
  BadMeshKeyError,
  CATALOG_META_KEY,
  catalogHandler,
  DEFAULT_IDENTITY_TTL_MS,
  DEFAULT_MAX_SKEW_MS,
  IDENTITY_HEADER,
  IdentitySigner,
  IdentityVerifier,
  loadCatalog,
  type MeshKey,
  meshKeyCheck,
  publishCatalog,
} from '@meshlet/auth';
import { CallExecutor } from '@meshlet/breaker';
import {
  ApiMatcher,
  consoleLogger,
  currentContext,
  encodeTags,
  getTag,
  InMemoryKvStore,
  InMemoryRegistry,
  type Instance,
  MeshletError,
  MetaKey,
  NoMeshError,
  RuleRepository,
  RuleWatcher,
  serviceNameProblem,
  systemClock,
  throttledLogger,
} from '@meshlet/core';
import { applyWarmup, FaultInjector, nextWarmupChangeAt, REGISTERED_AT_META, TagPropagation } from '@meshlet/dialects';
import { GRPC_PORT_META } from '@meshlet/grpc';
import { Bulkheads, connectRedis, RateLimiter, type RedisConnection, RedisTokenBuckets } from '@meshlet/ratelimit';
import { Router } from '@meshlet/route';
import { createTracing, type Tracing } from '@meshlet/trace';
import { Agent } from 'undici';
import { adaptiveProtection } from './adaptive-protection.js';
import { ADMIN_META_KEY, type AdminStatus, createAdminHandler } from './admin-handler.js';
import { type Fetch, type GovernedCallDeps, governedCall, governedFetch } from './governed-fetch.js';
import { governedRequest } from './governed-request.js';
import { type MeshGrpc, meshGrpc } from './grpc.js';
import { checkHeaderTags, TAG_HEADER_TRUST } from './inbound.js';
import { inboundPipeline } from './inbound-pipeline.js';
import { koaMiddleware } from './koa.js';
import { drain, type ServeOptions, waitUntilReady } from './lifecycle.js';
import { setMeshInternals } from './mesh-internals.js';
import type { Mesh, MeshOptions } from './mesh-options.js';
import { ruleKinds } from './rule-kinds.js';
import { ServiceDirectory } from './service-directory.js';

let processRegistry: InMemoryRegistry | undefined;
/** The in-memory registry shared by every mesh in this process that was not given one. */
export function defaultRegistry(): InMemoryRegistry {
  processRegistry ??= new InMemoryRegistry();
  return processRegistry;
}

let processRules: InMemoryKvStore | undefined;
/** The in-memory rule store shared by every mesh in this process that was not given one. */
export function defaultRuleStore(): InMemoryKvStore {
  processRules ??= new InMemoryKvStore();
  return processRules;
}

export { ruleKinds } from './rule-kinds.js';

/** How long the first call to a service waits for its rules before going on without them. */
const RULES_FIRST_LOAD_MS = 3_000;

let lastMesh: Mesh | undefined;

/** Creates a mesh for one service. Invalid options throw MeshletError `MESHLET_BAD_OPTION` naming the field. */
export function createMesh(options: MeshOptions): Mesh {
  const service = options.service;
  const nameProblem = serviceNameProblem(service);
  if (nameProblem !== undefined) throw new MeshletError('MESHLET_BAD_OPTION', `service: ${nameProblem}`);
  if (options.port !== undefined && !validPort(options.port)) {
    throw new MeshletError('MESHLET_BAD_OPTION', `port: ${options.port} is not a port number (1-65535)`);
  }
  // Every option check before anything starts (watches, Redis, tracing): a refused
  // createMesh leaves nothing running.
  checkHeaderTags(options.tagsFromHeaders ?? []);
  if (options.auth && !options.auth.keys[0])
    throw new MeshletError('MESHLET_BAD_OPTION', 'auth.keys: give at least one mesh key (meshKey(id, base64))');
  if (options.logIntervalMs !== undefined && !(Number.isFinite(options.logIntervalMs) && options.logIntervalMs >= 0))
    throw new MeshletError(
      'MESHLET_BAD_OPTION',
      `logIntervalMs: ${String(options.logIntervalMs)} must be a number of milliseconds, 0 or more`,
    );
  const tagHeaders = options.tagHeaders ?? (options.auth ? 'verified' : 'any');
  if (!TAG_HEADER_TRUST.includes(tagHeaders))
    throw new MeshletError('MESHLET_BAD_OPTION', `tagHeaders: "${String(tagHeaders)}" must be one of ${TAG_HEADER_TRUST.join(', ')}`);
  if (tagHeaders === 'verified' && !options.auth)
    throw new MeshletError(
      'MESHLET_BAD_OPTION',
      "tagHeaders: 'verified' needs auth (mesh keys) to verify callers; without auth use 'none' at the edge",
    );
  const version = options.version ?? '0.0.0';
  const namespace = options.namespace ?? 'default';
  const registry = options.registry ?? defaultRegistry();
  const kv = options.rules ?? defaultRuleStore();
  const clock = options.clock ?? systemClock;
  // Per-request conditions (bad headers, dropped tags) are logged at most once per code per
  // interval, whatever a client sends; every coded entry is counted for the metrics.
  const logger = throttledLogger(options.logger ?? consoleLogger('warn', service), {
    clock,
    ...(options.logIntervalMs !== undefined ? { intervalMs: options.logIntervalMs } : {}),
  });
  const healthPath = options.healthPath === undefined ? '/health' : options.healthPath;
  const metadata = options.metadata ?? {};

  const tracing: Tracing | undefined =
    options.tracing === undefined
      ? undefined
      : 'startClientSpan' in options.tracing
        ? options.tracing
        : createTracing({ ...options.tracing, service, version, namespace, clock });

  const executor = new CallExecutor({ clock, logger, ...(options.callDefaults !== undefined ? { defaults: options.callDefaults } : {}) });
  const router = new Router({
    clock,
    logger,
    ...options.route,
    exclusion: executor.instanceBreakers,
    location: {
      ...(metadata[MetaKey.zone] ? { zone: metadata[MetaKey.zone] } : {}),
      ...(metadata[MetaKey.region] ? { region: metadata[MetaKey.region] } : {}),
    },
  });
  const watchers = new Map<string, RuleWatcher>();
  const watchRules = (name: string): RuleWatcher => {
    let w = watchers.get(name);
    if (!w) {
      w = new RuleWatcher({ kv, service: name, kinds: ruleKinds, logger }).start();
      watchers.set(name, w);
    }
    return w;
  };

  const propagation = new TagPropagation(options.dialects);
  const faults = new Map<string, FaultInjector>();
  const warmupTimers = new Map<string, () => void>();
  /** Feeds routing, with warm-up weights when configured; re-feeds once when the ramp next moves. */
  const feedRouter = (destination: string, instances: readonly Instance[]) => {
    warmupTimers.get(destination)?.();
    warmupTimers.delete(destination);
    const warmup = options.warmup;
    if (!warmup || warmup.windowMs <= 0) return router.setInstances(destination, instances);
    const now = clock.now();
    router.setInstances(destination, applyWarmup(instances, now, warmup));
    const at = nextWarmupChangeAt(instances, now, warmup);
    if (at !== undefined)
      warmupTimers.set(
        destination,
        clock.setTimeout(() => feedRouter(destination, instances), at - now),
      );
  };

  /** The last non-zero count of this service's healthy instances (see instanceCount). */
  let knownInstances = 0;
  const directory = new ServiceDirectory(registry, {
    async follow(destination) {
      const watcher = watchRules(destination);
      router.followRules(destination, watcher);
      executor.follow(watcher, destination);
      const injector = new FaultInjector();
      injector.follow(watcher);
      faults.set(destination, injector);
      // A rule stored before the first call (a gray release) applies from that call on; a
      // rule store that does not answer does not block calls for long.
      await Promise.race([watcher.ready, new Promise((r) => setTimeout(r, RULES_FIRST_LOAD_MS).unref())]);
    },
    instances(destination, instances) {
      if (destination === service && instances.length > 0) knownInstances = instances.length;
      feedRouter(destination, options.instanceFilter ? options.instanceFilter(destination, instances) : instances);
      executor.setInstances(
        destination,
        instances.map((i) => i.id),
      );
    },
  });

  /**
   * Healthy instances of this service, for the local share of a distributed limit while
   * Redis is down. A registry that shows none (an outage at start, a resync) does not make
   * the share the whole limit: the last known count stays; with none ever known it is 1,
   * logged (at most once per interval) and counted.
   */
  function instanceCount(): number {
    const n = directory.instances(service).length;
    if (n > 0) knownInstances = n;
    else if (knownInstances === 0)
      logger.warn('instance count of this service unknown: the local share of a distributed limit is the whole limit', {
        code: 'MESHLET_INSTANCE_COUNT_UNKNOWN',
        service,
      });
    return Math.max(1, knownInstances);
  }

  let redis: RedisConnection | undefined;
  if (options.ratelimit?.redisUrl) redis = connectRedis(options.ratelimit.redisUrl, { logger });
  const adaptive = adaptiveProtection(options.ratelimit?.adaptive);
  const rateLimiter = new RateLimiter({
    service,
    clock,
    logger,
    ...(adaptive.adaptive ? { adaptive: adaptive.adaptive } : {}),
    eventLoopDelay: adaptive.eventLoopDelay,
    ...(redis
      ? {
          redis: new RedisTokenBuckets({
            send: redis.send,
            clock,
            ...(options.ratelimit?.redisTimeoutMs ? { timeoutMs: options.ratelimit.redisTimeoutMs } : {}),
          }),
        }
      : {}),
    // The local share of a distributed limit divides by the healthy instances of this service.
    instances: instanceCount,
  });
  rateLimiter.follow(watchRules(service));
  if (redis)
    void directory.ensure(service).catch((err: Error) =>
      logger.warn('cannot follow the instances of this service: the local share of a distributed limit keeps the last known count', {
        code: 'MESHLET_INSTANCE_COUNT_UNKNOWN',
        service,
        error: err.message,
      }),
    );
  const bulkheads = options.ratelimit?.bulkheads ? new Bulkheads(options.ratelimit.bulkheads) : undefined;
  const rules = new RuleRepository({ kv, kinds: ruleKinds, clock });

  const auth = options.auth;
  const authKey = auth?.keys[0];
  // Auth rules apply whenever the service's document has them (TSF authority rules match
  // tags); only with mesh keys is there a verified caller for rules on the caller itself.
  const authorizer = new Authorizer({ ...(auth?.defaultAction ? { defaultAction: auth.defaultAction } : {}) });
  authorizer.follow(watchRules(service));
  const verifier = auth
    ? new IdentityVerifier({ keys: [...auth.keys], clock, audience: service, ...(auth.maxSkewMs ? { maxSkewMs: auth.maxSkewMs } : {}) })
    : undefined;
  // A key taken out by setIdentityKeys is still accepted while tokens signed with it live.
  const keyOverlapMs = (auth?.ttlMs ?? DEFAULT_IDENTITY_TTL_MS) + (auth?.maxSkewMs ?? DEFAULT_MAX_SKEW_MS);
  const signer = authKey
    ? new IdentitySigner({
        identity: { service, namespace, instance: service, version },
        key: authKey,
        clock,
        ...(auth?.ttlMs ? { ttlMs: auth.ttlMs } : {}),
      })
    : undefined;
  // The catalog's own option, else what `auth` carried before there was one.
  const catalogOptions =
    options.catalog ?? (auth ? { openapiFiles: auth.openapiFiles, routes: auth.routes, path: auth.catalogPath } : undefined);
  const catalog = catalogOptions
    ? loadCatalog({
        ...(catalogOptions.openapiFiles ? { openapiFiles: catalogOptions.openapiFiles } : {}),
        ...(catalogOptions.routes ? { routes: catalogOptions.routes } : {}),
        logger,
      })
    : undefined;
  let loadedCatalog: Awaited<NonNullable<typeof catalog>> | undefined;
  let catalogRoutes: ApiMatcher | undefined;
  void catalog?.then((c) => {
    loadedCatalog = c;
    if (c.apis.length > 0) catalogRoutes = new ApiMatcher(c.apis);
  });
  const serveCatalog =
    catalogOptions && catalogOptions.path !== false
      ? catalogHandler(() => loadedCatalog ?? { apis: [], hash: '' }, {
          service,
          ...(catalogOptions.path ? { path: catalogOptions.path } : {}),
        })
      : undefined;

  const adminPath = options.admin?.path ?? '/_meshlet';
  const adminStatus = (): AdminStatus => {
    const registryStatus = (registry as { status?: { degraded: boolean; errors: number; snapshotErrors?: number } }).status;
    return {
      service,
      ...(instance ? { instance: instance.id } : {}),
      version,
      rules: [...watchers.entries()].map(([name, w]) => ({ service: name, ...w.status })),
      breakers: executor.snapshot(),
      limiter: rateLimiter.stats,
      registry: {
        mode: registry.constructor.name,
        degraded: registryStatus?.degraded ?? false,
        ...(registryStatus ? { errors: registryStatus.errors } : {}),
        ...(registryStatus?.snapshotErrors !== undefined ? { snapshotErrors: registryStatus.snapshotErrors } : {}),
      },
      degraded: { registry: registryStatus?.degraded ?? false, ratelimitRedis: rateLimiter.stats.degraded },
      conditions: Object.fromEntries(logger.counts),
      ...(verifier ? { identity: { ...verifier.counters } } : {}),
    };
  };
  const callMetrics = tracing ? [tracing.clientMetrics, tracing.serverMetrics] : [];
  const adminHandler = options.admin
    ? createAdminHandler({
        token: options.admin.token,
        path: adminPath,
        status: adminStatus,
        metrics: () => callMetrics.map((m) => m?.render() ?? '').join(''),
      })
    : undefined;

  let instance: Instance | undefined;
  /** The gRPC port, registered as `Meta.gRPC_port` (mesh.grpc.serve). */
  let grpcPort: number | undefined;
  let stopping = false;
  let servedBy: { server: Server; options: ServeOptions } | undefined;

  const callerHeader = () =>
    encodeTags([
      ['service', service],
      ['version', version],
      ['namespace', namespace],
      ...(instance ? [['instance', instance.id] as const] : []),
    ]).header;
  let callerValue = callerHeader();

  const callDeps: GovernedCallDeps = {
    directory,
    router,
    executor,
    tracing,
    bulkheads,
    propagation,
    faults: (name) => faults.get(name),
    callerHeader: () => callerValue,
    identityHeader: signer ? (audience) => [IDENTITY_HEADER, signer.header(audience)] : undefined,
    clock,
    logger,
  };
  const pipeline = governedCall(callDeps);
  const fetchImpl = governedFetch({ ...callDeps, send: options.fetch ?? globalThis.fetch }, pipeline);
  const agent = new Agent();
  const requestImpl = governedRequest({ directory, dispatcher: agent }, pipeline);
  const inbound = { tagsFromHeaders: options.tagsFromHeaders ?? [], propagation, logger, owner: undefined as unknown };

  const frameworks = inboundPipeline({
    service,
    healthPath,
    stopping: () => stopping,
    context: inbound,
    verifier,
    tagHeaders,
    inboundTags: options.inboundTags,
    authorizer,
    rateLimiter,
    tracing,
    admin: adminHandler ? { path: adminPath, handler: adminHandler } : undefined,
    catalog: serveCatalog,
    routeOf: (method, path) => catalogRoutes?.match(method, path)?.entry.path,
    logger,
  });

  const register = async (overrides: { port?: number; address?: string } = {}): Promise<Instance> => {
    const port = overrides.port ?? options.port;
    if (port === undefined || !validPort(port)) {
      throw new MeshletError(
        'MESHLET_BAD_OPTION',
        `port: ${String(port)} — give createMesh({ port }) or register({ port }) the port the server listens on`,
      );
    }
    const address = overrides.address ?? options.address ?? '127.0.0.1';
    const extra: Record<string, string> = { [REGISTERED_AT_META]: String(Math.round(clock.now())) };
    if (adminHandler) extra[ADMIN_META_KEY] = adminPath;
    if (grpcPort !== undefined) extra[GRPC_PORT_META] = String(grpcPort);
    if (catalog) {
      const c = await catalog;
      if (c.apis.length > 0) {
        try {
          extra[CATALOG_META_KEY] = await publishCatalog(kv, service, c);
        } catch (err) {
          logger.warn('API catalog not published; registering without it', { code: 'MESHLET_BAD_CATALOG', error: (err as Error).message });
        }
      }
    }
    instance = {
      id: options.instanceId ?? `${service}-${port}`,
      service,
      address,
      port,
      tags: [],
      metadata: { [MetaKey.secure]: 'false', ...extra, ...metadata, [MetaKey.version]: version, [MetaKey.namespace]: namespace },
      health: 'passing',
    };
    callerValue = callerHeader();
    signer?.setIdentity({ service, namespace, instance: instance.id, version });
    await registry.register(instance);
    return instance;
  };

  const deregister = async () => {
    if (!instance) return;
    const id = instance.id;
    instance = undefined;
    try {
      await registry.deregister(id);
    } catch (err) {
      logger.warn('deregistration failed; the registry will reap the instance when its check fails', {
        code: 'MESHLET_DEREGISTER_FAILED',
        error: (err as Error).message,
      });
    }
  };

  let grpcApi: MeshGrpc | undefined;
  let closed = false;
  const closeAll = async () => {
    closed = true;
    grpcApi?.close();
    for (const cancel of warmupTimers.values()) cancel();
    warmupTimers.clear();
    directory.close();
    router.close();
    adaptive.close();
    for (const w of watchers.values()) w.close();
    watchers.clear();
    await tracing?.shutdown();
    await redis?.close();
    // Destroy, not close: a body the application never read would hold close() forever.
    await agent.destroy();
    if (lastMesh === mesh) lastMesh = undefined;
  };

  let signalHandler: (() => void) | undefined;
  const mesh: Mesh = {
    service,
    version,
    namespace,
    registry,
    logger,
    fetch: fetchImpl,
    request: requestImpl,
    rules,
    async rulesInForce(name, { timeoutMs = 10_000 } = {}) {
      if (closed) throw new MeshletError('MESHLET_CLOSED', `rulesInForce(${JSON.stringify(name)}): this mesh is closed`);
      const problem = serviceNameProblem(name);
      if (problem !== undefined) throw new MeshletError('MESHLET_BAD_OPTION', `rulesInForce: ${problem}`);
      const watcher = watchRules(name);
      const { revision } = await rules.current(name);
      // Real time, not the mesh's clock: this waits on a watch of the store, not on a timer
      // of the mesh's own.
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const status = watcher.status;
        // Revisions only grow: a later document in force also means this one was seen.
        if (revision === 0 ? watcher.document === undefined && status.revision === 0 : status.revision >= revision) return status;
        if (status.lastError && status.lastError.revision >= revision) {
          throw new MeshletError(
            'MESHLET_RULES_REJECTED',
            `${name}: this process rejected the rules document at revision ${status.lastError.revision} (${status.lastError.message}); the rules at revision ${status.revision} stay in force`,
          );
        }
        if (Date.now() >= deadline) {
          throw new MeshletError(
            'MESHLET_RULES_NOT_IN_FORCE',
            `${name}: the rules at revision ${revision} were not in force here within ${timeoutMs} ms (in force: ${status.revision}); check that the rule store is reachable`,
          );
        }
        await new Promise((r) => setTimeout(r, 10));
      }
    },
    router,
    breakers: executor,
    rateLimiter,
    tracing,
    get stopping() {
      return stopping;
    },
    get instance() {
      return instance;
    },
    register,
    setIdentityKeys(keys: readonly MeshKey[], setOptions = {}) {
      if (!verifier || !signer)
        throw new MeshletError(
          'MESHLET_BAD_OPTION',
          'setIdentityKeys: auth is off for this mesh; createMesh({ auth: { keys } }) turns it on',
        );
      // Every key checked before anything changes: a bad list leaves the keys in force.
      if (!Array.isArray(keys) || keys.length === 0)
        throw new MeshletError('MESHLET_BAD_MESH_KEY', 'setIdentityKeys: give at least one mesh key; the first signs');
      for (const k of keys) {
        if (typeof k !== 'object' || k === null) throw new BadMeshKeyError('setIdentityKeys: every key is a MeshKey (meshKey(id, base64))');
        meshKeyCheck(k);
      }
      const overlapMs = setOptions.overlapMs ?? keyOverlapMs;
      verifier.setKeys(keys, { overlapMs });
      signer.setKey(keys[0] as MeshKey);
      logger.info('identity keys changed', { code: 'MESHLET_IDENTITY_KEYS', keys: keys.map((k) => k.id), overlapMs });
    },
    async resolve(name) {
      await directory.require(name);
      const ctx = currentContext();
      return router.pick(name, (t) => (t === 'destination.service' ? name : getTag(t, ctx)));
    },
    ...frameworks,
    koa: () => koaMiddleware(mesh),
    get grpc() {
      grpcApi ??= meshGrpc({
        ...callDeps,
        service,
        contextOf: frameworks.contextOf,
        authorizer,
        rateLimiter,
        httpPort: options.port,
        registeredPort: () => instance?.port,
        stopping: () => stopping,
        register,
        deregister,
        setGrpcPort: (port) => {
          grpcPort = port;
        },
      });
      return grpcApi;
    },
    async serve(server, serveOptions = {}) {
      const path = serveOptions.healthPath ?? (healthPath || '/health');
      const port = await waitUntilReady(server, path, serveOptions.readinessTimeoutMs ?? 30_000);
      servedBy = { server, options: serveOptions };
      const registered = await register({ port });
      const signals = serveOptions.signals ?? ['SIGTERM', 'SIGINT'];
      if (signals.length > 0 && !signalHandler) {
        signalHandler = () => {
          logger.info('graceful stop', { service });
          void mesh.shutdown().then(
            () => {
              if (serveOptions.exitOnSignal !== false) process.exit(0);
            },
            (err: Error) => {
              logger.error('graceful stop failed', { error: err.message });
              process.exit(1);
            },
          );
        };
        for (const s of signals) process.once(s, signalHandler);
      }
      return registered;
    },
    async shutdown() {
      if (stopping) return;
      stopping = true;
      const opts = servedBy?.options ?? {};
      await deregister();
      const delay = opts.deregisterDelayMs ?? (registry instanceof InMemoryRegistry ? 0 : 35_000);
      if (delay > 0) await new Promise((r) => setTimeout(r, delay));
      if (servedBy) await drain(servedBy.server, opts.drainTimeoutMs ?? 10_000);
      await closeAll();
    },
    async close() {
      await deregister();
      await closeAll();
    },
  };
  inbound.owner = mesh;
  setMeshInternals(mesh, { directory, pipeline, logger });
  lastMesh = mesh;
  return mesh;
}

function validPort(port: number): boolean {
  return Number.isInteger(port) && port > 0 && port < 65536;
}

/**
 * fetch bound to the current mesh: the one serving the current request, else the mesh
 * created last. Same signature as global fetch.
 */
export const fetch: Fetch = (input, init) => {
  const owner = currentContext().owner as Mesh | undefined;
  const mesh = owner ?? lastMesh;
  if (!mesh) return Promise.reject(new NoMeshError());
  return mesh.fetch(input, init);
};
