// Hedged requests through mesh.fetch and mesh.request on real servers on 127.0.0.1: the
// first instance holds the request, the hedge goes to the other after the rule's delay,
// its answer wins, and the held request is aborted (its connection closed). The mesh runs
// on a ManualClock: the hedge's delay passes only when the test moves the clock, after the
// first attempt has arrived. (On the system clock, a loaded machine could take longer than
// the 20 ms delay to connect the first attempt, the hedge then arrived first, the test
// answered the first attempt taking it for the hedge, and the hedge never won.)
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { InMemoryKvStore, InMemoryRegistry, ManualClock, MemoryLogger } from '@meshlet/core';
import { adminAuthorization, listen } from '@meshlet/core/testing';
import { createMesh, type Mesh } from '../src/index.js';

interface Arrival {
  readonly id: string;
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  /** Resolves when the server side of the request closes (answered or aborted). */
  readonly closed: Promise<unknown>;
}

/** Every request any instance receives, handed to whoever waits for the next one. */
class Arrivals {
  readonly #waiting: ((a: Arrival) => void)[] = [];
  readonly #early: Arrival[] = [];
  arrive(a: Arrival): void {
    const w = this.#waiting.shift();
    if (w) w(a);
    else this.#early.push(a);
  }
  next(): Promise<Arrival> {
    const e = this.#early.shift();
    return e ? Promise.resolve(e) : new Promise((r) => this.#waiting.push(r));
  }
}

const ADMIN_TOKEN = 'a-long-enough-admin-token-0123';

describe('hedged requests through the mesh', () => {
  const registry = new InMemoryRegistry();
  const rules = new InMemoryKvStore();
  const arrivals = new Arrivals();
  const clock = new ManualClock(Date.UTC(2026, 0, 1));
  const servers: Awaited<ReturnType<typeof listen>>[] = [];
  let caller: Mesh;

  before(async () => {
    for (const id of ['inv-0', 'inv-1']) {
      // Each instance holds every request until the test answers it.
      const server = await listen((req, res) => arrivals.arrive({ id, req, res, closed: once(res, 'close') }));
      servers.push(server);
      await registry.register({
        id,
        service: 'inventory',
        address: '127.0.0.1',
        port: server.port,
        tags: [],
        metadata: {},
        health: 'passing',
      });
    }
    caller = createMesh({ service: 'shop', registry, rules, clock, logger: new MemoryLogger(), admin: { token: ADMIN_TOKEN } });
    await caller.rules.apply(JSON.stringify({ service: 'inventory', breaker: { hedge: { delayMs: 20 } } }), { author: 'test' });
  });
  after(async () => {
    await caller.close();
    for (const s of servers) await s.close();
  });

  for (const client of ['fetch', 'request'] as const) {
    it(`${client}: the hedge to the other instance answers first; the held first attempt is aborted`, async () => {
      const before = caller.breakers.hedgeStats('inventory');
      const answer =
        client === 'fetch'
          ? caller.fetch('http://inventory/stock').then(async (r) => ({ status: r.status, body: await r.text() }))
          : caller.request('http://inventory/stock').then(async (r) => ({ status: r.statusCode, body: await r.body.text() }));
      const first = await arrivals.next();
      // The first attempt is held at its instance: now the hedge's delay passes.
      clock.advance(20);
      const hedge = await arrivals.next();
      assert.notEqual(hedge.id, first.id, 'the hedge goes to the other instance');
      hedge.res.end(`from ${hedge.id}`);
      assert.deepEqual(await answer, { status: 200, body: `from ${hedge.id}` });
      await first.closed;
      assert.equal(first.res.writableEnded, false, 'the first attempt was never answered: its request was aborted');
      const stats = caller.breakers.hedgeStats('inventory');
      assert.deepEqual(
        { hedges: stats?.hedges, wins: stats?.wins },
        { hedges: (before?.hedges ?? 0) + 1, wins: (before?.wins ?? 0) + 1 },
        'this call sent one hedge, and the hedge won',
      );
    });
  }

  it('a POST is never hedged', async () => {
    const answer = caller.fetch('http://inventory/orders', { method: 'POST', body: 'x' });
    const first = await arrivals.next();
    const before = caller.breakers.hedgeStats('inventory');
    // Nothing else arrives while the POST is held: answer it, then prove no second request came
    // by the next arrival being the GET sent afterwards.
    first.res.end('posted');
    assert.equal((await answer).status, 200);
    const get = caller.fetch('http://inventory/stock');
    const next = await arrivals.next();
    assert.equal(next.req.method, 'GET');
    next.res.end('ok');
    await (await get).text();
    assert.equal(caller.breakers.hedgeStats('inventory')?.eligible, (before?.eligible ?? 0) + 1, 'only the GET was eligible');
  });
  it("the admin metrics carry each called service's hedging, as hedgeStats counts it", async () => {
    const own = await listen(caller.httpHandler((_req, res) => res.end('shop')));
    servers.push(own);
    await caller.register({ port: own.port });
    const stats = caller.breakers.hedgeStats('inventory');
    assert.ok(stats !== undefined && stats.hedges >= 2, 'the tests above hedged');
    const res = await globalThis.fetch(`http://127.0.0.1:${own.port}/_meshlet/metrics`, {
      headers: adminAuthorization(ADMIN_TOKEN, own.port),
    });
    const text = await res.text();
    for (const [family, n] of [
      ['meshlet_hedge_eligible_total', stats.eligible],
      ['meshlet_hedges_total', stats.hedges],
      ['meshlet_hedge_wins_total', stats.wins],
      ['meshlet_hedges_budget_refused_total', stats.denied],
      ['meshlet_hedge_delay_ms', 20],
    ] as const)
      assert.match(text, new RegExp(`^${family}\\{service="inventory"\\} ${n}$`, 'm'));
  });
});
