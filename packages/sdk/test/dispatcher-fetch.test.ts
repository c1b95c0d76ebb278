// The dispatcher transport behind mesh.fetch (dispatcher-fetch.ts) against a real
// node:http server on 127.0.0.1: what fetch's caller sees (Response, headers, streams both
// ways, abort, null bodies, errors) must hold when the attempt goes over undici's
// dispatcher instead of through fetch.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import { sendFailureOf } from '@meshlet/breaker';
import { InMemoryKvStore, InMemoryRegistry } from '@meshlet/core';
import { listen, type TestServer } from '@meshlet/core/testing';
import { Agent, type Dispatcher } from 'undici';
import { DispatchedResponse, dispatcherTransport, type TransportRequest } from '../src/dispatcher-fetch.js';
import { createMesh } from '../src/index.js';

type Route = (req: IncomingMessage, res: ServerResponse, body: Buffer) => void;

/** Resolves once `check` holds, polling on the event loop (no fixed sleeps). */
async function until(check: () => boolean): Promise<void> {
  while (!check()) await new Promise((r) => setImmediate(r));
}

async function errorOf(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  assert.fail('did not fail');
}

describe('dispatcher transport (mesh.fetch over undici)', () => {
  const agent = new Agent();
  const send = dispatcherTransport(agent);
  const routes = new Map<string, Route>();
  /** Paths whose request body the server read to the end, with its size. */
  const received = new Map<string, number>();
  let server: TestServer;
  let origin: string;
  const go = (path: string, more: Partial<TransportRequest> = {}) => send({ origin, path, method: 'GET', headers: {}, ...more });

  before(async () => {
    server = await listen((req, res) => {
      const path = (req.url ?? '/').split('?')[0] as string;
      const route = routes.get(path);
      // Routes that stream the request body read it themselves.
      if (route && path.startsWith('/raw')) return route(req, res, Buffer.alloc(0));
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        received.set(path, body.length);
        if (route) route(req, res, body);
        else {
          res.statusCode = 404;
          res.end('no route');
        }
      });
    });
    origin = `http://127.0.0.1:${server.port}`;
  });
  after(async () => {
    await agent.destroy();
    await server.close();
  });

  it('answers a GET as fetch would: a Response with status, headers (each set-cookie), url and a body read once', async () => {
    routes.set('/hello', (req, res) => {
      res.setHeader('set-cookie', ['a=1; Path=/', 'b=2; HttpOnly']);
      res.setHeader('x-seen', `${req.method} ${req.url} ${req.headers['x-mine']}`);
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ hello: 'world', é: 'ü' }));
    });
    const res = await go('/hello?q=1', { headers: { 'x-mine': 'yes' } });
    assert.ok(res instanceof Response);
    assert.equal(res.status, 200);
    assert.equal(res.ok, true);
    assert.equal(res.statusText, 'OK');
    assert.equal(res.url, `${origin}/hello?q=1`);
    assert.equal(res.headers.get('x-seen'), 'GET /hello?q=1 yes');
    assert.deepEqual(res.headers.getSetCookie(), ['a=1; Path=/', 'b=2; HttpOnly']);
    assert.equal(res.bodyUsed, false);
    assert.deepEqual(await res.json(), { hello: 'world', é: 'ü' });
    assert.equal(res.bodyUsed, true);
    const again = await errorOf(res.text());
    assert.ok(again instanceof TypeError, String(again));
  });

  it('reads every body form fetch offers: text, arrayBuffer, bytes, blob, the stream, a clone', async () => {
    routes.set('/text', (_req, res) => {
      res.setHeader('content-type', 'text/plain');
      // A UTF-8 BOM, dropped by text() as fetch drops it.
      res.end(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('héllo')]));
    });
    assert.equal(await (await go('/text')).text(), 'héllo');
    const ab = await (await go('/text')).arrayBuffer();
    assert.ok(ab instanceof ArrayBuffer);
    assert.equal(ab.byteLength, 9);
    const bytes = await (await go('/text')).bytes();
    assert.ok(bytes instanceof Uint8Array);
    assert.equal(bytes.byteLength, 9);
    const blob = await (await go('/text')).blob();
    assert.equal(blob.type, 'text/plain');
    assert.equal(blob.size, 9);
    const streamed = await go('/text');
    const parts: Uint8Array[] = [];
    for await (const c of streamed.body as ReadableStream<Uint8Array>) parts.push(c);
    assert.equal(Buffer.concat(parts).subarray(3).toString(), 'héllo');
    assert.equal(streamed.bodyUsed, true);
    const original = await go('/text');
    const copy = original.clone();
    assert.equal(copy.headers.get('content-type'), 'text/plain');
    assert.equal(await original.text(), 'héllo');
    assert.equal(await copy.text(), 'héllo');
  });

  it('has a null body for HEAD, 204 and 304, an empty one for an empty 200', async () => {
    routes.set('/none', (req, res) => {
      if (req.headers['x-status']) res.statusCode = Number(req.headers['x-status']);
      res.setHeader('content-type', 'text/plain');
      res.setHeader('content-length', req.method === 'HEAD' ? '5' : '0');
      res.end();
    });
    const head = await go('/none', { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('content-length'), '5');
    assert.equal(head.body, null);
    assert.equal(await head.text(), '');
    for (const status of [204, 304]) {
      const res = await go('/none', { headers: { 'x-status': String(status) } });
      assert.equal(res.status, status);
      assert.equal(res.body, null, `status ${status}`);
      assert.equal((await res.arrayBuffer()).byteLength, 0);
    }
    const empty = await go('/none');
    assert.notEqual(empty.body, null);
    assert.equal(await empty.text(), '');
  });

  it('streams both ways: a ReadableStream request body goes out chunked, the answer is read as it comes', async () => {
    let wrote = 0;
    let release: (() => void) | undefined;
    routes.set('/raw/echo-stream', (req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      let seen = 0;
      req.on('data', (c: Buffer) => {
        seen += c.length;
      });
      req.on('end', () => {
        // First part now, the rest only when the test has read the first.
        res.write(`got ${seen} bytes chunked=${req.headers['transfer-encoding'] === 'chunked'};`);
        wrote = 1;
        release = () => res.end('the end');
      });
    });
    const chunks = ['one,', 'two,', 'three'];
    const body = new ReadableStream<Uint8Array>({
      pull(c) {
        const next = chunks.shift();
        if (next === undefined) c.close();
        else c.enqueue(new TextEncoder().encode(next));
      },
    });
    const res = await go('/raw/echo-stream', { method: 'POST', body, headers: { 'content-type': 'text/plain' } });
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const first = await reader.read();
    assert.equal(Buffer.from(first.value as Uint8Array).toString(), 'got 13 bytes chunked=true;');
    await until(() => wrote === 1 && release !== undefined);
    release?.();
    let rest = '';
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      rest += Buffer.from(value).toString();
    }
    assert.equal(rest, 'the end');
  });

  it('sends large bodies and reads large answers whole (5 MiB each way)', async () => {
    const size = 5 * 1024 * 1024;
    const big = Buffer.alloc(size);
    for (let i = 0; i < size; i++) big[i] = i % 251;
    routes.set('/big', (_req, res, body) => {
      res.setHeader('x-got', String(body.length));
      res.end(big);
    });
    const res = await go('/big', { method: 'PUT', body: new Uint8Array(big) });
    assert.equal(res.headers.get('x-got'), String(size));
    const got = Buffer.from(await res.arrayBuffer());
    assert.equal(got.length, size);
    assert.ok(got.equals(big));
    // The same answer through the stream, read slowly enough that backpressure pauses the socket.
    const streamed = await go('/big', { method: 'PUT', body: 'x' });
    let total = 0;
    for await (const c of streamed.body as ReadableStream<Uint8Array>) total += c.byteLength;
    assert.equal(total, size);
  });

  it('aborts mid-body: the read fails with the signal’s reason and the server sees the connection go', async () => {
    let closed = false;
    routes.set('/raw/slow', (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('first;');
      res.on('close', () => {
        closed = true;
      });
    });
    const controller = new AbortController();
    const res = await go('/raw/slow', { signal: controller.signal });
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    assert.equal(Buffer.from((await reader.read()).value as Uint8Array).toString(), 'first;');
    controller.abort();
    const err = await errorOf(reader.read());
    assert.ok(err instanceof DOMException && err.name === 'AbortError', String(err));
    await until(() => closed);
    // And through a collector rather than the stream.
    const c2 = new AbortController();
    const res2 = await go('/raw/slow', { signal: c2.signal });
    const text = res2.text();
    c2.abort(new Error('gave up'));
    assert.match(String(await errorOf(text)), /gave up/);
  });

  it('rejects with the reason of a signal that aborted before the answer, or was aborted already', async () => {
    routes.set('/raw/never', () => {});
    const controller = new AbortController();
    const pending = go('/raw/never', { signal: controller.signal });
    controller.abort(new Error('stop'));
    assert.match(String(await errorOf(pending)), /stop/);
    const err = await errorOf(go('/hello', { signal: AbortSignal.abort() }));
    assert.ok(err instanceof DOMException && err.name === 'AbortError');
  });

  it('an abort before undici connected the request stops it there: abort is called at onConnect', async () => {
    // A fake dispatcher that holds the handler, so the test decides when "connect" happens.
    let handler: Dispatcher.DispatchHandler | undefined;
    const fake = {
      dispatch(_o: unknown, h: Dispatcher.DispatchHandler): boolean {
        handler = h;
        return true;
      },
    } as unknown as Dispatcher;
    const controller = new AbortController();
    const pending = dispatcherTransport(fake)({ origin, path: '/', method: 'GET', headers: {}, signal: controller.signal });
    controller.abort(new Error('early'));
    assert.match(String(await errorOf(pending)), /early/);
    let abortedWith: unknown;
    handler?.onConnect?.((reason) => {
      abortedWith = reason;
    });
    assert.match(String(abortedWith), /early/);
  });

  it('a refused connection is a TypeError with the cause, classified not-sent (so it is retried elsewhere)', async () => {
    const gone = await listen((_req, res) => res.end());
    await gone.close();
    const err = await errorOf(send({ origin: `http://127.0.0.1:${gone.port}`, path: '/', method: 'POST', headers: {}, body: 'x' }));
    assert.ok(err instanceof TypeError, String(err));
    assert.equal(err.message, 'fetch failed');
    assert.equal((err.cause as { code?: string }).code, 'ECONNREFUSED');
    assert.equal(sendFailureOf(err), 'not-sent');
  });

  it('a connection dropped mid-body fails the read with TypeError terminated', async () => {
    routes.set('/raw/crash', (_req, res) => {
      res.writeHead(200, { 'content-length': '100' });
      res.write('partial');
      setImmediate(() => res.socket?.destroy());
    });
    const res = await go('/raw/crash');
    const err = await errorOf(res.text());
    assert.ok(err instanceof TypeError, String(err));
    assert.equal(err.message, 'terminated');
  });

  it('returns a status past 599 as fetch does (undici reads up to 999), not a RangeError', async () => {
    routes.set('/odd', (_req, res) => {
      res.writeHead(999, { 'x-odd': '1' });
      res.end('odd');
    });
    const res = await go('/odd');
    assert.equal(res.status, 999);
    assert.equal(res.ok, false);
    assert.equal(res.headers.get('x-odd'), '1');
    assert.equal(await res.text(), 'odd');
    assert.equal((await go('/odd')).clone().status, 999);
  });

  it('returns redirect statuses unfollowed (manual)', async () => {
    routes.set('/moved', (_req, res) => {
      res.writeHead(302, { location: '/hello' });
      res.end('moved');
    });
    const res = await go('/moved');
    assert.equal(res.status, 302);
    assert.equal(res.headers.get('location'), '/hello');
    assert.equal(await res.text(), 'moved');
  });

  it('writes the content type fetch would for a string, form or URLSearchParams body', async () => {
    const types: string[] = [];
    routes.set('/types', (req, res, body) => {
      types.push(`${req.headers['content-type']}|${body.toString().includes('v1') ? 'body' : 'none'}`);
      res.end();
    });
    const headers = new Headers({ 'x-a': '1' });
    await (await go('/types', { method: 'POST', body: 'v1', headers })).text();
    await (await go('/types', { method: 'POST', body: new URLSearchParams({ k: 'v1' }) })).text();
    const form = new FormData();
    form.set('k', 'v1');
    await (await go('/types', { method: 'POST', body: form })).text();
    await (await go('/types', { method: 'POST', body: 'v1', headers: { 'content-type': 'application/json' } })).text();
    assert.equal(types[0], 'text/plain;charset=UTF-8|body');
    assert.equal(types[1], 'application/x-www-form-urlencoded;charset=UTF-8|body');
    assert.match(types[2] as string, /^multipart\/form-data; boundary=.+\|body$/);
    assert.equal(types[3], 'application/json|body');
    const err = await errorOf(go('/types', { method: 'GET', body: 'x' }));
    assert.ok(err instanceof TypeError);
    // Aborted while the form was being encoded (before the dispatch): not sent, the reason thrown.
    const controller = new AbortController();
    const encoding = go('/types', { method: 'POST', body: form, signal: controller.signal });
    controller.abort(new Error('while encoding'));
    assert.match(String(await errorOf(encoding)), /while encoding/);
    assert.equal(types.length, 4);
  });

  it('decodes a gzip answer, as fetch does', async () => {
    routes.set('/gz', (_req, res) => {
      res.writeHead(200, { 'content-encoding': 'gzip', 'content-type': 'text/plain' });
      res.end(gzipSync('x'.repeat(100_000)));
    });
    const res = await go('/gz');
    assert.equal(res.headers.get('content-encoding'), 'gzip');
    assert.equal(await res.text(), 'x'.repeat(100_000));
    // A large answer that barely compresses, read as a stream: the decoder fills up and
    // the socket pauses and resumes many times over.
    const noise = randomBytes(3 * 1024 * 1024);
    routes.set('/gz-big', (_req, res) => {
      res.writeHead(200, { 'content-encoding': 'gzip' });
      res.end(gzipSync(noise));
    });
    const big = await go('/gz-big');
    const parts: Uint8Array[] = [];
    for await (const c of big.body as ReadableStream<Uint8Array>) parts.push(c);
    assert.ok(Buffer.concat(parts).equals(noise));
  });
});

