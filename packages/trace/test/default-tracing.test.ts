// `@Traced()` outside a request records through the Tracing most recently created and not
// shut down: when that one shuts down, the one before it (still live) takes over. (It went
// to none, so with two meshes open, closing the newer one left @Traced() untraced.)
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace';
import { createTracing, defaultTracing } from '../src/index.js';

it('the default Tracing is the newest live one; shutting it down hands back to the older one, then to none', async () => {
  const older = createTracing({ service: 'older', exporters: [new InMemorySpanExporter()] });
  const newer = createTracing({ service: 'newer', exporters: [new InMemorySpanExporter()] });
  assert.equal(defaultTracing(), newer);
  await newer.shutdown();
  assert.equal(defaultTracing(), older);
  await older.shutdown();
  assert.equal(defaultTracing(), undefined);
});
