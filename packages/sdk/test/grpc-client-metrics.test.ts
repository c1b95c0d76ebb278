// gRPC unary calls in the admin endpoint's Prometheus output, as HTTP's: real grpc-js
// servers on 127.0.0.1, a mesh with tracing (its call metrics) and the admin endpoint on a
// real HTTP server, read after the calls.
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { InMemoryKvStore, InMemoryRegistry, MemoryLogger } from '@meshlet/core';
import { adminAuthorization, listen, type TestServer } from '@meshlet/core/testing';
import { GRPC_PORT_META } from '@meshlet/grpc';
import { createTracing } from '@meshlet/trace';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace';
import { createMesh, type Mesh } from '../src/index.js';
import { Echo, type EchoClient, type EchoServer, failure, say, startEcho, type Text } from './grpc-echo.js';

const TOKEN = 'grpc-metrics-admin-token-0123456789';
/** The bound on APIs per destination for this test (the default is 200): a third method goes to `_other`. */
const MAX_APIS = 2;

/** One Echo instance of `service`, and a caller mesh with tracing (its call metrics, bounded to MAX_APIS) and the admin endpoint. */
interface Setup {
  echo: EchoServer;
  mesh: Mesh;
  admin: TestServer;
  client: EchoClient;
}

/** Starts the instance, the mesh and its admin endpoint before the suite, and stops them after. */
function setUp(service: string): Setup {
  const setup = {} as Setup;
  before(async () => {
    const registry = new InMemoryRegistry();
    setup.echo = await startEcho(`${service}-0`);
    await registry.register({
      id: setup.echo.id,
      service,
      address: '127.0.0.1',
      port: 9,
      tags: [],
      metadata: { [GRPC_PORT_META]: String(setup.echo.port) },
      health: 'passing',
    });
    const tracing = createTracing({
      service: 'gateway',
      exporters: [new InMemorySpanExporter()],
      batch: { delayMs: 1 },
      metrics: { maxApisPerService: MAX_APIS },
    });
    const rules = new InMemoryKvStore();
    setup.mesh = createMesh({ service: 'gateway', registry, rules, tracing, admin: { token: TOKEN }, logger: new MemoryLogger() });
    setup.admin = await listen(setup.mesh.httpHandler((_req, res) => res.end('ok')));
    await setup.mesh.register({ port: setup.admin.port });
    setup.client = setup.mesh.grpc.client(Echo, service);
  });
  after(async () => {
    setup.client.close();
    await setup.mesh.close();
    await setup.admin.close();
    await setup.echo.close();
  });
  return setup;
}

/** The admin endpoint's Prometheus output. */
const metricsOf = async (admin: TestServer) =>
  (await globalThis.fetch(`http://127.0.0.1:${admin.port}/_meshlet/metrics`, { headers: adminAuthorization(TOKEN, admin.port) })).text();

describe('gRPC client metrics in the admin endpoint', () => {
  const setup = setUp('echo');

  it('counts and times unary calls by destination, method and failing status, with a bounded number of methods', async () => {
    const { echo, client, admin } = setup;
    for (let i = 0; i < 3; i++) await say(client, 'hi');
    echo.state.fail = { code: grpc.status.NOT_FOUND, details: 'no such thing' };
    const notFound = await failure(say(client, 'missing'));
    assert.equal(notFound.code, grpc.status.NOT_FOUND);
    echo.state.fail = undefined;
    // Relay: the echo has no relay, so UNIMPLEMENTED.
    await failure(say(client, 'x', {}, new grpc.Metadata(), 'Relay'));
    // Methods the destination does not have, on the same client: past the bound, one `_other` series.
    for (const name of ['Nope1', 'Nope2', 'Nope3']) {
      await new Promise<void>((resolve) =>
        client.makeUnaryRequest(
          `/meshlet.interop.Echo/${name}`,
          (v: { text: string }) => Buffer.from(v.text),
          (b: Buffer) => ({ text: b.toString() }),
          { text: 'x' },
          () => resolve(),
        ),
      );
    }
    const text = await metricsOf(admin);
    const say_ = 'service="echo",api="POST /meshlet.interop.Echo/Say"';
    assert.match(text, new RegExp(`^meshlet_client_requests_total\\{${say_}\\} 4$`, 'm'), text);
    assert.match(text, new RegExp(`^meshlet_client_errors_total\\{${say_},error_type="NOT_FOUND"\\} 1$`, 'm'));
    assert.match(text, new RegExp(`^meshlet_client_request_duration_seconds_count\\{${say_}\\} 4$`, 'm'));
    assert.match(text, new RegExp(`^meshlet_client_request_duration_seconds_bucket\\{${say_},le="\\+Inf"\\} 4$`, 'm'));
    const relay = 'service="echo",api="POST /meshlet.interop.Echo/Relay"';
    assert.match(text, new RegExp(`^meshlet_client_errors_total\\{${relay},error_type="UNIMPLEMENTED"\\} 1$`, 'm'));
    // The unknown methods: no series of their own past the bound.
    assert.doesNotMatch(text, /Nope/);
    assert.match(text, /^meshlet_client_requests_total\{service="echo",api="_other"\} 3$/m);
    assert.match(text, /^meshlet_client_errors_total\{service="echo",api="_other",error_type="UNIMPLEMENTED"\} 3$/m);
  });
});

