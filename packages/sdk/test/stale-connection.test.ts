// The keep-alive race on a service with one instance: the server closes a kept-alive
// connection just as the next request is written on it, and the request fails with no byte
// of an answer (undici's "other side closed", or ECONNRESET). Played here deterministically
// by a real server on 127.0.0.1 that answers the first request of each connection and
// closes (or resets) the connection when a second one arrives on it. With no untried
// instance left, an idempotent call goes once more to the same instance, on a new
// connection; a POST is not sent again (it may have reached the server); a refused
// connection is not retried on the instance that refused it; and the extra attempt is one.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { after, describe, it } from 'node:test';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { sendFailureOf } from '@meshlet/breaker';
import { InMemoryKvStore, InMemoryRegistry } from '@meshlet/core';
import { adminAuthorization, listen } from '@meshlet/core/testing';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace';
import { Agent } from 'undici';
import { createMesh, type Mesh } from '../src/index.js';
import { staleWatchingConnector } from '../src/mesh-agents.js';

/** How the server drops a connection: `close` destroys it (FIN), `reset` sends RST, `end` ends it (on TLS with a close_notify alert first, as a server closing an idle connection gracefully does). */
type Drop = 'close' | 'reset' | 'end';
const TOKEN = 'stale-connection-admin-secret';

/** One request as the server saw it: its connection, its place on it, and whether the client asked to close after it. */
interface Seen {
  readonly connection: number;
  readonly nth: number;
  readonly close: boolean;
  readonly dropped: boolean;
}

/**
 * A server that answers the first `answers` requests of each connection (kept alive) and,
 * when the next one arrives on it, closes (FIN) or resets (RST) the connection without
 * writing a byte: what the client sees when it wrote on a connection the server was
 * closing as idle. With `answers` 1 (the default) it breaks every reused connection; with
 * more, it is a healthy instance whose connections race now and then. With `dropAll`,
 * every request is dropped so.
 */
class RacingServer {
  readonly seen: Seen[] = [];
  /** Connections that answered a request and are still open (kept alive). */
  idle = 0;
  dropAll = false;
  readonly #server: net.Server;
  #connections = 0;

