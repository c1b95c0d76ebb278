// With tracing off (the default), a governed HTTP call passes the caller's trace context on
// as it came, as far as the request's context kept it (core's keptTraceContext: a valid W3C
// valid W3C traceparent, a tracestate of at most 512 printable ASCII characters, which
// gRPC metadata takes too); anything else is left out where the request came in and logged
// (MESHLET_HEADER_DROPPED, throttled, counted). Real servers on 127.0.0.1: the trace headers
// arrive at a handler of the mesh, which calls another service.
import assert from 'node:assert/strict';
import { type IncomingHttpHeaders, request } from 'node:http';
import { after, before, it } from 'node:test';
import { InMemoryKvStore, InMemoryRegistry, MemoryLogger, type TraceHeaders } from '@meshlet/core';
import { listen, type TestServer, testInstance } from '@meshlet/core/testing';
import { createMesh, type Mesh } from '../src/index.js';

const TRACEPARENT = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
const received: IncomingHttpHeaders[] = [];
let upstream: TestServer;
let gateway: TestServer;
let mesh: Mesh;

before(async () => {
  upstream = await listen((req, res) => {
    received.push(req.headers);
    res.end('ok');
  });
  const registry = new InMemoryRegistry();
  await registry.register(testInstance('up', 'up-0', upstream.port));
  mesh = createMesh({ service: 'gateway', port: 1, registry, rules: new InMemoryKvStore(), logger: new MemoryLogger() });
  // A handler of the mesh that calls another service with mesh.fetch.
  gateway = await listen(mesh.httpHandler(async (_req, res) => res.end(await (await mesh.fetch('http://up/')).text())));
});
after(async () => {
  await mesh.close();
  await gateway.close();
  await upstream.close();
});

/** A request to the gateway with these trace headers; what the upstream received from it. */
const call = async (trace: TraceHeaders): Promise<IncomingHttpHeaders> => {
  received.length = 0;
  const headers: Record<string, string> = { traceparent: trace.traceparent };
  if (trace.tracestate !== undefined) headers.tracestate = trace.tracestate;
  const body = await new Promise<string>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: gateway.port, path: '/', headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        text += c;
      });
      res.on('end', () => resolve(text));
    });
    req.on('error', reject);
    req.end();
  });
  assert.equal(body, 'ok');
  return received[0] ?? {};
};
const dropped = () => (mesh.logger as unknown as { counts: ReadonlyMap<string, number> }).counts.get('MESHLET_HEADER_DROPPED') ?? 0;

it('passes a valid trace context on, and leaves out a traceparent that is not W3C or a tracestate over 512 characters', async () => {
  let got = await call({ traceparent: TRACEPARENT, tracestate: 'a=b' });
  assert.equal(got.traceparent, TRACEPARENT);
  assert.equal(got.tracestate, 'a=b');
  assert.equal(dropped(), 0);

  got = await call({ traceparent: `${TRACEPARENT}\tx`, tracestate: 'a=b' });
  assert.equal(got.traceparent, undefined);
  assert.equal(got.tracestate, undefined);
  assert.equal(dropped(), 1);

  got = await call({ traceparent: TRACEPARENT, tracestate: `a=${'b'.repeat(600)}` });
  assert.equal(got.traceparent, TRACEPARENT);
  assert.equal(got.tracestate, undefined);
  assert.equal(dropped(), 2);
});
