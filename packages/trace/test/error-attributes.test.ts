// A Meshlet error's `spanAttributes` (the refusing breaker, from the call executor) on the
// CLIENT span that records it, bounded; any other error's fields are never read.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { ManualClock, MeshletError } from '@meshlet/core';
import { ROOT_CONTEXT } from '@opentelemetry/api';
import { errorAttributesOf } from '../src/attributes.js';
import { createTracing, type Tracing } from '../src/index.js';
import { memoryExporter } from './servers.js';

class Refused extends MeshletError {
  constructor(readonly spanAttributes: Record<string, unknown>) {
    super('MESHLET_CIRCUIT_OPEN', 'refused');
  }
}

const open: Tracing[] = [];
after(async () => {
  for (const t of open) await t.shutdown();
});

describe('errorAttributesOf', () => {
  it("copies a Meshlet error's io.meshlet.* attributes onto the refused call's span", async () => {
    const exporter = memoryExporter();
    const tracing = createTracing({ service: 'shop', exporters: [exporter], clock: new ManualClock(1_000) });
    open.push(tracing);
    const error = new Refused({
      'io.meshlet.circuit.level': 'api',
      'io.meshlet.circuit.api': 'GET /orders/{id}',
      'io.meshlet.rules.revision': 7,
    });
    tracing.startClientSpan(ROOT_CONTEXT, { method: 'GET', url: 'http://orders/orders/42', service: 'orders' }).end({ error });
    await tracing.forceFlush();
    const [span] = exporter.getFinishedSpans();
    assert.deepEqual(
      [span?.attributes['error.type'], span?.attributes['io.meshlet.circuit.level'], span?.attributes['io.meshlet.circuit.api']],
      ['circuit_open', 'api', 'GET /orders/{id}'],
    );
    assert.equal(span?.attributes['io.meshlet.rules.revision'], 7);
  });

  it('reads only io.meshlet.* strings and finite numbers, at most 8, strings cut to 512 characters', () => {
    const many = Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`io.meshlet.x${i}`, i]));
    assert.equal(Object.keys(errorAttributesOf(new Refused(many)) ?? {}).length, 8);
    assert.deepEqual(
      errorAttributesOf(
        new Refused({
          'http.route': '/x',
          'io.meshlet.long': 'y'.repeat(2_000),
          'io.meshlet.nan': Number.NaN,
          'io.meshlet.obj': { a: 1 },
        }),
      ),
      { 'io.meshlet.long': 'y'.repeat(512) },
    );
    assert.equal(errorAttributesOf(new Refused({ 'http.route': '/x' })), undefined);
  });

  it("never reads another library's error, or a Meshlet error without them", () => {
    const foreign = Object.assign(new Error('x'), { code: 'ECONNREFUSED', spanAttributes: { 'io.meshlet.circuit.level': 'api' } });
    assert.equal(errorAttributesOf(foreign), undefined);
    assert.equal(errorAttributesOf(new MeshletError('MESHLET_NO_INSTANCE', 'none')), undefined);
    assert.equal(errorAttributesOf('MESHLET_CIRCUIT_OPEN'), undefined);
    assert.equal(errorAttributesOf(null), undefined);
  });
});
