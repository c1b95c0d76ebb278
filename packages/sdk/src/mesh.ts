import { currentContext, getTag, MeshletError, NoMeshError, RuleRepository, serviceNameProblem } from '@meshlet/core';
import { TagPropagation } from '@meshlet/propagation';
import { adaptiveProtection } from './adaptive-protection.js';
import { streamSlot } from './destination-guard.js';
import { Destinations } from './destinations.js';
import type { Fetch } from './governed-fetch.js';
import { checkGrpcOptions, type MeshGrpc, meshGrpc, unrouteGrpcLogOf } from './grpc.js';
import { inboundPipeline } from './inbound-pipeline.js';
import { koaMiddleware } from './koa.js';
import { Lifecycle } from './lifecycle.js';
import { setMeshInternals } from './mesh-internals.js';
import type { Mesh, MeshOptions } from './mesh-options.js';
import { adoptComponents, meshSettings, meshTracing, releaseComponents } from './mesh-settings.js';
import { meshAdmin, meshStatus } from './mesh-status.js';
import { Outbound } from './outbound.js';
import { OwnService } from './own-service.js';
import { lastMesh } from './process-defaults.js';
import { Registration } from './registration.js';
import { ruleKinds } from './rule-kinds.js';
import { ServiceCatalog } from './service-catalog.js';

export { defaultRegistry, defaultRuleStore } from './process-defaults.js';
export { ruleKinds } from './rule-kinds.js';

/**
 * Creates a mesh for one service: the composition root. Builds the parts — the settings
 * (every option checked first), the destinations followed (routing, breakers, faults), the
 * own service (limits, auth, identity), the catalog, the registration and the lifecycle —
 * and wires them into the outbound and inbound pipelines. Invalid options throw
 * MeshletError `MESHLET_BAD_OPTION` naming the field, with nothing started.
 */
export function createMesh(options: MeshOptions): Mesh {
  const settings = meshSettings(options);
  checkGrpcOptions(options.grpc);
  // Checked with the options, before anything starts; its sampler starts on first read.
  const adaptive = adaptiveProtection(options.ratelimit?.adaptive);
  const { service, version, namespace, registry, kv, clock, logger, healthPath } = settings;
  adoptComponents(settings);
  const tracing = meshTracing(settings, options);
  const destinations = new Destinations(settings, options);
  const { directory, router, executor } = destinations;
  const own = new OwnService(settings, options, destinations, adaptive);
  const catalog = ServiceCatalog.of(settings, options);
  const adminPath = options.admin ? (options.admin.path ?? '/_meshlet') : undefined;
  const registration = new Registration(settings, options, { own, catalog, adminPath });
  const rules = new RuleRepository({ kv, kinds: ruleKinds, clock, logger });
  const propagation = new TagPropagation(options.dialects);

  const outbound = new Outbound(settings, options, { destinations, own, registration, tracing, propagation });
  const admin = meshAdmin(options, adminPath, tracing, registration, () => meshStatus(settings, { destinations, own, registration }));
  const inbound = { tagsFromHeaders: options.tagsFromHeaders ?? [], propagation, logger, owner: undefined as unknown };
  const frameworks = inboundPipeline({
    service,
    healthPath,
    stopping: () => lifecycle.stopping,
    context: inbound,
    verifier: own.verifier,
    tagHeaders: settings.tagHeaders,
    inboundTags: options.inboundTags,
    authorizer: own.authorizer,
    rateLimiter: own.rateLimiter,
    tracing,
    admin,
    catalog: catalog?.answer,
    routeOf: (method, path) => catalog?.routeOf(method, path),
    logger,
  });
  let grpc: MeshGrpc | undefined;

  const lifecycle: Lifecycle = new Lifecycle({
    service,
    healthPath,
    registry,
    logger,
    register: (overrides) => registration.register(overrides),
    deregister: () => registration.deregister(),
    async release() {
      grpc?.close();
      // grpc-js's lines no longer to this mesh's logger: to a live mesh's, or grpc-js's default.
      unrouteGrpcLogOf(logger);
      destinations.close();
      await tracing?.shutdown();
      await own.close();
      await outbound.close();
      lastMesh.forget(mesh);
      releaseComponents(settings);
    },
  });

  const mesh: Mesh = {
    service,
    version,
    namespace,
    registry,
    logger,
    fetch: outbound.fetch,
    request: outbound.request,
    rules,
    async rulesInForce(name, { timeoutMs = 10_000 } = {}) {
      if (lifecycle.closed) throw new MeshletError('MESHLET_CLOSED', `rulesInForce(${JSON.stringify(name)}): this mesh is closed`);
      const problem = serviceNameProblem(name);
      if (problem !== undefined) throw new MeshletError('MESHLET_BAD_OPTION', `rulesInForce: ${problem}`);
      const watcher = destinations.rules(name);
      const { revision } = await rules.current(name);
      return watcher.until(revision, { timeoutMs });
    },
    router,
    breakers: executor,
    rateLimiter: own.rateLimiter,
    tracing,
    get stopping() {
      return lifecycle.stopping;
    },
    get instance() {
      return registration.instance;
    },
    register: (overrides) => registration.register(overrides),
    setIdentityKeys: (keys, keyOptions) => own.setIdentityKeys(keys, keyOptions),
    async resolve(name) {
      await directory.require(name);
      const ctx = currentContext();
      return router.pick(name, (t) => (t === 'destination.service' ? name : getTag(t, ctx)));
    },
    ...frameworks,
    koa: () => koaMiddleware(mesh),
    get grpc() {
      if (grpc !== undefined) return grpc;
      const slot = streamSlot(destinations.bulkheads);
      grpc = meshGrpc({
        ...outbound.deps,
        service,
        contextOf: frameworks.contextOf,
        authorizer: own.authorizer,
        rateLimiter: own.rateLimiter,
        httpPort: options.port,
        registeredPort: () => registration.instance?.port,
        stopping: () => lifecycle.stopping,
        register: (overrides) => registration.register(overrides),
        deregister: () => registration.deregister(),
        setGrpcPort: (port) => registration.setGrpcPort(port),
        ...(options.grpc?.channels !== undefined ? { channels: options.grpc.channels } : {}),
        ...(slot !== undefined ? { streamSlot: slot } : {}),
        // A stream tries as many instances as a unary call's default retries allow (callDefaults.retries; none with false).
        ...(options.callDefaults === false
          ? { streamConnectRetries: 0 }
          : options.callDefaults?.retries !== undefined
            ? { streamConnectRetries: options.callDefaults.retries }
            : {}),
      });
      return grpc;
    },
    serve: (server, serveOptions) => lifecycle.serve(server, serveOptions),
    shutdown: () => lifecycle.shutdown(),
    close: () => lifecycle.close(),
  };
  inbound.owner = mesh;
  setMeshInternals(mesh, { directory, pipeline: outbound.pipeline, logger });
  lastMesh.set(mesh);
  return mesh;
}

/**
 * fetch bound to the current mesh: the one serving the current request, else the mesh
 * created last. Same signature as global fetch.
 */
export const fetch: Fetch = (input, init) => {
  const mesh = (currentContext().owner as Mesh | undefined) ?? lastMesh.get();
  if (!mesh) return Promise.reject(new NoMeshError());
  return mesh.fetch(input, init);
};
