import type { TagPropagation } from '@meshlet/propagation';
import type { Tracing } from '@meshlet/trace';
import type { Destinations } from './destinations.js';
import { dispatcherTransport } from './dispatcher-fetch.js';
import { type Fetch, type GovernedCallDeps, type GovernedCallPipeline, governedCall, governedFetch } from './governed-fetch.js';
import { governedRequest, type MeshRequest } from './governed-request.js';
import { MeshAgents } from './mesh-agents.js';
import type { MeshOptions } from './mesh-options.js';
import type { MeshSettings } from './mesh-settings.js';
import type { OwnService } from './own-service.js';
import type { Registration } from './registration.js';

/**
 * The outbound pipeline (`governedCall`: route, breakers, faults, headers, spans) wired to
 * the parts it reads, and its two front ends: `fetch` (WHATWG; governed attempts over the
 * shared Agent by dispatcher-fetch.ts, or through `options.fetch` when given) and `request` (undici's `request` shape on one keep-alive Agent).
 */
export class Outbound {
  readonly fetch: Fetch;
  readonly request: MeshRequest;
  /** The shared pipeline, for the other client front ends (axios, got, ky: mesh-internals.ts). */
  readonly pipeline: GovernedCallPipeline;
  /** What the pipeline reads, for the gRPC front end (`mesh.grpc`), which has a pipeline of its own. */
  readonly deps: GovernedCallDeps;
  /** The shared keep-alive Agent, and the one for an attempt that goes again after a stale connection. */
  readonly #agents = new MeshAgents();

  constructor(
    settings: MeshSettings,
    options: MeshOptions,
    parts: {
      readonly destinations: Destinations;
      readonly own: OwnService;
      readonly registration: Registration;
      readonly tracing: Tracing | undefined;
      readonly propagation: TagPropagation;
    },
  ) {
    const { destinations, own, registration } = parts;
    const deps: GovernedCallDeps = {
      directory: destinations.directory,
      router: destinations.router,
      executor: destinations.executor,
      tracing: parts.tracing,
      guard: destinations.guard,
      propagation: parts.propagation,
      faults: (service) => destinations.faults.forService(service),
      callerHeader: () => registration.callerHeader,
      identityHeader: own.identityHeader,
      clock: settings.clock,
      logger: settings.logger,
    };
    this.deps = deps;
    const pipeline = governedCall(deps);
    this.pipeline = pipeline;
    // No fetch of the application's own: governed attempts go over the shared Agent (see
    // dispatcher-fetch.ts); everything else still goes to global fetch.
    const send = options.fetch ?? globalThis.fetch;
    const agents = this.#agents;
    const transport = options.fetch === undefined ? dispatcherTransport(agents.shared, agents.fresh) : undefined;
    this.fetch = governedFetch({ ...deps, send, ...(transport ? { transport } : {}) }, pipeline);
    this.request = governedRequest({ directory: destinations.directory, dispatcher: agents.shared, fresh: agents.fresh }, pipeline);
  }

  async close(): Promise<void> {
    await this.#agents.close();
  }
}
