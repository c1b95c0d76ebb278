import { createServer, type Server } from 'node:http';
import { createMesh, currentContext, fetch, type KvStore, type Mesh, type Registry, userAgentFamily } from 'meshlet';

/** What one hop saw, and what the hops after it saw. */
export interface HopReport {
  service: string;
  version: string;
  instance: string;
  caller: string;
  tags: Record<string, string>;
  next?: HopReport;
}

export interface RunningService {
  mesh: Mesh;
  server: Server;
  stop(): Promise<void>;
}

/**
 * Starts one demo service on 127.0.0.1: it reports what arrived and, if it has a
 * downstream, calls it by service name and nests the downstream's report in its own.
 */
export async function startService(opts: {
  registry: Registry;
  rules: KvStore;
  service: string;
  version: string;
  instanceId: string;
  downstream?: string;
  metadata?: Record<string, string>;
}): Promise<RunningService> {
  const mesh = createMesh({
    service: opts.service,
    version: opts.version,
    instanceId: opts.instanceId,
    registry: opts.registry,
    rules: opts.rules,
    ...(opts.metadata ? { metadata: opts.metadata } : {}),
    // Round robin named, so that the demo's few calls, one at a time, visibly alternate
    // between user-a and user-b. Without it the default, least requests, draws each call
    // by weight and passes over an instance that holds calls (README, "Safe defaults").
    route: { loadBalancer: { type: 'roundRobin' } },
    tagsFromHeaders: [{ header: 'user-agent', tag: 'ua.family', transform: userAgentFamily }],
  });
  const server = createServer(
    mesh.httpHandler((req, res) => {
      const ctx = currentContext();
      const report: HopReport = {
        service: opts.service,
        version: opts.version,
        instance: opts.instanceId,
        caller: ctx.caller.service ? `${ctx.caller.service}@${ctx.caller.version}` : '(edge)',
        tags: Object.fromEntries(ctx.tags),
      };
      const downstream = opts.downstream;
      const done = (next?: HopReport) => {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify(next ? { ...report, next } : report));
      };
      if (!downstream) return done();
      fetch(`http://${downstream}${req.url ?? '/'}`)
        .then((r) => r.json() as Promise<HopReport>)
        .then(done, (err: Error) => {
          res.statusCode = 502;
          res.end(JSON.stringify({ error: err.message }));
        });
    }),
  );
  server.listen(0, '127.0.0.1');
  // Lossless start: registered once the health path answers; no signal handlers in a demo.
  await mesh.serve(server, { signals: [], deregisterDelayMs: 0, drainTimeoutMs: 1_000 });
  return { mesh, server, stop: () => mesh.shutdown() };
}
