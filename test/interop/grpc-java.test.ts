// Meshlet's gRPC and a grpc-java service (test/interop/grpc-peer) on one real Consul agent:
// the Java service registers as grpc-spring does (Meta.gRPC_port); Node calls it by name
// through mesh.grpc, and it calls Node by name, finding Node's gRPC port in the same Meta
// key. Tags and the W3C trace travel in metadata both ways. Java, the jar or Consul
// missing fails the file.
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { createContext, getTag, runWithContext, setTag } from '@meshlet/core';
import { GRPC_PORT_META } from '@meshlet/grpc';
import { ConsulRegistry } from '@meshlet/registry';
import { type ConsulAgent, startConsulAgent } from '@meshlet/registry/testing';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace';
import { createMesh, type Mesh } from 'meshlet';
import { eventually } from './eventually.js';
import { type GrpcPeer, startGrpcPeer } from './grpc-peer.js';

interface Text {
  text: string;
}
type Unary = (req: Text, md: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: Text) => void) => void;
interface EchoClient extends grpc.Client {
  Say: Unary;
  Relay: Unary;
}

// The same proto the SDK's gRPC tests use; the Java peer serves Say and Relay of it.
const definition = protoLoader.loadSync(resolve(import.meta.dirname, '../../../packages/sdk/test/fixtures/echo.proto'), {
  keepCase: true,
  defaults: true,
});
const Echo = (grpc.loadPackageDefinition(definition) as unknown as { meshlet: { interop: { Echo: grpc.ServiceClientConstructor } } })
  .meshlet.interop.Echo as unknown as {
  new (a: string, c: grpc.ChannelCredentials, o?: grpc.ClientOptions): EchoClient;
  service: grpc.ServiceDefinition;
};

const call = (client: EchoClient, method: 'Say' | 'Relay', text: string) =>
  new Promise<string>((res, rej) =>
    client[method]({ text }, new grpc.Metadata(), { deadline: Date.now() + 20_000 }, (err, r) => (err ? rej(err) : res(r?.text ?? ''))),
  );

/** `key=value` lines of the Java peer's answer. */
const fields = (answer: string) => Object.fromEntries(answer.split('\n').map((l) => [l.split('=')[0], l.slice(l.indexOf('=') + 1)]));

