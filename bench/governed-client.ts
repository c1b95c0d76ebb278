// The governed client the client-path benchmarks measure: a mesh calling `bench-upstream`
// with what a production service would have in force — a tag route rule that matches the
// request (20/80 split between two instance groups), service and instance breakers, a
// per-attempt timeout and a retry policy, the request's tags sent on, and (optionally)
// tracing at 100% sampling with spans batched into a trace log file. Client bulkheads are
// off. Both "instances" are the same forked upstream, so the raw client and the governed
// one share one keep-alive pool to one origin.
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createContext, InMemoryKvStore, InMemoryRegistry, type MeshContext, runWithContext, silentLogger } from '@meshlet/core';
import { createMesh, type Mesh, type MeshOptions } from 'meshlet';

export const UPSTREAM_SERVICE = 'bench-upstream';

export const benchRules = {
  service: UPSTREAM_SERVICE,
  route: {
    rules: [
      {
        name: 'vip-gray',
        priority: 1,
        when: [{ tag: 'user-tier', op: 'equals', value: 'vip' }],
        destinations: [
          { group: { version: 'v2' }, weight: 20 },
          { group: { version: 'v1' }, weight: 80 },
        ],
      },
    ],
    default: [{ group: { version: 'v1' }, weight: 100 }],
  },
  breaker: {
    rules: [{ level: 'service' }, { level: 'instance' }],
    timeoutMs: 5_000,
    retry: { maxRetries: 1 },
  },
};

/** The URL every client-path bench calls through the mesh. */
export const BENCH_URL = `http://${UPSTREAM_SERVICE}/api/users/42`;

/**
 * The registry and rule store the client-path benches govern: two instances of the
 * upstream on `port` (versions v1 and v2, for the 20/80 rule) and `rules` under the
 * upstream's key (none when undefined).
 */
export async function benchDirectory(
  port: number,
  rules: object | undefined,
): Promise<{ registry: InMemoryRegistry; kv: InMemoryKvStore }> {
  const registry = new InMemoryRegistry();
  for (const version of ['v1', 'v2']) {
    await registry.register({
      id: `up-${version}`,
      service: UPSTREAM_SERVICE,
      address: '127.0.0.1',
      port,
      tags: [],
      metadata: { version },
      health: 'passing',
    });
  }
  const kv = new InMemoryKvStore();
  if (rules !== undefined) await kv.put(`meshlet/rules/${UPSTREAM_SERVICE}`, JSON.stringify(rules));
  return { registry, kv };
}

/**
 * The context of the inbound request being served: the tags the rule reads and that travel
 * on, and the caller; with `traceparent`, the trace context the request came with too.
 */
export function benchContext(traceparent?: string): MeshContext {
  return createContext({
    tags: [
      ['user-tier', 'vip'],
      ['ua.family', 'Chrome'],
    ],
    caller: { service: 'edge' },
    ...(traceparent !== undefined ? { trace: { traceparent } } : {}),
  });
}

/** An unsampled inbound trace context: a caller that traces, and did not sample this request. */
export const INBOUND_UNSAMPLED = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00';

export interface GovernedClient {
  readonly mesh: Mesh;
  /** One governed GET, body consumed, inside a request context with tags (as a handler would call). */
  readonly call: () => Promise<unknown>;
  /** The same GET through the fast path, `mesh.request` (undici's request shape). */
  readonly request: () => Promise<unknown>;
  /** Spans written and dropped, and the trace log's size (zero without tracing). */
  traceStats(): Promise<{ exported: number; dropped: number; bytes: number }>;
  close(): Promise<void>;
}

export interface GovernedClientOptions {
  readonly port: number;
  /**
   * Tracing at 100% sampling, batched into a temp trace log; `'unsampled'`: tracing
   * configured the same way with sampleRatio 0 (context still passed on, no span recorded).
   */
  readonly tracing: boolean | 'unsampled';
  /** The mesh's `tracing` option as given (an exporter of the bench's own), in place of `tracing`'s. */
  readonly tracingOptions?: MeshOptions['tracing'];
  /** Route and breaker rules in force. Default true. */
  readonly rules?: boolean;
  /** The mesh's `fetch` option: governed attempts through this client instead of the mesh's dispatcher. */
  readonly fetch?: typeof globalThis.fetch;
  /**
   * Calls made while serving a request that came with this `traceparent`: tracing off, the
   * mesh passes it on as it came; tracing on, under the request's server span (made once,
   * as a handler's calls run under theirs), so each call's header carries a span of its own.
   */
  readonly inboundTraceparent?: string;
}

export async function governedClient(options: GovernedClientOptions): Promise<GovernedClient> {
  const { registry, kv } = await benchDirectory(options.port, options.rules === false ? undefined : benchRules);
  const dir = options.tracing ? await mkdtemp(join(tmpdir(), 'meshlet-bench-trace-')) : undefined;
  const logPath = dir ? join(dir, 'spans.jsonl') : undefined;
  const mesh = createMesh({
    service: 'bench-client',
    version: '1.0.0',
    registry,
    rules: kv,
    logger: silentLogger,
    ...(options.fetch ? { fetch: options.fetch } : {}),
    ...(logPath ? { tracing: { sampleRatio: options.tracing === 'unsampled' ? 0 : 1, log: { path: logPath } } } : {}),
    ...(options.tracingOptions ? { tracing: options.tracingOptions } : {}),
  });
  const inbound = options.inboundTraceparent;
  const ctx = benchContext(inbound);
  const url = BENCH_URL;
  const server = inbound !== undefined ? mesh.tracing?.startServerSpan({ traceparent: inbound }, 'GET', '/bench') : undefined;
  const within =
    server !== undefined
      ? <T>(fn: () => T): T => server.run(() => runWithContext(ctx, fn))
      : <T>(fn: () => T): T => runWithContext(ctx, fn);
  const call = () => within(() => mesh.fetch(url).then((r) => r.arrayBuffer()));
  const request = () => within(() => mesh.request(url).then((r) => r.body.arrayBuffer()));
  await call(); // follows the service and loads its rules before any timing
  await request();
  return {
    mesh,
    call,
    request,
    async traceStats() {
      if (!mesh.tracing || !logPath) return { exported: 0, dropped: 0, bytes: 0 };
      await mesh.tracing.forceFlush();
      const { exported, dropped } = mesh.tracing.stats;
      let bytes = 0;
      for (const f of [logPath, `${logPath}.1`, `${logPath}.2`, `${logPath}.3`])
        bytes += await stat(f).then(
          (s) => s.size,
          () => 0,
        );
      return { exported, dropped, bytes };
    },
    async close() {
      server?.end(200);
      await mesh.close();
      if (dir) await rm(dir, { recursive: true, force: true });
    },
  };
}
