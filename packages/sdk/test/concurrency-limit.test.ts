// Concurrency rules on the inbound pipeline: slots held while a request is in flight and
// given back when its response closes, through createMesh on real servers on 127.0.0.1.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { get, type IncomingMessage, type ServerResponse } from 'node:http';
import { after, before, it } from 'node:test';
import { InMemoryKvStore, InMemoryRegistry, MemoryLogger } from '@meshlet/core';
import { listen } from '@meshlet/core/testing';
import { RateLimitedError } from '@meshlet/ratelimit';
import express from 'express';
import { createMesh, type Mesh } from '../src/index.js';

/** A request the handler holds: it answers when the test says so. */
interface Held {
  readonly path: string;
  finish(): void;
  /** Resolves when the response has closed; the pipeline's release listener ran before. */
  readonly closed: Promise<void>;
}

/** Hands each request the handler receives to whoever waits for the next one. */
class Arrivals {
  readonly #waiting: ((held: Held) => void)[] = [];
  readonly #early: Held[] = [];

  arrive(req: IncomingMessage, res: ServerResponse): Held {
    // Registered inside the handler, so after the pipeline's own 'close' listener.
    const closed = once(res, 'close').then(() => undefined);
    const held: Held = { path: req.url ?? '/', finish: () => res.end('done'), closed };
    const waiter = this.#waiting.shift();
    if (waiter) waiter(held);
    else this.#early.push(held);
    return held;
  }

  next(): Promise<Held> {
    const early = this.#early.shift();
    if (early) return Promise.resolve(early);
    return new Promise((resolve) => this.#waiting.push(resolve));
  }
}

interface Answer {
  readonly status: number;
  readonly retryAfter: string | undefined;
  readonly body: string;
}

/** GET on its own connection; rejects when `signal` aborts it. */
function send(port: number, path: string, signal?: AbortSignal): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = get({ host: '127.0.0.1', port, path, agent: false, ...(signal ? { signal } : {}) }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        body += chunk;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'], body }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

const registry = new InMemoryRegistry();
const rules = new InMemoryKvStore();
const arrivals = new Arrivals();
let mesh: Mesh;
let plain: Awaited<ReturnType<typeof listen>>;
let viaExpress: Awaited<ReturnType<typeof listen>>;

before(async () => {
  mesh = createMesh({ service: 'reports', registry, rules, logger: new MemoryLogger() });
  plain = await listen(
    mesh.httpHandler(async (req, res) => {
      if (req.url === '/refused') {
        arrivals.arrive(req, res);
        // A limit the handler enforces itself: the request is refused after the pipeline admitted it.
        throw new RateLimitedError({
          allowed: false,
          rule: { name: 'in-handler', scope: 'service', rate: 1, perMs: 1000, burst: 1, mode: 'local' },
          retryAfterSeconds: 1,
        });
      }
      arrivals.arrive(req, res);
    }),
  );
  const app = express();
  app.use(mesh.express());
  app.get('/throws', (req, res) => {
    arrivals.arrive(req, res);
    throw new Error('handler failed');
  });
  // Express's own error answer would log the stack; this one answers quietly.
  app.use((_err: Error, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
    res.status(500).end('failed');
  });
  viaExpress = await listen(app);
  await rules.put(
    'meshlet/rules/reports',
    JSON.stringify({
      service: 'reports',
      ratelimit: {
        rules: [
          { name: 'two-reports', api: { method: 'GET', path: '/slow/*' }, concurrency: 2 },
          { name: 'one-refused', api: { method: 'GET', path: '/refused' }, concurrency: 1 },
          { name: 'one-throwing', api: { method: 'GET', path: '/throws' }, concurrency: 1 },
        ],
      },
    }),
  );
  await mesh.rulesInForce('reports');
});

after(async () => {
  await plain.close();
  await viaExpress.close();
  await mesh.close();
});

it('admits two held requests, answers the third 429 naming the rule, admits again once one finishes', async () => {
  const port = plain.port;
  const arrivingA = arrivals.next();
  const a = send(port, '/slow/a');
  const heldA = await arrivingA;
  const arrivingB = arrivals.next();
  const b = send(port, '/slow/b');
  const heldB = await arrivingB;
  assert.deepEqual([heldA.path, heldB.path], ['/slow/a', '/slow/b']);
  assert.equal(mesh.rateLimiter.stats.inFlight, 2);

  const third = await send(port, '/slow/c');
  assert.equal(third.status, 429);
  assert.equal(third.retryAfter, '1');
  assert.equal(JSON.parse(third.body).rule, 'two-reports');
  assert.equal(JSON.parse(third.body).limit, '2 in flight');

  heldA.finish();
  assert.deepEqual(await a, { status: 200, retryAfter: undefined, body: 'done' });
  await heldA.closed;
  assert.equal(mesh.rateLimiter.stats.inFlight, 1);

  const arrivingD = arrivals.next();
  const d = send(port, '/slow/d');
  const heldD = await arrivingD;
  assert.equal(heldD.path, '/slow/d');
  assert.equal((await send(port, '/slow/e')).status, 429, 'full again');

  heldB.finish();
  heldD.finish();
  assert.equal((await b).status, 200);
  assert.equal((await d).status, 200);
  await Promise.all([heldB.closed, heldD.closed]);
  assert.equal(mesh.rateLimiter.stats.inFlight, 0);
});

it('a client that aborts its request frees its slot', async () => {
  const port = plain.port;
  const arrivingA = arrivals.next();
  const a = send(port, '/slow/a');
  const heldA = await arrivingA;
  const abort = new AbortController();
  const arrivingB = arrivals.next();
  const b = send(port, '/slow/b', abort.signal);
  const heldB = await arrivingB;
  assert.equal((await send(port, '/slow/c')).status, 429);

  abort.abort();
  await assert.rejects(b, { name: 'AbortError' });
  await heldB.closed;
  assert.equal(mesh.rateLimiter.stats.inFlight, 1, 'the aborted request gave its slot back; the other still holds one');

  const arrivingC = arrivals.next();
  const c = send(port, '/slow/c');
  const heldC = await arrivingC;
  assert.equal(heldC.path, '/slow/c');
  heldA.finish();
  heldC.finish();
  assert.equal((await a).status, 200);
  assert.equal((await c).status, 200);
  await Promise.all([heldA.closed, heldC.closed]);
  assert.equal(mesh.rateLimiter.stats.inFlight, 0);
});

it('a request the handler refuses later gives its slot back', async () => {
  for (let i = 0; i < 3; i++) {
    const arriving = arrivals.next();
    const answer = await send(plain.port, '/refused');
    const held = await arriving;
    assert.equal(answer.status, 429);
    assert.equal(JSON.parse(answer.body).rule, 'in-handler', 'refused by the handler, never by the full concurrency rule');
    await held.closed;
    assert.equal(mesh.rateLimiter.stats.inFlight, 0);
  }
});

it('a handler that throws gives its slot back (Express answers the error)', async () => {
  for (let i = 0; i < 3; i++) {
    const arriving = arrivals.next();
    const answer = await send(viaExpress.port, '/throws');
    const held = await arriving;
    assert.deepEqual([answer.status, answer.body], [500, 'failed'], 'the handler ran: the one slot was free every time');
    await held.closed;
    assert.equal(mesh.rateLimiter.stats.inFlight, 0);
  }
});
