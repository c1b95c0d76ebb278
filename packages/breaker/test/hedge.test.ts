// Hedged requests through the CallExecutor on a ManualClock: each attempt is a promise the
// test settles, so every instant (the delay, who answers first) is explicit.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { ManualClock, RuleValidationError } from '@meshlet/core';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { CallExecutor, HEDGE_MIN_SAMPLES, HedgeLostError, parseBreakerRules } from '../src/index.js';

type Inst = { id: string };
const instances: Inst[] = [{ id: 'a' }, { id: 'b' }, { id: 'c' }];

interface Sent {
  readonly id: string;
  readonly signal: AbortSignal | undefined;
  answer(status: number): void;
  fail(error: Error): void;
  /** True once the body of the Response it answered was cancelled (a discarded loser). */
  discarded: boolean;
}

/** Lets microtasks run (promise chains inside the executor) without moving the clock. */
const settle = () => new Promise((r) => setImmediate(r));

function setup(section: unknown) {
  const clock = new ManualClock();
  const executor = new CallExecutor({ clock, random: () => 0.5 });
  executor.setRules('orders', parseBreakerRules(section, 'breaker'));
  executor.setInstances(
    'orders',
    instances.map((i) => i.id),
  );
  const sent: Sent[] = [];
  let next = 0;
  const pick = (tried: ReadonlySet<string>) => {
    for (let i = 0; i < instances.length; i++) {
      const inst = instances[(next + i) % instances.length] as Inst;
      if (tried.has(inst.id)) continue;
      next = (next + i + 1) % instances.length;
      return inst;
    }
    return undefined;
  };
  const send = (inst: Inst, signal: AbortSignal | undefined) =>
    new Promise<Response>((resolve, reject) => {
      const s: Sent = {
        id: inst.id,
        signal,
        discarded: false,
        answer: (status) => {
          const body = new ReadableStream({
            cancel: () => {
              s.discarded = true;
            },
          });
          resolve(new Response(body, { status }));
        },
        fail: reject,
      };
      signal?.addEventListener('abort', () => reject(signal.reason), { once: true });
      sent.push(s);
    });
  const call = (method = 'GET') => executor.call<Inst>({ service: 'orders', method, path: '/x', pick, send });
  return { clock, executor, sent, call };
}

