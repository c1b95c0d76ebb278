// A per-attempt observer that throws (here the CLIENT span, through a Tracing whose spans
// fail) does not fail the governed call: the mesh's chain reports the throw, the mesh logs
// it under MESHLET_ATTEMPT_OBSERVER_FAILED — once per interval, whatever the number of
// calls — and the call is answered as without the observer. Table-driven, no sockets: an
// in-memory registry and a stub client.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InMemoryRegistry, ManualClock, MemoryLogger } from '@meshlet/core';
import { type ClientSpan, createTracing, type Tracing } from '@meshlet/trace';
import { createMesh } from '../src/index.js';

/** A working Tracing's parts (its string-keyed methods) with `startClientSpan` replaced. */
function tracingWith(startClientSpan: Tracing['startClientSpan']): Tracing {
  const real = createTracing({ service: 'caller', metrics: false });
  return { ...(Object.fromEntries(Object.entries(real)) as unknown as Tracing), startClientSpan };
}

const span = (over: Partial<ClientSpan>): ClientSpan => ({
  context: undefined as never,
  recording: true,
  inject: () => {},
  setAttribute: () => {},
  end: () => {},
  ...over,
});

describe('an attempt observer that throws does not fail the call', () => {
  const rows: { name: string; tracing: Tracing }[] = [
    {
      name: 'the span cannot start (startClientSpan throws)',
      tracing: tracingWith(() => {
        throw new Error('span start broke');
      }),
    },
    {
      name: 'the span cannot write its trace context (inject throws)',
      tracing: tracingWith(() =>
        span({
          inject: () => {
            throw new Error('inject broke');
          },
        }),
      ),
    },
    {
      name: 'the span cannot end (end throws)',
      tracing: tracingWith(() =>
        span({
          end: () => {
            throw new Error('span end broke');
          },
        }),
      ),
    },
  ];
  for (const row of rows) {
    it(`${row.name}: answered, logged once per interval`, async () => {
      const registry = new InMemoryRegistry();
      await registry.register({
        id: 'o1',
        service: 'orders',
        address: '10.0.0.1',
        port: 8080,
        tags: [],
        metadata: {},
        health: 'passing',
      });
      const logger = new MemoryLogger();
      let sent = 0;
      const mesh = createMesh({
        service: 'caller',
        registry,
        clock: new ManualClock(1_000_000),
        logger,
        tracing: row.tracing,
        fetch: async () => {
          sent++;
          return new Response('ok');
        },
      });
      try {
        for (let i = 0; i < 3; i++) assert.equal((await mesh.fetch('http://orders/x')).status, 200);
        assert.equal(sent, 3);
        const lines = logger.entries.filter((e) => e.fields?.code === 'MESHLET_ATTEMPT_OBSERVER_FAILED');
        assert.equal(lines.length, 1, 'once per interval, not once per call');
        assert.equal(lines[0]?.level, 'warn');
        assert.match(String(lines[0]?.fields?.error), /broke/);
      } finally {
        await mesh.close();
      }
    });
  }
});
