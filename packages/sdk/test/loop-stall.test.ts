import assert from 'node:assert/strict';
import { once } from 'node:events';
import { it } from 'node:test';
import { Worker } from 'node:worker_threads';
import { InMemoryKvStore, InMemoryRegistry, MemoryLogger } from '@meshlet/core';
import { createMesh } from '../src/index.js';

// Three instances on a thread of their own (a client's blocked loop does not block them):
// each answers 20 ms after a request, and tells the test of every request it got.
const BACKEND = `
const http = require('node:http');
const { parentPort } = require('node:worker_threads');
const ports = [];
let listening = 0;
for (let i = 0; i < 3; i++) {
  const s = http.createServer((req, res) => {
    parentPort.postMessage('request');
    setTimeout(() => res.end('ok'), 20);
  });
  s.listen(0, '127.0.0.1', () => {
    ports[i] = s.address().port;
    if (++listening === 3) parentPort.postMessage(ports);
  });
}
`;

it("delivers answers that came in while the client's loop was blocked past the timeout, and opens no instance breaker", async () => {
  const backend = new Worker(BACKEND, { eval: true });
  const registry = new InMemoryRegistry();
  const mesh = createMesh({ service: 'front', registry, rules: new InMemoryKvStore(), logger: new MemoryLogger() });
  try {
    // Every request counted from the start (the listener is on before any is sent).
    let requests = 0;
    // Once the 30 calls' requests have all reached an instance, the loop is blocked
    // 800 ms (past the 500 ms timeout) from an I/O callback (the worker's message), as a
    // handler's synchronous work would block it. The answers arrive 20 ms in.
    const blocked = new Promise<void>((resolve) => {
      backend.on('message', (m) => {
        if (m !== 'request' || ++requests !== 36) return; // the 6 warm-up calls and the 30
        const t = performance.now();
        while (performance.now() - t < 800) {}
        resolve();
      });
    });
    const [ports] = (await once(backend, 'message')) as [number[]];
    for (const [i, port] of ports.entries())
      await registry.register({ id: `b${i}`, service: 'back', address: '127.0.0.1', port, tags: [], metadata: {}, health: 'passing' });
    await mesh.rules.apply(JSON.stringify({ service: 'back', breaker: { timeoutMs: 500 } }), { author: 't' });
    await mesh.rulesInForce('back');
    for (let i = 0; i < 6; i++) await (await mesh.fetch('http://back/warm')).text();
    // 30 calls in flight.
    const outcomes = Array.from({ length: 30 }, () =>
      mesh.fetch('http://back/x').then(
        async (r) => {
          await r.text();
          return r.status;
        },
        (e: { code?: string }) => e.code,
      ),
    );
    await blocked;
    const got = await Promise.all(outcomes);
    assert.deepEqual(
      got.filter((s) => s !== 200),
      [],
      'every answer delivered',
    );
    for (const s of mesh.breakers.snapshot().filter((b) => b.breaker.level === 'instance'))
      assert.deepEqual([s.breaker.instance, s.state, s.consecutiveFailures], [s.breaker.instance, 'closed', 0]);
  } finally {
    await mesh.close();
    await backend.terminate();
  }
});