describe('hedged requests', () => {
  it('sends a second attempt to another instance after the delay; the first answer wins and the loser is aborted', async () => {
    const { clock, executor, sent, call } = setup({ hedge: { delayMs: 50 } });
    const res = call();
    await settle();
    assert.deepEqual(
      sent.map((s) => s.id),
      ['a'],
    );
    clock.advance(49);
    await settle();
    assert.equal(sent.length, 1, 'no hedge before the delay');
    clock.advance(1);
    await settle();
    assert.deepEqual(
      sent.map((s) => s.id),
      ['a', 'b'],
      'at 50 ms the hedge goes to another instance',
    );
    sent[1]?.answer(200);
    assert.equal((await res).status, 200);
    assert.equal(sent[0]?.signal?.aborted, true, 'the first attempt is aborted');
    assert.ok(sent[0]?.signal?.reason instanceof HedgeLostError);
    assert.deepEqual(executor.hedgeStats('orders'), { eligible: 1, hedges: 1, wins: 1, denied: 0, delayMs: 50 });
  });

  it('an answer before the delay sends no hedge', async () => {
    const { clock, executor, sent, call } = setup({ hedge: { delayMs: 50 } });
    const res = call();
    await settle();
    sent[0]?.answer(200);
    assert.equal((await res).status, 200);
    clock.advance(100);
    await settle();
    assert.equal(sent.length, 1);
    assert.equal(executor.hedgeStats('orders')?.hedges, 0);
  });

  it('the first attempt can still win after the hedge went out; the hedge is aborted', async () => {
    const { clock, sent, call } = setup({ hedge: { delayMs: 10 } });
    const res = call();
    await settle();
    clock.advance(10);
    await settle();
    sent[0]?.answer(200);
    const r = await res;
    assert.equal(r.status, 200);
    assert.equal(sent[1]?.signal?.aborted, true);
  });

  it('a failure waits for the other attempt; when both fail, the later failure stands', async () => {
    const { clock, sent, call } = setup({ hedge: { delayMs: 10 } });
    const res = call();
    await settle();
    clock.advance(10);
    await settle();
    sent[0]?.answer(503);
    await settle();
    sent[1]?.answer(200);
    assert.equal((await res).status, 200, 'the hedge succeeded after the first failed');
    assert.equal(sent[0]?.discarded, true, "the failed first answer's body was freed");

    const both = call();
    await settle();
    clock.advance(10);
    await settle();
    sent[2]?.answer(502);
    await settle();
    sent[3]?.answer(503);
    assert.equal((await both).status, 503, 'no retry policy: the later failure is the answer');
  });

  it("the hedged instance's answer counts on its own breaker; the first instance is credited with nothing", async () => {
    const { clock, sent, call, executor } = setup({
      hedge: { delayMs: 10 },
      rules: [{ level: 'instance', consecutiveFailures: 2, sleepWindowMs: 60_000 }],
    });
    const calls = (id: string) => executor.snapshot().find((b) => b.breaker.instance === id)?.calls ?? 0;
    // The hedge (b) answers 503 while a (the first) is still out; then a answers 200.
    const res = call();
    await settle();
    clock.advance(10);
    await settle();
    sent[1]?.answer(503);
    await settle();
    sent[0]?.answer(200);
    assert.equal((await res).status, 200);
    assert.equal(calls('b'), 1, "the hedge's 503 is on b's breaker");
    assert.equal(calls('a'), 1, "a's own 200 is on a's");
    // Now the hedge wins: a is aborted and credited with nothing; b gets its success.
    const won = call();
    await settle();
    clock.advance(10);
    await settle();
    const [first, hedge] = sent.slice(2);
    assert.deepEqual([first?.id, hedge?.id], ['c', 'a'], 'round robin: c first, the hedge to a');
    hedge?.answer(200);
    assert.equal((await won).status, 200);
    assert.equal(first?.signal?.aborted, true);
    assert.equal(calls('c'), 0, "the aborted first attempt records nothing, not the hedge's 200");
    assert.equal(calls('a'), 2, "the hedge's 200 is on a's breaker");
  });

  it('only idempotent methods hedge', async () => {
    const { clock, sent, call, executor } = setup({ hedge: { delayMs: 10 } });
    const res = call('POST');
    await settle();
    clock.advance(100);
    await settle();
    assert.equal(sent.length, 1);
    sent[0]?.answer(200);
    assert.equal((await res).status, 200);
    assert.equal(executor.hedgeStats('orders')?.eligible, 0);
  });

  it('hedges are paid from the retry budget: once it is spent, no hedge', async () => {
    // 0% of calls and 1 a second over a 1 s window: one hedge, then none.
    const { clock, sent, call, executor } = setup({
      hedge: { delayMs: 10 },
      retry: { maxRetries: 0, budget: { percent: 0, minPerSecond: 1, windowMs: 1000 } },
    });
    for (let i = 0; i < 3; i++) {
      const res = call();
      await settle();
      clock.advance(10);
      await settle();
      (sent.at(-1) as Sent).answer(200);
      await res;
    }
    assert.equal(sent.length, 4, 'three calls, one hedge');
    assert.deepEqual(executor.hedgeStats('orders'), { eligible: 3, hedges: 1, wins: 1, denied: 2, delayMs: 10 });
  });

  it('a percentile policy hedges only once it has samples, after that percentile of first-attempt latencies', async () => {
    const { clock, sent, call, executor } = setup({ hedge: { percentile: 90, minDelayMs: 5 } });
    // 20 calls answered after 1..20 ms: p90 of them is 18 ms.
    for (let i = 1; i <= HEDGE_MIN_SAMPLES; i++) {
      const res = call();
      await settle();
      clock.advance(i);
      (sent.at(-1) as Sent).answer(200);
      await res;
    }
    assert.equal(sent.length, HEDGE_MIN_SAMPLES, 'no hedge while learning');
    assert.equal(executor.hedgeStats('orders')?.delayMs, 18);
    const res = call();
    await settle();
    clock.advance(17);
    await settle();
    assert.equal(sent.length, HEDGE_MIN_SAMPLES + 1);
    clock.advance(1);
    await settle();
    assert.equal(sent.length, HEDGE_MIN_SAMPLES + 2, 'hedged at 18 ms');
    (sent.at(-1) as Sent).answer(200);
    assert.equal((await res).status, 200);
  });

  it('parses the hedge field, naming the field of a bad value, and agrees with the schema', () => {
    const schema = new Ajv2020({ allErrors: true, strict: false }).compile(
      JSON.parse(readFileSync(new URL('../../schema/breaker.schema.json', import.meta.url), 'utf8')),
    );
    const cases: [unknown, string | undefined][] = [
      [{ delayMs: 50 }, undefined],
      [{ percentile: 95 }, undefined],
      [{ percentile: 99.9, minDelayMs: 2, maxDelayMs: 500 }, undefined],
      [{}, 'breaker.hedge.delayMs'],
      [{ delayMs: 5, percentile: 90 }, 'breaker.hedge.delayMs'],
      [{ delayMs: 0 }, 'breaker.hedge.delayMs'],
      [{ delayMs: 5, minDelayMs: 2 }, 'breaker.hedge.minDelayMs'],
      [{ percentile: 40 }, 'breaker.hedge.percentile'],
      [{ percentile: 100 }, 'breaker.hedge.percentile'],
      [{ percentile: 90, minDelayMs: 10, maxDelayMs: 5 }, 'breaker.hedge.maxDelayMs'],
      [{ percentile: 90, after: 1 }, 'breaker.hedge.after'],
    ];
    for (const [hedge, path] of cases) {
      const doc = { hedge };
      if (path === undefined) assert.doesNotThrow(() => parseBreakerRules(doc, 'breaker'), JSON.stringify(hedge));
      else
        assert.throws(
          () => parseBreakerRules(doc, 'breaker'),
          (e: unknown) => e instanceof RuleValidationError && e.path === path,
          `${JSON.stringify(hedge)} at ${path}`,
        );
      const schemaOk = schema(doc) as boolean;
      // The schema cannot compare minDelayMs with maxDelayMs; the parser does.
      if (JSON.stringify(hedge) !== JSON.stringify({ percentile: 90, minDelayMs: 10, maxDelayMs: 5 }))
        assert.equal(schemaOk, path === undefined, `schema on ${JSON.stringify(hedge)}`);
    }
  });
});
