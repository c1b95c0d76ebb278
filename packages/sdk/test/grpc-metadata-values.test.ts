// Header values an HTTP request may legally carry (a TAB, a Latin-1 byte) but gRPC metadata
// refuses (grpc-js's Metadata.set throws outside printable ASCII), reaching the metadata of a
// governed gRPC call made while serving that request: the mesh leaves the value out, counts
// and logs it (MESHLET_HEADER_DROPPED), and sends the call. Real grpc-js servers on
// 127.0.0.1, requests through mesh.httpHandler on node:http.
import assert from 'node:assert/strict';
import { type IncomingHttpHeaders, request } from 'node:http';
import { after, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { InMemoryKvStore, InMemoryRegistry, MemoryLogger } from '@meshlet/core';
import { listen, type TestServer } from '@meshlet/core/testing';
import { GRPC_PORT_META } from '@meshlet/grpc';
import { createMesh, type Mesh, type MeshOptions } from '../src/index.js';
import { Echo, type EchoClient, type EchoServer, say, startEcho } from './grpc-echo.js';

const GOOD_TRACEPARENT = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
/** A TAB: legal in an HTTP field value, refused by gRPC metadata. */
const TAB_TRACEPARENT = `${GOOD_TRACEPARENT}\tx`;

/** The metadata each call reached the Echo server with, in order. */
const seen: grpc.Metadata[] = [];
const recorder: grpc.ServerInterceptor = (_method, call) =>
  new grpc.ServerInterceptingCall(call, {
    start: (next) =>
      next({
        onReceiveMetadata: (md, n) => {
          seen.push(md);
          n(md);
        },
      }),
  });

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

interface Setup {
  mesh: Mesh;
  client: EchoClient;
  logger: MemoryLogger;
  echo: EchoServer;
}

/** An Echo server registered as `echo`, and a fresh calling mesh (its channel not yet connected). */
async function setup(options: Partial<MeshOptions> = {}): Promise<Setup> {
  const registry = new InMemoryRegistry();
  const echo = await startEcho('echo-0', [recorder]);
  await registry.register({
    id: 'echo-0',
    service: 'echo',
    address: '127.0.0.1',
    port: 9,
    tags: [],
    metadata: { [GRPC_PORT_META]: String(echo.port) },
    health: 'passing',
  });
  const logger = new MemoryLogger();
  const mesh = createMesh({ service: 'gateway', port: 1, registry, rules: new InMemoryKvStore(), logger, ...options });
  const client = mesh.grpc.client(Echo, 'echo');
  cleanups.push(
    () => echo.close(),
    () => mesh.close(),
    () => client.close(),
  );
  return { mesh, client, logger, echo };
}

async function serve(mesh: Mesh, handler: Parameters<Mesh['httpHandler']>[0]): Promise<TestServer> {
  const server = await listen(mesh.httpHandler(handler));
  cleanups.push(() => server.close());
  return server;
}

/** A GET with headers as given (node:http sends a TAB and Latin-1 as they are); the body as text. */
function get(port: number, headers: IncomingHttpHeaders): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/', headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve(Buffer.concat(chunks).toString()));
    });
    req.on('error', reject);
    req.end();
  });
}

const dropped = (mesh: Mesh): number =>
  (mesh.logger as unknown as { counts: ReadonlyMap<string, number> }).counts.get('MESHLET_HEADER_DROPPED') ?? 0;

it('a stream opened on a channel still connecting, under a traceparent with a TAB: the process goes on, the stream goes without it', async () => {
  const { mesh, client, logger } = await setup();
  let uncaught: unknown;
  const onUncaught = (err: unknown) => {
    uncaught = err;
  };
  process.on('uncaughtException', onUncaught);
  cleanups.push(() => void process.off('uncaughtException', onUncaught));
  const server = await serve(mesh, (_req, res) => {
    const chat = client.Chat();
    chat.on('data', (m: { text: string }) => {
      res.end(m.text);
      chat.end();
    });
    chat.on('error', (e: Error) => res.end(`error: ${e.message}`));
    chat.write({ text: 'hi' });
  });
  seen.length = 0;
  // The mesh's first call: its channel to the instance is IDLE, the stream opens from grpc-js's connectivity callback.
  const body = await get(server.port, { traceparent: TAB_TRACEPARENT });
  assert.equal(uncaught, undefined);
  assert.equal(body, 'echo-0:hi');
  assert.deepEqual(seen[0]?.get('traceparent'), []);
  assert.equal(dropped(mesh), 1);
  const line = logger.entries.find((e) => e.fields?.code === 'MESHLET_HEADER_DROPPED');
  assert.equal(line?.fields?.header, 'traceparent');
  assert.ok(!JSON.stringify(line?.fields).includes('b7ad6b7169203331'), 'the value is not logged');
});

it('a unary call on a READY channel under a traceparent with a TAB succeeds without it; a valid one still passes', async () => {
  const { mesh, client } = await setup();
  const server = await serve(mesh, (_req, res) => {
    say(client, 'x').then(
      (text) => res.end(text),
      (err: grpc.ServiceError) => res.end(`error: ${err.code} ${err.details}`),
    );
  });
  // Warm the channel: the next call goes out on a READY channel.
  assert.match(await get(server.port, { traceparent: GOOD_TRACEPARENT }), /^echo-0\|in=x\|.*traceparent=00-0af7/);
  const body = await get(server.port, { traceparent: TAB_TRACEPARENT });
  assert.match(body, /^echo-0\|in=x\|/);
  assert.match(body, /traceparent=$/);
  assert.equal(dropped(mesh), 1);
  // A tracestate gRPC takes but over 512 characters: the traceparent goes, the tracestate not.
  seen.length = 0;
  assert.match(await get(server.port, { traceparent: GOOD_TRACEPARENT, tracestate: `a=${'b'.repeat(600)}` }), /traceparent=00-0af7/);
  assert.deepEqual(seen[0]?.get('tracestate'), []);
  assert.equal(dropped(mesh), 2);
});

it('a pass-through header with a Latin-1 byte is left out of the metadata and counted; the rest still goes', async () => {
  const { mesh, client } = await setup({ dialects: { passThroughHeaders: ['x-user-name', 'x-user-id'] } });
  const server = await serve(mesh, (_req, res) => {
    say(client, 'x').then(
      (text) => res.end(text),
      (err: grpc.ServiceError) => res.end(`error: ${err.code} ${err.details}`),
    );
  });
  seen.length = 0;
  // node:http writes header strings as Latin-1: 'é' is the byte 0xE9, which HTTP allows (obs-text).
  const body = await get(server.port, { 'x-user-name': 'José', 'x-user-id': '42' });
  assert.match(body, /^echo-0\|in=x\|/);
  assert.deepEqual(seen[0]?.get('x-user-name'), []);
  assert.deepEqual(seen[0]?.get('x-user-id'), ['42']);
  assert.equal(dropped(mesh), 1);
});
