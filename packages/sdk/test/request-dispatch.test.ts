// mesh.request's dispatched attempts (request-dispatch.ts): undici's ResponseData shape
// and body mixin, timeouts through the executor's AttemptAbort hook (no AbortSignal per
// attempt), caller aborts, streaming, redirects not followed, errors — on real node:http
// servers on 127.0.0.1, compared with undici's own request where the shape matters.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { finished } from 'node:stream/promises';
import { after, before, describe, it } from 'node:test';
import { TimeoutError } from '@meshlet/breaker';
import { InMemoryKvStore, InMemoryRegistry, ManualClock, MemoryLogger } from '@meshlet/core';
import { listen, type TestServer } from '@meshlet/core/testing';
import { request as undiciRequest } from 'undici';
import { createMesh, type Mesh } from '../src/index.js';
import { headerObject } from '../src/request-dispatch.js';

const BIG = Buffer.alloc(1024 * 1024, 'x');

/** Requests the slow instance holds unanswered, to answer or watch close. */
const held: { req: IncomingMessage; res: ServerResponse }[] = [];

function handler(id: string) {
  return (req: IncomingMessage, res: ServerResponse) => {
    const url = req.url ?? '/';
    if (url.startsWith('/slow') && id === 'slow') {
      held.push({ req, res });
      return;
    }
    if (url === '/headers') {
      res.setHeader('X-Dup', ['a', 'b']);
      res.setHeader('Set-Cookie', ['c=1', 'd=2']);
      res.setHeader('X-Latin', Buffer.from('caf\xe9', 'latin1').toString('latin1'));
      res.end(`from ${id}`);
      return;
    }
    if (url === '/trailers') {
      res.writeHead(200, { Trailer: 'x-sum' });
      res.write('part');
      res.addTrailers({ 'x-sum': '42' });
      res.end();
      return;
    }
    if (url === '/big') {
      res.end(BIG);
      return;
    }
    if (url === '/cut') {
      res.writeHead(200, { 'content-length': '100' });
      res.write('part;', () => res.socket?.destroy());
      return;
    }
    if (url === '/redirect') {
      res.writeHead(302, { location: '/elsewhere' });
      res.end();
      return;
    }
    if (url === '/hold-body') {
      res.write('part;');
      held.push({ req, res });
      return;
    }
    res.end(`${id} ${req.method} ${url}`);
  };
}

