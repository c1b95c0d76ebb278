// The Node side of the interop tests, on the SDK itself: createMesh with ConsulRegistry,
// mesh.serve (lossless start, HTTP check on /health), mesh.fetch by service name, tracing
// in the mesh, mesh.shutdown (deregister, wait, drain).
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { type Instance, TAG_HEADER } from '@meshlet/core';
import { ConsulKvStore, ConsulRegistry } from '@meshlet/registry';
import type { PropagationFormat, Tracing } from '@meshlet/trace';
import { trace } from '@opentelemetry/api';
import { InMemorySpanExporter, type ReadableSpan } from '@opentelemetry/sdk-trace';
import { createMesh } from 'meshlet';

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
  /** A graceful stop: `mesh.shutdown()` (deregister, keep serving for callers' caches, drain, flush). */
  stop(): Promise<void>;
}

export interface NodeServiceOptions {
  readonly consulAddress: string;
  readonly name: string;
  readonly instanceId: string;
  readonly version?: string;
  readonly zone?: string;
  readonly emit?: readonly PropagationFormat[];
  /** How long shutdown keeps serving after deregistering. Default 3000 ms (the test peer's LoadBalancer cache TTL is 1 s). */
  readonly deregisterDelayMs?: number;
}

const REPORTED = ['traceparent', 'tracestate', 'b3', 'x-b3-traceid', 'x-b3-spanid', 'x-b3-sampled', 'baggage', TAG_HEADER];

export async function startNodeService(options: NodeServiceOptions): Promise<NodeService> {
  const exporter = new InMemorySpanExporter();
  const registry = new ConsulRegistry({
    address: options.consulAddress,
    healthCheck: { type: 'http', path: '/health', interval: '1s' },
    waitSeconds: 5,
  });
  const mesh = createMesh({
    service: options.name,
    version: options.version ?? '1.0.0',
    instanceId: options.instanceId,
    registry,
    rules: new ConsulKvStore({ address: options.consulAddress, waitSeconds: 5 }),
    ...(options.zone ? { metadata: { zone: options.zone } } : {}),
    tracing: { propagation: { emit: options.emit ?? ['w3c'] }, exporters: [exporter], metrics: false },
  });
  const json = (res: ServerResponse, status: number, body: unknown) => {
    res.statusCode = status;
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(body));
  };
  const traceId = () => trace.getSpanContext(mesh.tracing?.active() ?? ({} as never))?.traceId ?? '';
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    if (path === '/hello') {
      const headers: Record<string, string> = {};
      for (const h of REPORTED) {
        const v = req.headers[h];
        if (typeof v === 'string') headers[h] = v;
      }
      json(res, 200, { service: options.name, instanceId: options.instanceId, traceId: traceId(), headers } satisfies HelloAnswer);
      return;
    }
    const via = /^\/via\/([^/]+)(\/.*)?$/.exec(path);
    if (via) {
      const called = await mesh.fetch(`http://${via[1]}${via[2] ?? '/'}`);
      const body = await called.text();
      let instance = '';
      try {
        instance = (JSON.parse(body) as { instanceId?: string }).instanceId ?? '';
      } catch {}
      json(res, 200, { instance, status: called.status, body, traceId: traceId() } satisfies ViaAnswer);
      return;
    }
    json(res, 404, { error: `no route ${path}` });
  };
  const server = createServer(
    mesh.httpHandler((req, res) => {
      handle(req, res).catch((err: unknown) => json(res, 500, { error: String(err) }));
    }),
  );
  server.listen(0, '127.0.0.1');
  const instance = await mesh.serve(server, { signals: [], deregisterDelayMs: options.deregisterDelayMs ?? 3000 });
  const tracing = mesh.tracing;
  if (!tracing) throw new Error('the mesh was given tracing options but has no tracing');
  return {
    port: instance.port,
    url: `http://127.0.0.1:${instance.port}`,
    instance,
    registry,
    tracing,
    async spans() {
      await tracing.forceFlush();
      return exporter.getFinishedSpans();
    },
    async stop() {
      await mesh.shutdown();
      // The Registry port has no close(); the Consul watches are the registry's own.
      await registry.close();
    },
  };
}
