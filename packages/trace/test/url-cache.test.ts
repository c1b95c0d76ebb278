import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { type Instance, ManualClock } from '@meshlet/core';
import { testAttempt, testCall } from '@meshlet/core/testing';
import { URL_ATTRIBUTES_KEPT, urlAttributesKept } from '../src/client-span-interceptor.js';
import { clientSpanObserver, createTracing } from '../src/index.js';
import { memoryExporter } from './servers.js';

describe("sampled attempts' URL attribute cache", () => {
  const tracing = createTracing({ service: 'orders', sampleRatio: 1, exporters: [memoryExporter()], clock: new ManualClock(1_000) });
  after(() => tracing.shutdown());

  it('holds at most URL_ATTRIBUTES_KEPT entries over many origins and paths', () => {
    const observer = clientSpanObserver(tracing);
    // 200 instances × 200 paths: 40,000 URLs and as many kinds of attempt. The per-origin
    // (256 paths) and origin (1024) bounds alone would keep all of them.
    for (let o = 0; o < 200; o++) {
      const instance: Instance = {
        id: `inv-${o}`,
        service: 'inventory',
        address: `10.0.${o >> 8}.${o & 255}`,
        port: 8080,
        tags: [],
        metadata: {},
        health: 'passing',
      };
      for (let p = 0; p < 200; p++) {
        const call = testCall({ service: 'inventory', path: `/items/${p}` });
        const attempt = testAttempt(call, { id: instance.id, instance, rule: undefined, lane: undefined });
        observer.started(attempt);
        observer.settled(attempt, { status: 200 }, undefined);
      }
    }
    const kept = urlAttributesKept();
    assert.ok(kept > 0, 'the cache is used');
    assert.ok(kept <= URL_ATTRIBUTES_KEPT, `${kept} entries kept`);
  });
});
