import { after } from 'node:test';
import { ManualClock } from '@meshlet/core';
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, TraceFlags, trace } from '@opentelemetry/api';
import { resourceFromAttributes } from '@opentelemetry/resources';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';
import { type RecordDeps, WallAnchors } from '../src/client-span-record.js';
import { createTracing, encodeTraceLine, type Tracing } from '../src/index.js';
import { randomRecord, rng } from './random-spans.js';
import { memoryExporter } from './servers.js';

// Spans the encoders' tests and the collector's test share: a Tracing's own spans of every
// kind, random span records, and what their OTLP/JSON parses to.

/**
 * Protobuf strings are UTF-8: a lone surrogate (which OTLP/JSON keeps, escaped) is written
 * as U+FFFD. The parsed JSON with its strings as UTF-8 would carry them: what the protobuf
 * must decode to.
 */
export function asUtf8(v: unknown): unknown {
  if (typeof v === 'string') return Buffer.from(v, 'utf8').toString('utf8');
  if (Array.isArray(v)) return v.map(asUtf8);
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [asUtf8(k), asUtf8(x)]));
  return v;
}

/** The request a batch's JSON line parses to, strings as UTF-8. */
export const fromJson = (spans: readonly ReadableSpan[]): unknown => asUtf8(JSON.parse(encodeTraceLine(spans)));

const open: Tracing[] = [];
after(async () => {
  for (const t of open) await t.shutdown();
});

/** Spans of every kind a Tracing makes: server, client records, SDK spans with events, links, statuses, every attribute type. */
export async function tracedSpans(service: string): Promise<ReadableSpan[]> {
  const exporter = memoryExporter();
  const tracing = createTracing({ service, version: '1.2.0', exporters: [exporter], clock: new ManualClock(1_000) });
  open.push(tracing);
  const server = tracing.startServerSpan(
    { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', tracestate: 'vendor=a,other=x' },
    'GET',
    '/orders/:id',
    { target: '/orders/7?q=x' },
  );
  await server.run(async () => {
    const ok = tracing.startClientSpan(undefined, {
      method: 'POST',
      url: 'http://10.0.0.1:8080/a/b?x=1',
      service: 'inventory',
      route: 'rule é 😀',
      lane: 'gray',
      instance: 'inv-1',
      attempt: 1,
      breaker: 'closed',
      rulesRevision: 42,
    });
    ok.setAttribute('custom.double', 1.5);
    ok.setAttribute('custom.negative', -7);
    ok.setAttribute('custom.big', 2 ** 60);
    ok.setAttribute('custom.past-int64', 1e21);
    ok.setAttribute('custom.bool', false);
    ok.setAttribute('custom.array', ['a', 'b\n']);
    ok.setAttribute('custom.numbers', [1, 2.25, -3]);
    ok.end(503);
    tracing.startClientSpan(undefined, { method: 'BREW', url: 'http://10.0.0.2/' }).end({ error: new Error('boom\n') });
    await tracing.inSpan('work', async () => {
      trace.getActiveSpan()?.addEvent('evt', { n: 3, s: 'x' });
    });
  });
  server.end(200);
  const internal = tracing.tracer.startSpan(
    'with-event',
    {
      kind: SpanKind.INTERNAL,
      links: [
        {
          context: {
            traceId: '0af7651916cd43dd8448eb211c80319c',
            spanId: 'b7ad6b7169203331',
            traceFlags: TraceFlags.SAMPLED,
            isRemote: true,
          },
          attributes: { why: 'batch' },
        },
      ],
    },
    ROOT_CONTEXT,
  );
  internal.addEvent('first');
  internal.addEvent('second', { at: 'end', list: [true, false] });
  internal.setStatus({ code: SpanStatusCode.ERROR, message: 'bad \u2028 thing' });
  internal.end();
  await tracing.forceFlush();
  return [...exporter.getFinishedSpans()];
}

/** Random span records of one resource. */
export function randomSpans(seed: number): ReadableSpan[] {
  const r = rng(seed);
  const deps: RecordDeps = {
    resource: resourceFromAttributes({ 'service.name': 'r' }),
    scope: { name: 'x', version: '1' },
    ended: () => {},
    wall: new WallAnchors(),
  };
  return Array.from({ length: 20 }, () => randomRecord(r, deps, true));
}