describe('mesh.request, dispatched', () => {
  let fast: TestServer;
  let slow: TestServer;
  let mesh: Mesh;
  let clock: ManualClock;

  before(async () => {
    fast = await listen(handler('fast'));
    slow = await listen(handler('slow'));
    const registry = new InMemoryRegistry();
    for (const [id, s] of [
      ['fast', fast],
      ['slow', slow],
    ] as const)
      await registry.register({ id, service: 'up', address: '127.0.0.1', port: s.port, tags: [], metadata: { id }, health: 'passing' });
    const rules = new InMemoryKvStore();
    await rules.put(
      'meshlet/rules/up',
      JSON.stringify({ service: 'up', breaker: { timeoutMs: 1_000, retry: { maxRetries: 1, backoff: { baseMs: 0, maxMs: 0 } } } }),
    );
    clock = new ManualClock(Date.now());
    mesh = createMesh({ service: 'caller', version: '1.0.0', registry, rules, clock, logger: new MemoryLogger() });
  });

  after(async () => {
    for (const h of held) h.res.destroy();
    await mesh.close();
    await fast.close();
    await slow.close();
  });

  /** Waits for `cond`, letting I/O run and firing what is due on the clock now (a retry's zero backoff); never moves the clock. */
  async function until(cond: () => boolean): Promise<void> {
    while (!cond()) {
      clock.advance(0);
      await new Promise((r) => setImmediate(r));
    }
  }

  /** `p`'s outcome, with the clock's due timers fired while it is pending. */
  async function settle<T>(p: Promise<T>): Promise<T> {
    let done = false;
    const out = p.finally(() => {
      done = true;
    });
    out.catch(() => {});
    await until(() => done);
    return out;
  }

  it('gives the headers and trailers as undici.request gives them', async () => {
    const ours = await mesh.request('http://up/headers');
    const raw = await undiciRequest(`http://127.0.0.1:${fast.port}/headers`);
    const text = await ours.body.text();
    await raw.body.text();
    assert.match(text, /^from /);
    for (const h of ['x-dup', 'set-cookie', 'x-latin', 'content-length']) assert.deepEqual(ours.headers[h], raw.headers[h], h);
    // The same own fields as undici's ResponseData (the executor's `status` is not one of them).
    assert.deepEqual(Object.keys(ours).sort(), Object.keys(raw).sort());
    assert.equal(JSON.stringify({ ...ours, body: null }).includes('"status"'), false);
    const t = await mesh.request('http://up/trailers');
    assert.equal(await t.body.text(), 'part');
    assert.deepEqual(t.trailers, { 'x-sum': '42' });
  });

  it('reads raw header lists as undici does: case, repeats, latin-1, __proto__', () => {
    const h = headerObject([
      Buffer.from('X-A'),
      Buffer.from('1'),
      Buffer.from('x-a'),
      Buffer.from('2'),
      Buffer.from('x-a'),
      Buffer.from('3'),
      Buffer.from('__proto__'),
      Buffer.from('p'),
      Buffer.from('x-l'),
      Buffer.from([0x63, 0xe9]),
    ]);
    assert.deepEqual(h['x-a'], ['1', '2', '3']);
    assert.equal(Object.getOwnPropertyDescriptor(h, '__proto__')?.value, 'p');
    assert.equal(Object.getPrototypeOf(h), Object.prototype);
    assert.equal(h['x-l'], 'c\u00e9');
  });

  it('times out a slow attempt on the clock, aborts its request, and retries it on the other instance', async () => {
    let sawSlow = false;
    // The balancer picks: call until one first attempt lands on the slow instance.
    for (let i = 0; i < 20 && !sawSlow; i++) {
      const before = held.length;
      let answered = false;
      const p = mesh.request('http://up/slow').finally(() => {
        answered = true;
      });
      await until(() => held.length > before || answered);
      if (answered) {
        await (await p).body.dump();
        continue;
      }
      sawSlow = true;
      const h = held[held.length - 1] as (typeof held)[number];
      const closed = once(h.req.socket, 'close');
      clock.advance(1_000);
      const res = await settle(p);
      assert.match(await res.body.text(), /^fast GET \/slow/);
      await closed; // the timed-out request's connection was given up
    }
    assert.ok(sawSlow);
  });

  it('mesh.fetch over the dispatcher: a timed-out attempt is given up through the same hook and retried', async () => {
    let sawSlow = false;
    // The balancer picks: call until one first attempt lands on the slow instance.
    for (let i = 0; i < 20 && !sawSlow; i++) {
      const before = held.length;
      let answered = false;
      const p = mesh.fetch('http://up/slow').finally(() => {
        answered = true;
      });
      await until(() => held.length > before || answered);
      if (answered) {
        await (await p).arrayBuffer();
        continue;
      }
      sawSlow = true;
      const h = held[held.length - 1] as (typeof held)[number];
      const closed = once(h.req.socket, 'close');
      clock.advance(1_000);
      const res = await settle(p);
      assert.match(await res.text(), /^fast GET \/slow/);
      await closed;
    }
    assert.ok(sawSlow);
  });

  it('a timeout with no instance left is a TimeoutError', async () => {
    const before = held.length;
    // A POST is not retried: the slow attempt's timeout is the call's error.
    let p: Promise<unknown> | undefined;
    for (let i = 0; i < 20 && held.length === before; i++) {
      let answered = false;
      p = mesh.request('http://up/slow', { method: 'POST', body: 'b' }).then(
        (r) => r.body.dump(),
        (e: unknown) => e,
      );
      void p.finally(() => {
        answered = true;
      });
      await until(() => held.length > before || answered);
    }
    clock.advance(1_000);
    const err = await settle(p as Promise<unknown>);
    assert.ok(err instanceof TimeoutError, String(err));
  });

  it("the caller's signal aborts a waiting attempt with its reason", async () => {
    const c = new AbortController();
    const before = held.length;
    let p: Promise<unknown> | undefined;
    for (let i = 0; i < 20 && held.length === before; i++) {
      let answered = false;
      p = mesh.request('http://up/slow', { signal: c.signal }).then(
        (r) => r.body.dump(),
        (e: unknown) => e,
      );
      void p.finally(() => {
        answered = true;
      });
      await until(() => held.length > before || answered);
    }
    c.abort(new Error('caller went away'));
    const err = await p;
    assert.ok(err instanceof Error && err.message === 'caller went away', String(err));
  });

  it('streams a large body with backpressure, and reads it whole', async () => {
    const res = await mesh.request('http://up/big');
    let size = 0;
    for await (const chunk of res.body) size += (chunk as Buffer).length;
    assert.equal(size, BIG.length);
    const whole = await mesh.request('http://up/big');
    assert.equal((await whole.body.arrayBuffer()).byteLength, BIG.length);
    assert.equal(whole.body.bodyUsed, true);
    await assert.rejects(whole.body.text(), TypeError, 'a body reads once');
    const piped = await mesh.request('http://up/big');
    assert.equal((await piped.body.bytes()).length, BIG.length);
  });

  it('destroying a body gives its request up', async () => {
    const before = held.length;
    const res = await mesh.request('http://up/hold-body');
    await until(() => held.length > before);
    const h = held[held.length - 1] as (typeof held)[number];
    const closed = once(h.res, 'close');
    res.body.destroy();
    await closed;
    assert.equal(res.body.destroyed, true);
  });

  it('a body cut off mid-way fails text() and a stream read alike', async () => {
    const whole = await mesh.request('http://up/cut');
    await assert.rejects(whole.body.text());
    const streamed = await mesh.request('http://up/cut');
    await assert.rejects(async () => {
      for await (const _ of streamed.body) {
        // read until the error
      }
    });
  });

  it('a body read whole ends and closes as a stream, as undici.request’s does', async () => {
    // Listeners for 'end'/'close' (or stream.finished) must not wait forever after text().
    const events = (body: NodeJS.EventEmitter) => {
      const seen: string[] = [];
      body.once('end', () => seen.push('end')).once('close', () => seen.push('close'));
      return seen;
    };
    // undici's: 'end' before the read resolves, 'close' by the time the stream is finished.
    const raw = await undiciRequest(`http://127.0.0.1:${fast.port}/x`);
    const rawSeen = events(raw.body);
    await raw.body.text();
    assert.ok(rawSeen.includes('end'));
    await finished(raw.body);
    assert.deepEqual(rawSeen, ['end', 'close']);
    for (const read of ['text', 'json', 'arrayBuffer', 'bytes', 'blob'] as const) {
      const res = await mesh.request('http://up/x');
      const seen = events(res.body);
      await res.body[read]().catch(() => {}); // json() of a plain text body rejects; the stream still ends
      assert.ok(seen.includes('end'), `${read}: ${seen.join(',')}`);
      assert.equal(res.body.readableEnded, true, read);
      await finished(res.body);
      assert.deepEqual(seen, ['end', 'close'], read);
      assert.equal(res.body.destroyed, true, read);
    }
    // Read whole while the body is still arriving.
    const before = held.length;
    const res = await mesh.request('http://up/hold-body');
    await until(() => held.length > before);
    const seen = events(res.body);
    const text = res.body.text();
    (held[held.length - 1] as (typeof held)[number]).res.end('rest');
    assert.equal(await text, 'part;rest');
    assert.ok(seen.includes('end'), seen.join(','));
    await finished(res.body);
    assert.deepEqual(seen, ['end', 'close']);
  });

  it('does not follow a redirect, as undici.request does not', async () => {
    const res = await mesh.request('http://up/redirect');
    assert.equal(res.statusCode, 302);
    assert.equal(res.headers.location, '/elsewhere');
    await res.body.dump();
  });

  it('dumps a body and gives a web stream on request', async () => {
    const a = await mesh.request('http://up/x');
    assert.equal(await a.body.dump(), null);
    const b = await mesh.request('http://up/x');
    const chunks: Uint8Array[] = [];
    for await (const c of b.body.body as unknown as AsyncIterable<Uint8Array>) chunks.push(c);
    assert.match(Buffer.concat(chunks).toString(), / GET \/x$/);
  });
});
