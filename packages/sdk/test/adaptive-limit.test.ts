// The adaptive concurrency limit on the inbound pipeline, through createMesh on a real
// server on 127.0.0.1: refusals before the handler runs (503 or 429 by rule), load shedding
// by class, the admin status and /metrics, the option, and a bad option named by field.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { get, type IncomingMessage, type ServerResponse } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { InMemoryKvStore, InMemoryRegistry, MemoryLogger, RuleValidationError } from '@meshlet/core';
import { adminAuthorization, listen } from '@meshlet/core/testing';
import { createMesh, type Mesh } from '../src/index.js';

const TOKEN = 'adaptive-admin-token-0123456789';

interface Answer {
  readonly status: number;
  readonly body: string;
}

function send(port: number, path: string, headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = get({ host: '127.0.0.1', port, path, agent: false, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        body += chunk;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

/** Requests the handler holds until told; counts every request the handler saw. */
class Held {
  seen = 0;
  readonly #waiting: ((r: { finish(): void; closed: Promise<unknown> }) => void)[] = [];
  arrive(_req: IncomingMessage, res: ServerResponse): void {
    this.seen++;
    const closed = once(res, 'close');
    this.#waiting.shift()?.({ finish: () => res.end('done'), closed });
  }
  next(): Promise<{ finish(): void; closed: Promise<unknown> }> {
    return new Promise((resolve) => this.#waiting.push(resolve));
  }
}

describe('adaptive limit by rule, on a real server', () => {
  const rules = new InMemoryKvStore();
  const held = new Held();
  let mesh: Mesh;
  let server: Awaited<ReturnType<typeof listen>>;

  before(async () => {
    mesh = createMesh({
      service: 'catalog',
      registry: new InMemoryRegistry(),
      rules,
      logger: new MemoryLogger(),
      admin: { token: TOKEN },
      tagsFromHeaders: [{ header: 'x-priority', tag: 'priority' }],
    });
    server = await listen(mesh.httpHandler((req, res) => held.arrive(req, res)));
    await mesh.register({ port: server.port });
    await rules.put(
      'meshlet/rules/catalog',
      JSON.stringify({
        service: 'catalog',
        ratelimit: {
          // Pinned at 4 (floor = ceiling) so that the test knows the limit; classes shed below it.
          adaptive: {
            minLimit: 4,
            maxLimit: 4,
            initialLimit: 4,
            classes: [{ name: 'batch', when: [{ tag: 'priority', op: 'equals', value: 'batch' }], share: 0.5 }],
          },
        },
      }),
    );
    await mesh.rulesInForce('catalog');
  });

  after(async () => {
    await server.close();
    await mesh.close();
  });

  it('sheds batch at half the limit, refuses everything at the limit with 503 before the handler, admits again after', async () => {
    const port = server.port;
    const inFlight: { answer: Promise<Answer>; finish(): void; closed: Promise<unknown> }[] = [];
    const hold = async (headers: Record<string, string> = {}) => {
      const arriving = held.next();
      const answer = send(port, '/items', headers);
      inFlight.push({ answer, ...(await arriving) });
    };
    await hold({ 'x-priority': 'batch' });
    await hold({ 'x-priority': 'batch' });
    const seenAtHalf = held.seen;
    const batch = await send(port, '/items', { 'x-priority': 'batch' });
    assert.equal(batch.status, 503, 'batch refused at 2 of 4');
    assert.equal(JSON.parse(batch.body).class, 'batch');
    assert.equal(held.seen, seenAtHalf, 'the handler never saw the refused request');

    await hold();
    await hold();
    const full = await send(port, '/items');
    assert.equal(full.status, 503);
    assert.deepEqual(JSON.parse(full.body), {
      error: 'overloaded',
      code: 'MESHLET_OVERLOADED',
      service: 'catalog',
      rule: 'adaptive',
      scope: 'service',
      limit: '4 in flight',
      retryAfterSeconds: 1,
      class: 'default',
    });

    const status = JSON.parse((await send(port, '/_meshlet/status', adminAuthorization(TOKEN, port))).body);
    assert.equal(status.limiter.adaptive.limit, 4);
    assert.equal(status.limiter.adaptive.inFlight, 4);
    assert.equal(status.limiter.adaptive.refused, 2);
    assert.deepEqual(
      status.limiter.adaptive.classes.map((c: { name: string; refused: number }) => [c.name, c.refused]),
      [
        ['batch', 1],
        ['default', 1],
      ],
    );
    const metrics = (await send(port, '/_meshlet/metrics', adminAuthorization(TOKEN, port))).body;
    assert.match(metrics, /^meshlet_adaptive_limit 4$/m);
    assert.match(metrics, /^meshlet_adaptive_in_flight 4$/m);
    assert.match(metrics, /^meshlet_adaptive_refused_total\{class="batch"\} 1$/m);
    assert.match(metrics, /^meshlet_adaptive_refused_total\{class="default"\} 1$/m);

    for (const r of inFlight) r.finish();
    for (const r of inFlight) assert.equal((await r.answer).status, 200);
    await Promise.all(inFlight.map((r) => r.closed));
    assert.equal(mesh.rateLimiter.stats.adaptive?.inFlight, 0, 'every slot given back when the responses closed');
    inFlight.length = 0;
    await hold({ 'x-priority': 'batch' });
    for (const r of inFlight) r.finish();
    assert.equal((await inFlight[0]?.answer)?.status, 200, 'admitted again');
  });

  it('a rule switches the status to 429', async () => {
    await rules.put(
      'meshlet/rules/catalog',
      JSON.stringify({ service: 'catalog', ratelimit: { adaptive: { minLimit: 1, maxLimit: 1, initialLimit: 1, status: 429 } } }),
    );
    await mesh.rulesInForce('catalog');
    const arriving = held.next();
    const first = send(server.port, '/items');
    const h = await arriving;
    assert.equal((await send(server.port, '/items')).status, 429);
    h.finish();
    assert.equal((await first).status, 200);
  });
});

describe('adaptive limit by option', () => {
  it('is on with `ratelimit: { adaptive: true }`: measuring its minimum RTT at the floor first', async () => {
    const mesh = createMesh({
      service: 'opt',
      registry: new InMemoryRegistry(),
      logger: new MemoryLogger(),
      ratelimit: { adaptive: true },
    });
    const server = await listen(mesh.httpHandler((_req, res) => res.end('ok')));
    try {
      for (let i = 0; i < 30; i++) assert.equal((await send(server.port, '/')).status, 200);
      const a = mesh.rateLimiter.stats.adaptive;
      assert.ok(a);
      assert.equal(a.probes, 1, 'the first 25 requests measured the minimum RTT');
      assert.equal(a.mode, 'track');
      assert.equal(a.limit, 20, 'back to the initial limit');
      assert.equal(a.admitted, 30);
    } finally {
      await server.close();
      await mesh.close();
    }
  });

  it('a bad option fails createMesh, naming the field', () => {
    assert.throws(
      () =>
        createMesh({
          service: 'bad',
          registry: new InMemoryRegistry(),
          logger: new MemoryLogger(),
          ratelimit: { adaptive: { minLimit: 0 } },
        }),
      (e: unknown) => e instanceof RuleValidationError && e.path === 'ratelimit.adaptive.minLimit',
    );
  });
});
