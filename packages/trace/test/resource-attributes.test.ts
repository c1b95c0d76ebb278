import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { MeshletError } from '@meshlet/core';
import { checkTracingOptions, createTracing, decodeTraceProto } from '../src/index.js';

/** The option check's refusal of `resourceAttributes`; fails unless it refuses. */
function refusal(resourceAttributes: unknown): string {
  try {
    checkTracingOptions({ resourceAttributes }, 'tracing');
  } catch (err) {
    assert.ok(err instanceof MeshletError && err.code === 'MESHLET_BAD_OPTION', String(err));
    return err.message;
  }
  assert.fail('not refused');
}

describe('tracing.resourceAttributes', () => {
  it("are on every span's resource beside the service's own, in both trace-log formats", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'meshlet-resource-'));
    try {
      for (const format of ['json', 'proto'] as const) {
        const path = join(dir, `spans.${format}`);
        const tracing = createTracing({
          service: 'orders',
          version: '2.0.0',
          log: { path, format },
          resourceAttributes: { 'deployment.environment': 'prod', 'k8s.replica': 3, 'meshlet.canary': true },
        });
        tracing.startClientSpan(undefined, { method: 'GET', url: 'http://10.0.0.1/ledger/1', service: 'ledger' }).end(200);
        await tracing.shutdown();
        const bytes = await readFile(path);
        type Request = { resourceSpans: { resource?: { attributes?: { key: string; value: Record<string, unknown> }[] } }[] };
        const request = (format === 'json' ? JSON.parse(bytes.toString('utf8')) : decodeTraceProto(bytes.subarray(4))) as Request;
        const attrs = Object.fromEntries(
          (request.resourceSpans[0]?.resource?.attributes ?? []).map((a) => [a.key, Object.values(a.value)[0]]),
        );
        assert.deepEqual(
          attrs,
          {
            'deployment.environment': 'prod',
            // An int as OTLP/JSON has it, and as the protobuf reader gives it back: a decimal string.
            'k8s.replica': '3',
            'meshlet.canary': true,
            'service.name': 'orders',
            'service.version': '2.0.0',
          },
          format,
        );
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses the service’s own keys, bad keys and values, and more than the bounds, naming the key', () => {
    const cases: [unknown, RegExp][] = [
      [{ 'service.name': 'other' }, /^tracing\.resourceAttributes\.service\.name: is the Tracing's own/],
      [{ 'service.instance.id': 'x' }, /^tracing\.resourceAttributes\.service\.instance\.id: is the Tracing's own/],
      [{ '': 'x' }, /^tracing\.resourceAttributes: "" is not a key/],
      [{ 'a\nb': 'x' }, /^tracing\.resourceAttributes: "a\\nb" is not a key/],
      [{ ['k'.repeat(256)]: 'x' }, /^tracing\.resourceAttributes: "k+.*" is not a key: 1 to 255 characters, no control character$/],
      [{ team: { name: 'x' } }, /^tracing\.resourceAttributes\.team: must be a string of at most 4096 characters/],
      [{ team: 'x'.repeat(4097) }, /^tracing\.resourceAttributes\.team: must be a string/],
      [{ n: Number.NaN }, /^tracing\.resourceAttributes\.n: must be/],
      [
        Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 'v'])),
        /^tracing\.resourceAttributes: 65 attributes; at most 64$/,
      ],
      [
        Object.fromEntries(Array.from({ length: 5 }, (_, i) => [`k${i}`, 'v'.repeat(4000)])),
        /^tracing\.resourceAttributes: \d+ characters; at most 16384 in all$/,
      ],
      ['prod', /^tracing\.resourceAttributes: "prod" /],
    ];
    for (const [attrs, want] of cases) assert.match(refusal(attrs), want);
  });
});
