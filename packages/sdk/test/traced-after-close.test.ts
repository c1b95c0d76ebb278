// @Traced() records through the tracing serving the request, else the last one created and
// not shut down (trace's defaultTracing). Once every mesh is closed neither is left, or the
// one a request's context holds is shut down: the method runs all the same.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { InMemoryKvStore, InMemoryRegistry, MemoryLogger } from '@meshlet/core';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace';
import { createMesh, Traced } from '../src/index.js';

/** An exporter that tells what it was asked, and when: spans exported after its shutdown are the defect. */
class WatchedExporter implements SpanExporter {
  readonly exported: string[] = [];
  readonly afterShutdown: string[] = [];
  shut = false;
  export(spans: ReadableSpan[], done: Parameters<SpanExporter['export']>[1]): void {
    for (const s of spans) (this.shut ? this.afterShutdown : this.exported).push(s.name);
    // ExportResultCode: 0 SUCCESS, 1 FAILED.
    done({ code: this.shut ? 1 : 0 });
  }
  async shutdown(): Promise<void> {
    this.shut = true;
  }
  async forceFlush(): Promise<void> {}
}

class Orders {
  @Traced()
  async place(id: string): Promise<string> {
    return `placed ${id}`;
  }
}

it('@Traced() after every mesh closed runs the method: no throw, no span to the shut-down exporter, nothing logged', async () => {
  const exporter = new WatchedExporter();
  const logger = new MemoryLogger();
  const mesh = createMesh({
    service: 'orders',
    registry: new InMemoryRegistry(),
    rules: new InMemoryKvStore(),
    logger,
    tracing: { exporters: [exporter], metrics: false },
  });
  const tracing = mesh.tracing;
  assert.ok(tracing);
  const orders = new Orders();
  assert.equal(await orders.place('before'), 'placed before');
  // A call waiting in a request's context (TRACING_KEY: this mesh's tracing) until after the close.
  let release: () => void = () => {};
  const gate = new Promise<void>((resolve) => {
    release = resolve;
  });
  const inRequest = tracing.run(tracing.active(), () => gate.then(() => orders.place('in a request')));
  await mesh.close();
  assert.equal(exporter.shut, true);
  const logged = logger.entries.length;
  // Outside any request: no tracing is left to record through.
  assert.equal(await orders.place('after'), 'placed after');
  // In a request of the closed mesh: its tracing is shut down, and takes no span.
  release();
  assert.equal(await inRequest, 'placed in a request');
  assert.deepEqual(exporter.exported, ['Orders.place']);
  assert.deepEqual(exporter.afterShutdown, []);
  assert.equal(tracing.stats.queued, 0, 'no span waits to be exported');
  assert.deepEqual(logger.entries.slice(logged), []);
});
