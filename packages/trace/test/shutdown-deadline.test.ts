import assert from 'node:assert/strict';
import { createServer, type Socket } from 'node:net';
import { describe, it } from 'node:test';
import { setImmediate as tick } from 'node:timers/promises';
import { type LogFields, ManualClock } from '@meshlet/core';
import { ROOT_CONTEXT } from '@opentelemetry/api';
import { type ExportResult, ExportResultCode } from '@opentelemetry/core';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace';
import { BatchQueue, createTracing } from '../src/index.js';

/** A sampled span as the queue sees it (it reads the flags only, for an exporter of spans). */
const span = { spanContext: () => ({ traceId: '1'.repeat(32), spanId: '1'.repeat(16), traceFlags: 1 }) } as unknown as ReadableSpan;

/** An exporter whose exports settle as `answer` says: never, or failed at once. */
const exporterThat = (answer: 'never' | 'fails', calls: number[]): SpanExporter => ({
  export(spans, done: (r: ExportResult) => void) {
    calls.push(spans.length);
    if (answer === 'fails') done({ code: ExportResultCode.FAILED, error: new Error('connection refused') });
  },
  shutdown: () => (answer === 'never' ? new Promise<void>(() => {}) : Promise.resolve()),
});

const logs: LogFields[] = [];
const logger = { debug() {}, info() {}, warn: (_m: string, f?: LogFields) => logs.push(f ?? {}), error() {} };

describe('shutdown within one deadline', () => {
  it('returns once shutdownTimeoutMs has passed on the clock, with an exporter that never settles: the 2,048 spans left dropped, one log line', async () => {
    logs.length = 0;
    const clock = new ManualClock();
    const calls: number[] = [];
    const q = new BatchQueue(exporterThat('never', calls), { maxBatchSize: 512, shutdownTimeoutMs: 1000, clock, logger });
    for (let i = 0; i < 2048; i++) q.onEnd(span);
    let done = false;
    let secondDone = false;
    const closing = q.shutdown().then(() => {
      done = true;
    });
    // A second caller (an app's hook beside the mesh's) waits for the same shutdown.
    const second = q.shutdown().then(() => {
      secondDone = true;
    });
    clock.advance(999);
    await tick();
    assert.equal(done, false);
    assert.equal(secondDone, false, 'a second shutdown() does not return before the first');
    clock.advance(1);
    await tick();
    await tick();
    assert.equal(done, true, 'shutdown returned at its deadline');
    await closing;
    await second;
    assert.deepEqual(calls, [512], 'the batches behind the one in flight were not tried');
    assert.deepEqual(q.stats, { exported: 0, dropped: 2048, failed: 0, queued: 0 });
    assert.deepEqual(
      logs.map((f) => [f.code, f.spans]),
      [['MESHLET_TRACE_SHUTDOWN_DROPPED', 2048]],
    );
    q.onEnd(span);
    assert.equal(q.stats.dropped, 2049, 'a span ended after shutdown is dropped');
  });

  it('drops the rest once a batch fails during shutdown, instead of trying each batch in turn', async () => {
    logs.length = 0;
    const calls: number[] = [];
    const q = new BatchQueue(exporterThat('fails', calls), { maxBatchSize: 512, delayMs: 60_000, clock: new ManualClock(), logger });
    for (let i = 0; i < 2000; i++) q.onEnd(span);
    await q.shutdown();
    assert.deepEqual(calls, [512]);
    assert.deepEqual(q.stats, { exported: 0, dropped: 1488, failed: 512, queued: 0 });
    assert.deepEqual(
      logs.map((f) => [f.code, f.spans]),
      [
        ['MESHLET_TRACE_EXPORT_FAILED', 512],
        ['MESHLET_TRACE_SHUTDOWN_DROPPED', 1488],
      ],
    );
  });

  it("bounds tracing.shutdown() by the OTLP exporter's timeoutMs in all, with a collector that takes connections and never answers", async () => {
    const sockets: Socket[] = [];
    const server = createServer((s) => {
      sockets.push(s);
      s.on('data', () => {});
      s.on('error', () => {});
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    const clock = new ManualClock();
    const tracing = createTracing({
      service: 'orders',
      clock,
      logger,
      otlp: { url: `http://127.0.0.1:${port}/v1/traces`, timeoutMs: 1000 },
      batch: { maxBatchSize: 512, delayMs: 60_000 },
    });
    try {
      for (let i = 0; i < 2048; i++) tracing.startClientSpan(ROOT_CONTEXT, { method: 'GET', url: `http://inventory/items/${i}` }).end(200);
      let done = false;
      const closing = tracing.shutdown().then(() => {
        done = true;
      });
      // Wait for the first batch to reach the collector, then let one timeoutMs pass.
      while (sockets.length === 0) await tick();
      clock.advance(1000);
      for (let i = 0; i < 500 && !done; i++) await tick();
      assert.equal(done, true, 'shutdown returned once timeoutMs had passed');
      await closing;
      const s = tracing.stats;
      assert.equal(s.exported, 0);
      assert.equal(s.queued, 0);
      assert.equal(s.dropped + s.failed, 2048);
    } finally {
      for (const s of sockets) s.destroy();
      server.close();
    }
  });
});