describe('mesh.fetch wiring', () => {
  const registry = new InMemoryRegistry();
  let server: TestServer;
  let holding: ServerResponse | undefined;

  before(async () => {
    server = await listen((req, res) => {
      if (req.url === '/hold') {
        res.writeHead(200);
        res.write('part;');
        holding = res;
        return;
      }
      res.end('ok');
    });
    await registry.register({
      id: 'up-1',
      service: 'upstream',
      address: '127.0.0.1',
      port: server.port,
      tags: [],
      metadata: {},
      health: 'passing',
    });
  });
  after(async () => {
    holding?.destroy();
    await server.close();
  });

  it('sends governed attempts over the dispatcher unless the application gave its own fetch', async () => {
    const mesh = createMesh({ service: 'caller', version: '1.0.0', registry });
    let mine = 0;
    const own = createMesh({
      service: 'caller',
      version: '1.0.0',
      registry,
      fetch: (input, init) => {
        mine++;
        return globalThis.fetch(input, init);
      },
    });
    try {
      const res = await mesh.fetch('http://upstream/x');
      assert.ok(res instanceof DispatchedResponse);
      assert.equal(await res.text(), 'ok');
      const viaOwn = await own.fetch('http://upstream/x');
      assert.ok(!(viaOwn instanceof DispatchedResponse));
      assert.equal(await viaOwn.text(), 'ok');
      assert.equal(mine, 1);
    } finally {
      await mesh.close();
      await own.close();
    }
  });

  it('an undici dispatcher given in init is honoured: that call goes through fetch with it', async () => {
    let dispatched = 0;
    class Counting extends Agent {
      override dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
        dispatched++;
        return super.dispatch(options, handler);
      }
    }
    const dispatcher = new Counting();
    const mesh = createMesh({ service: 'caller', version: '1.0.0', registry });
    try {
      const res = await mesh.fetch('http://upstream/x', { dispatcher } as unknown as RequestInit);
      assert.equal(await res.text(), 'ok');
      assert.ok(!(res instanceof DispatchedResponse));
      assert.equal(dispatched, 1);
    } finally {
      await mesh.close();
      await dispatcher.close();
    }
  });

  it('the caller’s signal aborts the body after the attempt resolved, even under a per-attempt timeout', async () => {
    const rules = new InMemoryKvStore();
    await rules.put('meshlet/rules/upstream', JSON.stringify({ service: 'upstream', breaker: { timeoutMs: 30_000 } }));
    const mesh = createMesh({ service: 'caller', version: '1.0.0', registry, rules });
    try {
      // The rule's timeout is in force once the service is followed.
      await (await mesh.fetch('http://upstream/x')).text();
      const controller = new AbortController();
      const res = await mesh.fetch('http://upstream/hold', { signal: controller.signal });
      const reader = (res.body as ReadableStream<Uint8Array>).getReader();
      assert.equal(Buffer.from((await reader.read()).value as Uint8Array).toString(), 'part;');
      const closed = once(holding as ServerResponse, 'close');
      controller.abort();
      const err = await errorOf(reader.read());
      assert.ok(err instanceof DOMException && err.name === 'AbortError', String(err));
      await closed;
    } finally {
      await mesh.close();
    }
  });
});
