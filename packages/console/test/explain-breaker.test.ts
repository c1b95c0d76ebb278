// The console's explain view (GET /api/explain) on a call a real API breaker refused: the
// hop names the api breaker from the span's io.meshlet.circuit.* attributes, with the rule's
// thresholds and the version of the rules in force, from the console's own store.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { FileKvStore, InMemoryRegistry, MemoryLogger, RuleRepository } from '@meshlet/core';
import { listen, testInstance } from '@meshlet/core/testing';
import { CircuitOpenError, createMesh } from 'meshlet';
import { RULE_KINDS } from 'meshlet/rule-kinds';
import { startConsole } from '../src/index.js';

const TOKEN = 'console-explain-token-0123456789';

interface OtlpSpan {
  readonly traceId: string;
  readonly attributes?: readonly { readonly key: string; readonly value: { readonly stringValue?: string } }[];
}

/** The trace id of the logged span whose error.type is `errorType` (the log is OTLP JSON, one export request a line). */
async function traceWith(log: string, errorType: string): Promise<string | undefined> {
  for (const line of (await readFile(log, 'utf8')).split('\n')) {
    if (line.trim() === '') continue;
    const req = JSON.parse(line) as { resourceSpans: { scopeSpans: { spans: OtlpSpan[] }[] }[] };
    for (const span of req.resourceSpans.flatMap((r) => r.scopeSpans.flatMap((s) => s.spans)))
      if (span.attributes?.some((a) => a.key === 'error.type' && a.value.stringValue === errorType)) return span.traceId;
  }
  return undefined;
}

describe('console explain: a call a real API breaker refused', () => {
  it('tells the api breaker that refused it, its thresholds and the rules version', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'meshlet-console-explain-'));
    const upstream = await listen((_req, res) => {
      res.statusCode = 503;
      res.end('down');
    });
    const kv = new FileKvStore(join(dir, 'rules'));
    const log = join(dir, 'shop.jsonl');
    const running = await startConsole({
      kv,
      storeDescription: `directory ${dir}`,
      kinds: RULE_KINDS,
      token: TOKEN,
      port: 0,
      logger: new MemoryLogger(),
      traceLogs: [log],
    });
    try {
      const registry = new InMemoryRegistry();
      await registry.register(testInstance('orders', 'orders-1', upstream.port));
      const shop = createMesh({ service: 'shop', registry, rules: kv, tracing: { log: { path: log }, batch: { delayMs: 10 } } });
      await shop.rules.apply(
        JSON.stringify({
          service: 'orders',
          breaker: {
            rules: [{ level: 'api', apis: [{ method: 'GET', path: '/orders/{id}' }], consecutiveFailures: 1, sleepWindowMs: 60_000 }],
          },
        }),
        { author: 'alice', reason: 'protect orders' },
      );
      await shop.rulesInForce('orders');
      const revision = (await new RuleRepository({ kv, kinds: [] }).current('orders')).revision;
      assert.equal((await shop.fetch('http://orders/orders/42')).status, 503);
      await assert.rejects(shop.fetch('http://orders/orders/43'), CircuitOpenError);
      await shop.close(); // flushes the trace log
      const trace = await traceWith(log, 'circuit_open');
      assert.ok(trace, 'the refused call has a span');

      const origin = running.url.replace(/\/$/, '');
      const login = await fetch(`${origin}/api/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', origin },
        body: JSON.stringify({ token: TOKEN, author: 'bob' }),
      });
      assert.equal(login.status, 200);
      const cookie = (login.headers.get('set-cookie') ?? '').split(';')[0] as string;
      const res = await fetch(`${origin}/api/explain?trace=${trace}`, { headers: { cookie } });
      assert.equal(res.status, 200);
      const { hops } = (await res.json()) as { hops: { side: string; decisions: string[] }[] };
      assert.deepEqual(
        hops.map((h) => [h.side, h.decisions.filter((d) => d.startsWith('breaker:'))]),
        [
          [
            'client',
            [
              `breaker: refused by the api breaker of orders GET /orders/{id} (open) — failure rate ≥ 50% over 10 s (at least 10 calls) or 1 failures in a row; open 60 s, then 3 probes (rules version 1, revision ${revision}) — the call was not sent`,
            ],
          ],
        ],
      );
    } finally {
      await running.close();
      await upstream.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
