// One of three instances accepts connections and never answers; there are no rules. Under
// the default balancer (least requests) the calls it holds keep it from being chosen, so it
// gets a handful of calls, not the third of them round robin would send it. Each caller
// bounds its own call with AbortSignal.timeout.
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { after, describe, it } from 'node:test';
import { InMemoryKvStore, InMemoryRegistry } from '@meshlet/core';
import { listen, type TestServer } from '@meshlet/core/testing';
import { createMesh, type Mesh } from '../src/index.js';

const CALLS = 120;
const CONCURRENCY = 6;
/** Long enough that a healthy call never hits it, on a loaded machine too. */
const TIMEOUT_MS = 3000;

const servers: TestServer[] = [];
const meshes: Mesh[] = [];
after(async () => {
  for (const m of meshes) await m.close();
  for (const s of servers) await s.close();
});

describe('an instance that accepts calls and never answers, no rules', () => {
  it('gets a few calls under the default balancer, not one in three', async () => {
    const registry = new InMemoryRegistry();
    const held: IncomingMessage[] = [];
    const hung = await listen((req) => {
      held.push(req); // never answered
    });
    servers.push(hung);
    const a = await listen((_req, res) => res.end('a'));
    const b = await listen((_req, res) => res.end('b'));
    servers.push(a, b);
    for (const [id, s] of [
      ['up-a', a],
      ['up-b', b],
      ['up-hung', hung],
    ] as const)
      await registry.register({ id, service: 'up', address: '127.0.0.1', port: s.port, tags: [], metadata: {}, health: 'passing' });
    const mesh = createMesh({ service: 'caller', registry, rules: new InMemoryKvStore() });
    meshes.push(mesh);

    const answered: Record<string, number> = {};
    const failures: string[] = [];
    let next = 0;
    const worker = async () => {
      while (next < CALLS) {
        next++;
        try {
          const res = await mesh.fetch('http://up/x', { signal: AbortSignal.timeout(TIMEOUT_MS) });
          const body = await res.text();
          answered[body] = (answered[body] ?? 0) + 1;
        } catch (err) {
          failures.push((err as Error).name);
        }
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));

    // The hung instance is chosen only while another holds at least as many calls, and at
    // most CONCURRENCY are in flight, so it never holds more than (CONCURRENCY + 1) / 2 at
    // once; none of its calls ended before the test's calls did.
    const bound = Math.ceil((CONCURRENCY + 1) / 2);
    assert.ok(held.length <= bound, `${held.length} of ${CALLS} calls reached the hung instance; at most ${bound} may`);
    assert.equal(failures.length, held.length, JSON.stringify({ failures, answered }));
    assert.ok(
      failures.every((name) => name === 'TimeoutError'),
      failures.join(),
    );
    assert.equal((answered.a ?? 0) + (answered.b ?? 0), CALLS - failures.length, JSON.stringify(answered));
  });
});
