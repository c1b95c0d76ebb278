// An instance that answers 200 and then breaks the connection mid-body has failed the call
// as surely as one that answers 503: the default outlier detection (5 failures in a row)
// ejects it, as Envoy's counts a reset after the headers. A body that arrives whole ends the
// run; the caller's own abort, or the app giving the body up, counts nothing. Real servers
// on 127.0.0.1.
import assert from 'node:assert/strict';
import type { ServerResponse } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { InMemoryKvStore, InMemoryRegistry, MemoryLogger } from '@meshlet/core';
import { listen, type TestServer } from '@meshlet/core/testing';
import { createMesh, type Mesh } from '../src/index.js';

type Client = 'fetch' | 'request';

/** Promises 1,000 bytes, sends 7, and resets the connection. */
function breakMidBody(res: ServerResponse): void {
  res.writeHead(200, { 'content-length': '1000' });
  res.write('partial');
  setImmediate(() => res.socket?.destroy());
}

describe('a body broken after the headers counts against the instance', () => {
  const servers: TestServer[] = [];
  const meshes: Mesh[] = [];
  /** How each instance answers its n-th call: 'whole' or 'broken'. */
  let good: TestServer;
  let bad: TestServer;
  let badAnswers: (n: number) => 'whole' | 'broken' = () => 'broken';
  let badHits = 0;

  before(async () => {
    good = await listen((_req, res) => res.end('x'.repeat(1000)));
    bad = await listen((_req, res) => {
      if (badAnswers(badHits++) === 'broken') breakMidBody(res);
      else res.end('y'.repeat(1000));
    });
    servers.push(good, bad);
  });
  after(async () => {
    for (const m of meshes) await m.close();
    for (const s of servers) await s.close();
  });

  async function meshFor(service: string): Promise<Mesh> {
    const registry = new InMemoryRegistry();
    for (const [id, s] of [
      ['good', good],
      ['bad', bad],
    ] as const)
      await registry.register({ id, service, address: '127.0.0.1', port: s.port, tags: [], metadata: {}, health: 'passing' });
    // Round robin named: the counts below (every other call to `bad`) need calls in turn.
    const mesh = createMesh({
      service: 'caller',
      registry,
      rules: new InMemoryKvStore(),
      logger: new MemoryLogger(),
      route: { loadBalancer: { type: 'roundRobin' } },
    });
    meshes.push(mesh);
    return mesh;
  }

  /** One call, its body read whole; the body's error when it broke. */
  async function call(mesh: Mesh, client: Client, url: string): Promise<string | undefined> {
    try {
      if (client === 'fetch') await (await mesh.fetch(url)).text();
      else await (await mesh.request(url)).body.text();
      return undefined;
    } catch (err) {
      return String((err as Error & { cause?: unknown }).cause ?? err);
    }
  }

  const state = (mesh: Mesh, id: string) => mesh.breakers.snapshot().find((s) => s.breaker.instance === id);

  for (const client of ['fetch', 'request'] as const) {
    it(`mesh.${client}: five bodies broken in a row eject the instance; later calls go to the other`, async () => {
      badAnswers = () => 'broken';
      badHits = 0;
      const mesh = await meshFor(`svc-${client}`);
      const failures: string[] = [];
      for (let i = 0; i < 40; i++) {
        const failed = await call(mesh, client, `http://svc-${client}/x`);
        if (failed !== undefined) failures.push(failed);
      }
      assert.equal(state(mesh, 'bad')?.state, 'open', JSON.stringify(state(mesh, 'bad')));
      assert.equal(badHits, 5, 'the instance was sent nothing once ejected');
      assert.equal(failures.length, 5, 'only the answers already broken failed');
      assert.equal(state(mesh, 'good')?.state, 'closed');
    });
  }

  it('a body that arrives whole ends the run: an instance breaking every other body stays in', async () => {
    badAnswers = (n) => (n % 2 === 0 ? 'broken' : 'whole');
    badHits = 0;
    const mesh = await meshFor('svc-alternating');
    for (let i = 0; i < 40; i++) await call(mesh, 'request', 'http://svc-alternating/x');
    assert.equal(state(mesh, 'bad')?.state, 'closed', JSON.stringify(state(mesh, 'bad')));
    assert.equal(badHits, 20);
    assert.equal(state(mesh, 'bad')?.consecutiveFailures, 0, 'the last body arrived whole');
    // Then four broken in a row: counted, one short of the ejection.
    badAnswers = () => 'broken';
    for (let i = 0; i < 8; i++) await call(mesh, 'request', 'http://svc-alternating/x');
    assert.equal(badHits, 24);
    assert.equal(state(mesh, 'bad')?.consecutiveFailures, 4);
    assert.equal(state(mesh, 'bad')?.state, 'closed');
  });

  it('a body the app gives up, or the caller aborts, counts nothing', async () => {
    badAnswers = () => 'broken';
    badHits = 0;
    const mesh = await meshFor('svc-given-up');
    for (let i = 0; i < 20; i++) {
      const controller = new AbortController();
      const res = await mesh.fetch('http://svc-given-up/x', { signal: controller.signal });
      if (i % 2 === 0) await res.body?.cancel();
      else {
        controller.abort(new Error('the caller is done'));
        await res.text().catch(() => undefined);
      }
    }
    const bad = state(mesh, 'bad');
    assert.equal(bad?.state, 'closed');
    assert.equal(bad?.failures, 0, JSON.stringify(bad));
    assert.equal(badHits, 10);
  });
});