  constructor(
    readonly drop: Drop,
    readonly answers = 1,
    /** A certificate and key: the server speaks TLS. */
    tlsOptions?: tls.TlsOptions,
  ) {
    this.#server =
      tlsOptions === undefined
        ? net.createServer((socket) => this.#serve(socket))
        : tls.createServer(tlsOptions, (socket) => this.#serve(socket));
  }

  listen(): Promise<number> {
    return new Promise((resolve) => this.#server.listen(0, '127.0.0.1', () => resolve((this.#server.address() as net.AddressInfo).port)));
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }

  #serve(socket: net.Socket): void {
    const connection = this.#connections++;
    let nth = 0;
    let buffered = '';
    let answered = false;
    socket.on('error', () => {});
    socket.on('close', () => {
      if (answered) this.idle--;
    });
    socket.on('data', (chunk) => {
      buffered += chunk.toString('latin1');
      for (;;) {
        const end = buffered.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buffered.slice(0, end).toLowerCase();
        const length = Number(/content-length: *(\d+)/.exec(head)?.[1] ?? 0);
        if (buffered.length < end + 4 + length) return;
        buffered = buffered.slice(end + 4 + length);
        const dropped = nth >= this.answers || this.dropAll;
        this.seen.push({ connection, nth: nth++, close: head.includes('connection: close'), dropped });
        if (dropped) {
          // A TLS socket resets through the TCP socket under it (its own handle cannot).
          if (this.drop === 'reset') ((socket as { _parent?: net.Socket })._parent ?? socket).resetAndDestroy();
          else if (this.drop === 'end') socket.end();
          else socket.destroy();
          return;
        }
        socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\nok');
        if (!answered) this.idle++;
        answered = true;
      }
    });
  }
}

const meshes: Mesh[] = [];
const servers: RacingServer[] = [];
after(async () => {
  for (const m of meshes) await m.close();
  for (const s of servers) await s.close();
});

async function oneInstance(drop: Drop): Promise<{ mesh: Mesh; server: RacingServer }> {
  const server = new RacingServer(drop);
  servers.push(server);
  const port = await server.listen();
  const registry = new InMemoryRegistry();
  await registry.register({ id: 'only', service: 'single', address: '127.0.0.1', port, tags: [], metadata: {}, health: 'passing' });
  const mesh = createMesh({ service: 'caller', registry, rules: new InMemoryKvStore() });
  meshes.push(mesh);
  return { mesh, server };
}

type Client = 'fetch' | 'request';

function call(mesh: Mesh, client: Client, method: 'GET' | 'POST'): Promise<string> {
  const body = method === 'POST' ? { body: 'order' } : {};
  if (client === 'fetch') return mesh.fetch('http://single/x', { method, ...body }).then((r) => r.text());
  return mesh.request('http://single/x', { method, ...body }).then((r) => r.body.text());
}

async function failureOf(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  return assert.fail('the call did not fail');
}

describe('a kept-alive connection closed by the single instance as a request is written on it', () => {
  for (const client of ['fetch', 'request'] as const) {
    for (const drop of ['close', 'reset'] as const) {
      it(`${client}, ${drop}: a GET goes again to the instance on a new connection, and is answered`, async () => {
        const { mesh, server } = await oneInstance(drop);
        // Calls one after the other until one was written on a kept-alive connection (undici
        // reuses one within the first three calls): every call is answered.
        for (let i = 0; i < 8 && !server.seen.some((s) => s.dropped); i++) assert.equal(await call(mesh, client, 'GET'), 'ok');
        const at = server.seen.findIndex((s) => s.dropped);
        assert.ok(at > 0, `no request met a closing connection: ${JSON.stringify(server.seen)}`);
        // The one after it: the same request on a connection of its own, closed after the answer.
        assert.deepEqual(server.seen.slice(at + 1), [{ connection: server.seen[at + 1]?.connection, nth: 0, close: true, dropped: false }]);
      });
    }

    it(`${client}: a POST that met it is not sent again (it may have reached the server)`, async () => {
      const { mesh, server } = await oneInstance('close');
      let calls = 0;
      let failed = 0;
      for (; calls < 8 && failed === 0; calls++) {
        try {
          await call(mesh, client, 'POST');
        } catch (err) {
          assert.equal(sendFailureOf(err), 'stale');
          failed++;
        }
      }
      assert.equal(failed, 1);
      // Each call sent once: the dropped POST was not sent again.
      assert.equal(server.seen.length, calls, JSON.stringify(server.seen));
    });

    it(`${client}: the extra attempt is one — when it is dropped too, the call fails`, async () => {
      const { mesh, server } = await oneInstance('close');
      let metReuse = false;
      for (let i = 0; i < 8 && !metReuse; i++) {
        server.dropAll = false;
        while (server.idle === 0) await call(mesh, client, 'GET');
        // Every request dropped now: a kept-alive connection's (stale), then the new one's.
        server.dropAll = true;
        const before = server.seen.length;
        const err = await failureOf(call(mesh, client, 'GET'));
        const sent = server.seen.slice(before).map((s) => [s.nth, s.close]);
        if (sent[0]?.[0] === 0) {
          // undici opened a new connection for it (its kept-alive one was not free yet): broken, not stale, not sent again.
          assert.deepEqual(sent, [[0, false]]);
          continue;
        }
        metReuse = true;
        // The kept-alive connection, then one new connection, dropped before an answer too
        // (broken, not stale: it carried nothing before): no third attempt, though two retries are allowed.
        assert.deepEqual(sent, [
          [1, false],
          [0, true],
        ]);
        assert.equal(sendFailureOf(err), 'broken');
      }
      assert.ok(metReuse, `no call was written on a kept-alive connection: ${JSON.stringify(server.seen)}`);
    });
  }
});

describe("the single instance's breaker, when its kept-alive connections close as requests are written on them", () => {
  // A rule that would eject the instance at a failure rate of 20% over 5 calls, were it not
  // the last one: its trips are counted (vetoedTrips) all the same.
  const RULE = {
    breaker: { rules: [{ level: 'instance', failureRateThreshold: 20, minimumCalls: 5, window: { type: 'count', size: 100 } }] },
  };
  const instanceBreaker = (mesh: Mesh) => mesh.breakers.snapshot().find((b) => b.breaker.instance === 'only');

  it('counts no failure, and no trip, for races the new connection then answered', async () => {
    const { mesh, server } = await oneInstance('close');
    await mesh.rules.apply(JSON.stringify({ service: 'single', ...RULE }), { author: 'test' });
    await mesh.rulesInForce('single');
    const races = () => server.seen.filter((s) => s.dropped).length;
    for (let i = 0; i < 40 && races() < 5; i++) assert.equal(await call(mesh, 'fetch', 'GET'), 'ok');
    assert.equal(races(), 5);
    const b = instanceBreaker(mesh);
    assert.deepEqual([b?.state, b?.failures, b?.vetoedTrips, b?.opened], ['closed', 0, 0, 0]);
    // Every call and its answered attempt counted: the dropped attempts counted nothing.
    assert.equal(b?.calls, server.seen.length - 5);
  });

  it('counts the failure of the new connection when it is dropped too: one per call', async () => {
    const { mesh, server } = await oneInstance('close');
    await mesh.rules.apply(JSON.stringify({ service: 'single', ...RULE }), { author: 'test' });
    await mesh.rulesInForce('single');
    for (let i = 0; i < 8; i++) {
      server.dropAll = false;
      while (server.idle === 0) await call(mesh, 'fetch', 'GET');
      server.dropAll = true;
      const before = server.seen.length;
      const failuresBefore = instanceBreaker(mesh)?.failures ?? 0;
      await failureOf(call(mesh, 'fetch', 'GET'));
      // undici opened a new connection for it (its kept-alive one was not free yet): one broken attempt, counted.
      if (server.seen[before]?.nth === 0) continue;
      assert.equal(server.seen.length - before, 2, 'the kept-alive connection, then a new one');
      assert.equal((instanceBreaker(mesh)?.failures ?? 0) - failuresBefore, 1);
      return;
    }
    assert.fail(`no call was written on a kept-alive connection: ${JSON.stringify(server.seen)}`);
  });
});

describe("a POST's stale failure on one of two instances, at the instance breakers", () => {
  // The POST is not sent again (it may have reached the server): the stale attempt ends the
  // call. A rule that would eject an instance at a failure rate of 20% over 5 calls.
  const RULE = {
    breaker: { rules: [{ level: 'instance', failureRateThreshold: 20, minimumCalls: 5, window: { type: 'count', size: 100 } }] },
  };

  async function twoInstances(answers: number): Promise<{ mesh: Mesh; racing: RacingServer[] }> {
    const racing = [new RacingServer('close', answers), new RacingServer('close', answers)];
    servers.push(...racing);
    const registry = new InMemoryRegistry();
    for (const [i, server] of racing.entries()) {
      const port = await server.listen();
      await registry.register({ id: `i${i}`, service: 'single', address: '127.0.0.1', port, tags: [], metadata: {}, health: 'passing' });
    }
    const mesh = createMesh({ service: 'caller', registry, rules: new InMemoryKvStore() });
    meshes.push(mesh);
    await mesh.rules.apply(JSON.stringify({ service: 'single', ...RULE }), { author: 'test' });
    await mesh.rulesInForce('single');
    return { mesh, racing };
  }

  /** POSTs one after the other until `races` of them met a closing connection; the instance breakers then. */
  async function postUntil(mesh: Mesh, racing: RacingServer[], races: number) {
    const met = () => racing.reduce((n, s) => n + s.seen.filter((x) => x.dropped).length, 0);
    for (let i = 0; i < 200 && met() < races; i++) {
      try {
        await call(mesh, 'fetch', 'POST');
      } catch (err) {
        assert.equal(sendFailureOf(err), 'stale');
      }
    }
    assert.equal(met(), races, 'races met');
    return mesh.breakers
      .snapshot()
      .filter((b) => b.breaker.level === 'instance')
      .sort((x, y) => String(x.breaker.instance).localeCompare(String(y.breaker.instance)));
  }

  it('a healthy instance whose connections race now and then (answered between): no failure counted, no trip', async () => {
    // Three answers a connection, then a race: 6 races are 6 failed POSTs of some 24.
    const { mesh, racing } = await twoInstances(3);
    const breakers = await postUntil(mesh, racing, 6);
    assert.deepEqual(
      breakers.map((b) => [b.breaker.instance, b.calls > 0, b.failures, b.opened + b.vetoedTrips]),
      [
        ['i0', true, 0, 0],
        ['i1', true, 0, 0],
      ],
    );
  });

  it('an instance that breaks every reused connection: its repeated stale failures count, and it trips', async () => {
    const { mesh, racing } = await twoInstances(1);
    const breakers = await postUntil(mesh, racing, 8);
    // Per instance, the first break of a run counts nothing, every later one (no reused connection answered) one failure.
    assert.ok(
      breakers.every((b) => b.failures > 0),
      JSON.stringify(breakers),
    );
    assert.ok(
      breakers.some((b) => b.opened + b.vetoedTrips > 0),
      JSON.stringify(breakers),
    );
  });
});

describe('the stale mark over TLS (staleWatchingConnector)', () => {
  const fixture = (name: string) => readFileSync(fileURLToPath(new URL(`../../../../test/fixtures/tls/${name}`, import.meta.url)));
  // `end`: the server's TLS close_notify alert, read before the close, is no byte of an
  // answer (a TLSSocket's bytesRead counts decrypted bytes, not TLS records).
  for (const drop of ['end', 'close', 'reset'] as const) {
    it(`${drop}: a kept-alive https connection broken before any byte of its answer is marked stale`, async () => {
      const server = new RacingServer(drop, 1, { cert: fixture('server.pem'), key: fixture('server.key') });
      servers.push(server);
      const port = await server.listen();
      const agent = new Agent({ connect: staleWatchingConnector({ ca: fixture('ca.pem') }) });
      try {
        const origin = `https://127.0.0.1:${port}`;
        // Requests one after the other until one goes on a kept-alive connection (undici
        // reuses one within the first three): the others are each a connection's first, answered.
        let err: unknown;
        for (let i = 0; i < 8 && err === undefined; i++)
          await agent.request({ origin, path: '/x', method: 'GET' }).then(
            (r) => r.body.text(),
            (e: unknown) => {
              err = e;
            },
          );
        assert.deepEqual(
          server.seen.filter((x) => x.dropped).map((x) => x.nth),
          [1],
          'one request went on a kept-alive connection, and was dropped',
        );
        assert.equal(sendFailureOf(err), 'stale');
      } finally {
        await agent.destroy();
      }
    });
  }
});

describe('the attempt that went again after a stale connection', () => {
  it('says why on its span (io.meshlet.retry) and is counted in meshlet_retries_total', async () => {
    const server = new RacingServer('close');
    servers.push(server);
    const port = await server.listen();
    const registry = new InMemoryRegistry();
    await registry.register({ id: 'only', service: 'single', address: '127.0.0.1', port, tags: [], metadata: {}, health: 'passing' });
    const exporter = new InMemorySpanExporter();
    const mesh = createMesh({
      service: 'caller',
      registry,
      rules: new InMemoryKvStore(),
      tracing: { exporters: [exporter], metrics: false },
      admin: { token: TOKEN },
    });
    meshes.push(mesh);
    const own = await listen(mesh.httpHandler((_req, res) => res.end()));
    try {
      await mesh.register({ port: own.port });
      for (let i = 0; i < 8 && !server.seen.some((s) => s.dropped); i++) assert.equal(await call(mesh, 'fetch', 'GET'), 'ok');
      assert.ok(
        server.seen.some((s) => s.dropped),
        'no request met a closing connection',
      );
      await mesh.tracing?.forceFlush();
      const retried = exporter
        .getFinishedSpans()
        .filter((x) => x.kind === 2 && x.attributes['io.meshlet.retry'] !== undefined)
        .map((x) => [x.attributes['io.meshlet.instance'], x.attributes['io.meshlet.retry']]);
      assert.deepEqual(retried, [['only', 'stale']]);
      const metrics = await (
        await globalThis.fetch(`http://127.0.0.1:${own.port}/_meshlet/metrics`, { headers: adminAuthorization(TOKEN, own.port) })
      ).text();
      assert.match(metrics, /^meshlet_retries_total\{service="single",reason="stale"\} 1$/m);
    } finally {
      await own.close();
    }
  });
});

describe('a refused connection on the single instance', () => {
  const exporter = new InMemorySpanExporter();

  it('is not sent to it again (fetch and request)', async () => {
    const closed = await listen((_req, res) => res.end());
    await closed.close();
    const registry = new InMemoryRegistry();
    await registry.register({
      id: 'gone',
      service: 'single',
      address: '127.0.0.1',
      port: closed.port,
      tags: [],
      metadata: {},
      health: 'passing',
    });
    const mesh = createMesh({
      service: 'caller',
      registry,
      rules: new InMemoryKvStore(),
      tracing: { exporters: [exporter], metrics: false },
    });
    meshes.push(mesh);
    for (const client of ['fetch', 'request'] as const) {
      const err = await failureOf(call(mesh, client, 'GET'));
      assert.equal(sendFailureOf(err), 'not-sent');
      await mesh.tracing?.forceFlush();
      assert.equal(exporter.getFinishedSpans().length, 1, `${client}: one attempt`);
      exporter.reset();
    }
  });
});