describe('gRPC client metrics of streams in the admin endpoint', () => {
  const setup = setUp('streams');

  /** How a stream ended, once read to its end (or cancelled after its first message). */
  const ended = (s: grpc.ClientReadableStream<Text> | grpc.ClientDuplexStream<Text, Text>, cancelAfterFirst = false) =>
    new Promise<number>((resolve) => {
      s.on('data', () => {
        if (cancelAfterFirst) s.cancel();
      });
      s.on('error', () => {});
      s.on('status', (st: grpc.StatusObject) => resolve(st.code));
    });

  it('counts and times each stream once, at its end, by destination, method and status, with the same bound on methods', async () => {
    const { mesh, client, admin } = setup;
    assert.equal(await ended(client.Count({ text: '3' })), grpc.status.OK);
    assert.equal(await ended(client.Count({ text: '2' })), grpc.status.OK);
    assert.equal(await ended(client.Count({ text: '1000' }), true), grpc.status.CANCELLED);
    const chat = client.Chat();
    const chatted = ended(chat);
    chat.write({ text: 'x' });
    chat.end();
    assert.equal(await chatted, grpc.status.OK);
    // A third streaming method, past the bound of two: `_other`.
    const collected = await new Promise<number>((resolve) => {
      const s = client.Collect(new grpc.Metadata(), {}, (err) => resolve(err?.code ?? grpc.status.OK));
      s.end();
    });
    assert.equal(collected, grpc.status.OK);
    // A stream a fault rule aborted at its start: counted with the rule's status.
    await mesh.rules.apply(JSON.stringify({ service: 'streams', fault: { rules: [{ name: 'chaos', percentage: 100, abort: 503 }] } }), {
      author: 'test',
    });
    await mesh.rulesInForce('streams');
    assert.equal(await ended(client.Count({ text: '1' })), grpc.status.UNAVAILABLE);
    const text = await metricsOf(admin);
    const count = 'service="streams",api="POST /meshlet.interop.Echo/Count"';
    assert.match(text, new RegExp(`^meshlet_client_requests_total\\{${count}\\} 4$`, 'm'), text);
    assert.match(text, new RegExp(`^meshlet_client_errors_total\\{${count},error_type="CANCELLED"\\} 1$`, 'm'));
    assert.match(text, new RegExp(`^meshlet_client_errors_total\\{${count},error_type="UNAVAILABLE"\\} 1$`, 'm'));
    assert.match(text, new RegExp(`^meshlet_client_request_duration_seconds_count\\{${count}\\} 4$`, 'm'));
    const chatApi = 'service="streams",api="POST /meshlet.interop.Echo/Chat"';
    assert.match(text, new RegExp(`^meshlet_client_requests_total\\{${chatApi}\\} 1$`, 'm'));
    assert.doesNotMatch(text, new RegExp(`^meshlet_client_errors_total\\{${chatApi}`, 'm'));
    assert.doesNotMatch(text, /Collect/);
    assert.match(text, /^meshlet_client_requests_total\{service="streams",api="_other"\} 1$/m);
  });
});

describe('gRPC client metrics and status codes gRPC does not define', () => {
  it('a peer answering grpc-status 1000+i or not a number: the caller gets UNKNOWN, and error_type is UNKNOWN, one series', async () => {
    let i = 0;
    const codes = () => (i % 10 === 9 ? 'abc' : String(1000 + i));
    const peer = http2.createServer();
    peer.on('stream', (s) => {
      s.on('error', () => {});
      s.resume();
      s.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': codes(), 'grpc-message': 'x' }, { endStream: true });
      i++;
    });
    await new Promise<void>((r) => peer.listen(0, '127.0.0.1', r));
    const registry = new InMemoryRegistry();
    const port = (peer.address() as AddressInfo).port;
    await registry.register({
      id: 'odd-0',
      service: 'odd',
      address: '127.0.0.1',
      port: 9,
      tags: [],
      metadata: { [GRPC_PORT_META]: String(port) },
      health: 'passing',
    });
    const tracing = createTracing({ service: 'gateway', exporters: [new InMemorySpanExporter()], batch: { delayMs: 1 } });
    const mesh = createMesh({ service: 'gateway', registry, rules: new InMemoryKvStore(), tracing, logger: new MemoryLogger() });
    const metrics = await listen(tracing.metricsHandler());
    const client = mesh.grpc.client(Echo, 'odd');
    try {
      const first = await failure(say(client, 'x'));
      assert.equal(first.code, grpc.status.UNKNOWN);
      assert.equal(first.details, 'Unknown code 1000: x');
      for (let k = 1; k < 40; k++) assert.equal((await failure(say(client, 'x'))).code, grpc.status.UNKNOWN);
      const stream = await new Promise<grpc.StatusObject>((res) => {
        const s = client.Count({ text: '1' });
        s.on('error', () => {});
        s.on('status', res);
      });
      assert.equal(stream.code, grpc.status.UNKNOWN);
      const text = await (await globalThis.fetch(`http://127.0.0.1:${metrics.port}/`)).text();
      const errors = text.split('\n').filter((l) => l.startsWith('meshlet_client_errors_total{'));
      assert.deepEqual(
        errors.map((l) => l.replace(/ \d+$/, '')),
        [
          'meshlet_client_errors_total{service="odd",api="POST /meshlet.interop.Echo/Say",error_type="UNKNOWN"}',
          'meshlet_client_errors_total{service="odd",api="POST /meshlet.interop.Echo/Count",error_type="UNKNOWN"}',
        ],
      );
    } finally {
      client.close();
      await mesh.close();
      await metrics.close();
      await new Promise((r) => peer.close(r));
    }
  });
});