describe('Meshlet gRPC and a grpc-java service on one Consul', () => {
  let consul: ConsulAgent;
  let java: GrpcPeer;
  let mesh: Mesh;
  let http: ReturnType<typeof createServer>;
  let grpcServer: grpc.Server;
  let grpcPort: number;
  let only: Mesh;
  let onlyServer: grpc.Server;
  let onlyPort: number;
  const spans = new InMemorySpanExporter();

  before(
    async () => {
      consul = await startConsulAgent();
      const registry = new ConsulRegistry({
        address: consul.address,
        healthCheck: { type: 'http', path: '/health', interval: '1s' },
        waitSeconds: 5,
      });
      // A Node service serving HTTP and gRPC: one registration, the HTTP port and Meta.gRPC_port.
      mesh = createMesh({
        service: 'node-grpc',
        instanceId: 'node-grpc-1',
        registry,
        tracing: { exporters: [spans], batch: { delayMs: 1 } },
      });
      http = createServer(mesh.httpHandler((_req, res) => res.end('ok')));
      grpcServer = new grpc.Server({ interceptors: [mesh.grpc.serverInterceptor()] });
      grpcServer.addService(Echo.service, {
        Say(c: grpc.ServerUnaryCall<Text, Text>, cb: grpc.sendUnaryData<Text>) {
          cb(null, {
            text: `node-grpc-1|in=${c.request.text}|tier=${getTag('tier') ?? ''}|traceparent=${String(c.metadata.get('traceparent')[0] ?? '')}`,
          });
        },
      });
      grpcPort = await new Promise<number>((res, rej) =>
        grpcServer.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? rej(err) : res(p))),
      );
      await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
      await mesh.serve(http, { signals: [] });
      await mesh.grpc.serve(grpcServer, grpcPort);
      // A gRPC-only Node service: its port is the gRPC port, Consul checks it over gRPC.
      only = createMesh({
        service: 'node-grpc-only',
        instanceId: 'node-grpc-only-1',
        registry: new ConsulRegistry({ address: consul.address, healthCheck: { type: 'grpc', interval: '1s' }, waitSeconds: 5 }),
      });
      onlyServer = new grpc.Server({ interceptors: [only.grpc.serverInterceptor()] });
      onlyServer.addService(Echo.service, {
        Say(c: grpc.ServerUnaryCall<Text, Text>, cb: grpc.sendUnaryData<Text>) {
          cb(null, { text: `node-grpc-only-1|in=${c.request.text}|tier=${getTag('tier') ?? ''}` });
        },
      });
      onlyPort = await new Promise<number>((res, rej) =>
        onlyServer.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? rej(err) : res(p))),
      );
      await only.grpc.serve(onlyServer, onlyPort);
      java = await startGrpcPeer({ consulAddress: consul.address, name: 'grpc-java-peer', instanceId: 'grpc-java-peer-1' });
    },
    { timeout: 25 * 60_000 },
  );

  after(async () => {
    await java?.stop();
    await mesh?.close();
    await only?.close();
    onlyServer?.forceShutdown();
    grpcServer?.forceShutdown();
    http?.close();
    await consul?.stop();
  });

  it('registers the HTTP port as the port and the gRPC port as Meta.gRPC_port, as grpc-spring does', async () => {
    const res = await fetch(`${consul.address}/v1/agent/service/node-grpc-1`);
    const svc = (await res.json()) as { Port: number; Meta: Record<string, string> };
    assert.equal(svc.Port, (http.address() as AddressInfo).port);
    assert.equal(svc.Meta[GRPC_PORT_META], String(grpcPort));
    const javaSvc = (await (await fetch(`${consul.address}/v1/agent/service/grpc-java-peer-1`)).json()) as { Meta: Record<string, string> };
    assert.equal(javaSvc.Meta[GRPC_PORT_META], String(java.port), 'the Java peer writes the same key');
  });

  it('Node calls the Java service by name, with the tags, its caller header and the trace in metadata', async () => {
    const client = mesh.grpc.client(Echo, 'grpc-java-peer');
    try {
      const answer = await runWithContext(createContext(), () => {
        setTag('tier', 'gold');
        return call(client, 'Say', 'hi');
      });
      const f = fields(answer);
      assert.equal(f.in, 'hi');
      assert.match(answer, /^java:grpc-java-peer-1\n/);
      assert.match(f.tags ?? '', /tier=gold/);
      assert.match(f.caller ?? '', /service=node-grpc/);
      await mesh.tracing?.forceFlush();
      const client_ = spans.getFinishedSpans().find((s) => s.name === 'meshlet.interop.Echo/Say' && s.kind === 2);
      assert.ok(client_, 'a CLIENT span');
      assert.equal(client_.attributes['server.port'], java.port);
      assert.equal(f.traceparent, `00-${client_.spanContext().traceId}-${client_.spanContext().spanId}-01`);
    } finally {
      client.close();
    }
  });

  it('the Java service calls Node by name (Consul, Meta.gRPC_port), and the tags and trace come back through it', async () => {
    // Node's watch of Consul may lag the registration by a blocking query: wait for the instance.
    await eventually('node-grpc passing in Consul with its gRPC port', async () => {
      const res = await fetch(`${consul.address}/v1/health/service/node-grpc?passing=true`);
      const entries = (await res.json()) as { Service: { Meta: Record<string, string> } }[];
      return entries.some((e) => e.Service.Meta[GRPC_PORT_META] === String(grpcPort)) ? true : undefined;
    });
    const client = mesh.grpc.client(Echo, 'grpc-java-peer');
    try {
      const answer = await runWithContext(createContext(), () => {
        setTag('tier', 'gold');
        return call(client, 'Relay', 'node-grpc');
      });
      const [head, nodeAnswer] = answer.split('\n');
      assert.equal(head, 'java:grpc-java-peer-1 relayed');
      const [who, input, tier, traceparent] = (nodeAnswer ?? '').split('|');
      assert.equal(who, 'node-grpc-1');
      assert.equal(input, 'in=from-java');
      assert.equal(tier, 'tier=gold', 'Node → Java → Node: the tag made the round trip in metadata');
      await mesh.tracing?.forceFlush();
      const relay = spans.getFinishedSpans().find((s) => s.name === 'meshlet.interop.Echo/Relay' && s.kind === 2);
      assert.ok(relay);
      assert.match(traceparent ?? '', new RegExp(`^traceparent=00-${relay.spanContext().traceId}-`), 'one trace');
      const server = spans.getFinishedSpans().find((s) => s.name === 'meshlet.interop.Echo/Say' && s.kind === 1);
      assert.ok(server, 'a SERVER span for the call from Java');
      assert.equal(server.spanContext().traceId, relay.spanContext().traceId);
    } finally {
      client.close();
    }
  });

  it("a gRPC-only Node service registers its gRPC port, passes Consul's gRPC health check, and Java calls it by name", async () => {
    const svc = (await (await fetch(`${consul.address}/v1/agent/service/node-grpc-only-1`)).json()) as {
      Port: number;
      Meta: Record<string, string>;
    };
    assert.equal(svc.Port, onlyPort);
    assert.equal(svc.Meta[GRPC_PORT_META], String(onlyPort));
    // The registration starts passing; wait for Consul's own gRPC check to have run and succeeded.
    let seen = '';
    const output = await eventually('Consul ran the gRPC health check of node-grpc-only-1', async () => {
      // The agent's view: the catalog gets a passing check's output only at anti-entropy syncs.
      const checks = (await (await fetch(`${consul.address}/v1/agent/checks`)).json()) as Record<
        string,
        { Status: string; Output: string }
      >;
      seen = JSON.stringify(checks['service:node-grpc-only-1']);
      const c = checks['service:node-grpc-only-1'];
      return c && c.Status === 'passing' && /success|SERVING/i.test(c.Output) ? c.Output : undefined;
    }).catch((err: Error) => {
      throw new Error(`${err.message}; Consul's checks: ${seen}`);
    });
    assert.match(output, new RegExp(`127\\.0\\.0\\.1:${onlyPort}`));
    const client = mesh.grpc.client(Echo, 'grpc-java-peer');
    try {
      const answer = await runWithContext(createContext(), () => {
        setTag('tier', 'silver');
        return call(client, 'Relay', 'node-grpc-only');
      });
      assert.equal(answer.split('\n')[1], 'node-grpc-only-1|in=from-java|tier=silver');
    } finally {
      client.close();
    }
  });
});
