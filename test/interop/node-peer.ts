// The Node side of the interop tests, assembled from Meshlet's packages: ConsulRegistry
// registration (HTTP check on /health), discovery by name through Consul, server and
// client spans from @meshlet/trace, and the tag header carried on. It is what
// `createMesh({ registry: new ConsulRegistry(...), tracing })` + `mesh.serve(server)` +
// `mesh.fetch('http://<service>/...')` will do. node-mesh-peer.ts is the same service on
// the SDK: switching a test file over is its import of startNodeService (see SWITCH below).
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type Instance, instanceOrigin, MetaKey, TAG_HEADER } from '@meshlet/core';
import { ConsulRegistry } from '@meshlet/registry';
import { createTracing, type PropagationFormat, type Tracing } from '@meshlet/trace';
import { trace } from '@opentelemetry/api';
import { InMemorySpanExporter, type ReadableSpan } from '@opentelemetry/sdk-trace';

export interface NodeServiceOptions {
  readonly consulAddress: string;
  readonly name: string;
  readonly instanceId: string;
  readonly version?: string;
  readonly zone?: string;
  /** Trace headers written on outbound calls. Default `['w3c']`. */
  readonly emit?: readonly PropagationFormat[];
  /** Consul HTTP check interval. Default `1s`. */
  readonly healthInterval?: string;
}

/** What one request to `/hello` saw. */
export interface HelloAnswer {
  readonly service: string;
  readonly instanceId: string;
  /** The trace id of the server span that handled the request. */
  readonly traceId: string;
  readonly headers: Readonly<Record<string, string>>;
}

/** What `/via/<service>/<path>` answers: which instance was called and what it said. */
export interface ViaAnswer {
  readonly instance: string;
  readonly status: number;
  readonly body: string;
  readonly traceId: string;
}

export interface NodeService {
  readonly port: number;
  readonly url: string;
  readonly instance: Instance;
  readonly registry: ConsulRegistry;
  readonly tracing: Tracing;
  /** Every span this service ended, after a flush. */
  spans(): Promise<readonly ReadableSpan[]>;
  /**
   * A graceful stop, as `mesh.shutdown()` will do it: deregister first, keep serving for
   * `drainMs` (callers' caches, such as Spring Cloud LoadBalancer's, forget the instance),
   * then stop accepting, let requests in flight finish, and flush tracing. Idempotent.
   */
  stop(options?: { readonly drainMs?: number }): Promise<void>;
}

/** Headers the tests look at; /hello reports these when present. */
const REPORTED = ['traceparent', 'tracestate', 'b3', 'x-b3-traceid', 'x-b3-spanid', 'x-b3-sampled', 'baggage', TAG_HEADER];

export async function startNodeService(options: NodeServiceOptions): Promise<NodeService> {
  const exporter = new InMemorySpanExporter();
  const tracing = createTracing({
    service: options.name,
    instanceId: options.instanceId,
    propagation: { emit: options.emit ?? ['w3c'] },
    exporters: [exporter],
    metrics: false,
  });
  const registry = new ConsulRegistry({
    address: options.consulAddress,
    healthCheck: { type: 'http', path: '/health', interval: options.healthInterval ?? '1s' },
    waitSeconds: 5,
  });

  // SWITCH: with the SDK, this server is `http.createServer(mesh.httpHandler(handler))` and
  // the server span, tag lifting and the outbound call below are the SDK's.
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    if (path === '/health') {
      res.end('ok');
      return;
    }
    const route = path.startsWith('/via/') ? '/via/:service/*' : path;
    const span = tracing.startServerSpan(req.headers, req.method ?? 'GET', route, { target: req.url ?? '/' });
    res.on('finish', () => span.end(res.statusCode));
    const traceId = (): string => trace.getSpanContext(span.context)?.traceId ?? '';
    span
      .run(() => handle(req, res, path, traceId))
      .catch((err: unknown) => {
        res.statusCode = 500;
        res.end(String(err));
      });
  });

  const handle = async (req: IncomingMessage, res: ServerResponse, path: string, traceId: () => string): Promise<void> => {
    if (path === '/hello') {
      const headers: Record<string, string> = {};
      for (const h of REPORTED) {
        const v = req.headers[h];
        if (typeof v === 'string') headers[h] = v;
      }
      const answer: HelloAnswer = { service: options.name, instanceId: options.instanceId, traceId: traceId(), headers };
      json(res, 200, answer);
      return;
    }
    const via = /^\/via\/([^/]+)(\/.*)?$/.exec(path);
    if (via) {
      const target = via[1] as string;
      const rest = via[2] ?? '/';
      const tags = req.headers[TAG_HEADER];
      const called = await callByName(registry, tracing, target, rest, typeof tags === 'string' ? tags : undefined);
      json(res, 200, { ...called, traceId: traceId() } satisfies ViaAnswer);
      return;
    }
    json(res, 404, { error: `no route ${path}` });
  };

  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  const instance: Instance = {
    id: options.instanceId,
    service: options.name,
    address: '127.0.0.1',
    port,
    tags: [],
    metadata: {
      [MetaKey.version]: options.version ?? '1.0.0',
      [MetaKey.namespace]: 'default',
      [MetaKey.secure]: 'false',
      ...(options.zone ? { [MetaKey.zone]: options.zone } : {}),
    },
    health: 'passing',
  };
  await registry.register(instance);
  let stopping: Promise<void> | undefined;

  return {
    port,
    url: `http://127.0.0.1:${port}`,
    instance,
    registry,
    tracing,
    async spans() {
      await tracing.forceFlush();
      return exporter.getFinishedSpans();
    },
    stop(stopOptions = {}) {
      stopping ??= (async () => {
        await registry.deregister(instance.id).catch(() => {});
        await registry.close();
        if (stopOptions.drainMs) await new Promise((r) => setTimeout(r, stopOptions.drainMs));
        // close() stops accepting and ends idle keep-alive connections; requests in flight finish.
        const closed = new Promise<void>((r) => server.close(() => r()));
        // A keep-alive connection that never goes idle must not hold the stop forever.
        const force = setTimeout(() => server.closeAllConnections(), 5000);
        await closed;
        clearTimeout(force);
        await tracing.shutdown();
      })();
      return stopping;
    },
  };
}

/**
 * Calls `service` by name: a healthy instance from Consul, a client span whose headers go
 * out, the tag header carried on. SWITCH: this is `mesh.fetch(\`http://${service}${path}\`)`.
 */
async function callByName(
  registry: ConsulRegistry,
  tracing: Tracing,
  service: string,
  path: string,
  tags: string | undefined,
): Promise<Omit<ViaAnswer, 'traceId'>> {
  const instances = await registry.healthyInstances(service);
  const chosen = instances[0];
  if (!chosen) throw new Error(`no healthy instance of ${service} in Consul`);
  const url = `${instanceOrigin(chosen)}${path}`;
  const span = tracing.startClientSpan(undefined, { method: 'GET', url, service, instance: chosen.id });
  const headers = new Headers();
  span.inject(headers);
  if (tags) headers.set(TAG_HEADER, tags);
  try {
    const res = await fetch(url, { headers, signal: AbortSignal.timeout(20_000) });
    const body = await res.text();
    span.end(res.status);
    return { instance: chosen.id, status: res.status, body };
  } catch (error) {
    span.end({ error });
    throw error;
  }
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.statusCode = status;
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify(body));
}
