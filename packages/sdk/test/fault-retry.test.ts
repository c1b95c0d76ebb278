// A fault-injected abort is the caller's answer, not an upstream's failure: Envoy's fault
// filter runs before the router, so its retry policy never sees an injected abort. Under a
// retry rule, a fault rule that aborts 50% of calls must abort about 50% of the caller's
// calls, and an aborted call must make no second attempt. Real servers on 127.0.0.1, the
// in-memory registry and rule store, mesh.fetch.
//
// TODO: today the executor treats the injected 503 as a failed attempt and retries it (the
// fault is drawn again), so the caller sees fewer aborts than configured (about 40% for
// 50%). The fix lands with the call path rework (branch `callpath`): marked todo until then.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { InMemoryKvStore, InMemoryRegistry, MemoryLogger } from '@meshlet/core';
import { listen, type TestServer } from '@meshlet/core/testing';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace';
import { createMesh, type Mesh } from '../src/index.js';

const TODO = { todo: 'fault aborts are retried; fix lands with the call path rework' };

describe('an injected abort under a retry rule', () => {
  const registry = new InMemoryRegistry();
  const rules = new InMemoryKvStore();
  const exporter = new InMemorySpanExporter();
  const servers: TestServer[] = [];
  let hits = 0;
  let caller: Mesh;

  before(async () => {
    for (const n of [0, 1, 2]) {
      const server = await listen((_req, res) => {
        hits++;
        res.end('ok');
      });
      servers.push(server);
      await registry.register({
        id: `stock-${n}`,
        service: 'stock',
        address: '127.0.0.1',
        port: server.port,
        tags: [],
        metadata: {},
        health: 'passing',
      });
    }
    caller = createMesh({
      service: 'shop',
      registry,
      rules,
      logger: new MemoryLogger(),
      tracing: { exporters: [exporter], metrics: false },
    });
  });
  after(async () => {
    await caller.close();
    for (const s of servers) await s.close();
  });

  /** Applies a fault rule aborting `percentage`% of calls with 503, under a retry rule of 2 retries. */
  const applyFault = async (percentage: number) => {
    await caller.rules.apply(
      JSON.stringify({
        service: 'stock',
        breaker: { retry: { maxRetries: 2, backoff: { baseMs: 1, maxMs: 1 } } },
        fault: { rules: [{ name: 'half-503', percentage, abort: 503 }] },
      }),
      { author: 'test' },
    );
  };

  /** `calls` GETs: how many were aborted by the fault, how many answered 200, and the client spans. */
  const callMany = async (calls: number) => {
    hits = 0;
    exporter.reset();
    let aborted = 0;
    let ok = 0;
    for (let n = 0; n < calls; n++) {
      const res = await caller.fetch('http://stock/items');
      await res.text();
      if (res.status === 503 && res.headers.has('x-meshlet-fault')) aborted++;
      else if (res.status === 200) ok++;
    }
    await caller.tracing?.forceFlush();
    const spans = exporter.getFinishedSpans().filter((s) => s.attributes['service.peer.name'] === 'stock');
    return { aborted, ok, spans };
  };

  it('an abort of every call: the caller gets the 503 after one attempt, nothing is sent', TODO, async () => {
    await applyFault(100);
    const got = await callMany(5);
    assert.equal(got.aborted, 5);
    assert.equal(hits, 0, 'nothing reached an instance');
    assert.equal(got.spans.length, 5, 'one attempt per call: an injected abort is not retried');
    for (const span of got.spans) assert.equal(span.attributes['http.request.resend_count'], undefined);
  });

  it('50% aborts give the caller about 50% aborts, not fewer', TODO, async () => {
    await applyFault(50);
    const calls = 1000;
    const got = await callMany(calls);
    assert.equal(got.aborted + got.ok, calls, 'every call is aborted or answered');
    assert.equal(hits, got.ok, 'a call answered 200 was sent once');
    assert.equal(got.spans.length, calls, 'one attempt per call: no retry follows an injected abort');
    // Binomial(1000, 0.5): below 440 (44%) is 3.8 standard deviations off, p < 1e-4. Retried
    // as today, the caller saw 377, 418 and 383 aborts in three rounds of 1000 (the retry
    // budget keeps it from 12.5%, 50% cubed).
    assert.ok(got.aborted >= 440, `aborts seen by the caller: ${got.aborted} of ${calls}, configured 50%`);
  });
});
