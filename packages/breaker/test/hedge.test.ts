// Hedged requests through the CallExecutor on a ManualClock: each attempt is a promise the
// test settles, so every instant (the delay, who answers first) is explicit.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { ManualClock, RuleValidationError } from '@meshlet/core';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { type BodyVerdict, CallExecutor, type GovernedCall, HEDGE_MIN_SAMPLES, HedgeLostError, parseBreakerRules } from '../src/index.js';

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
  const call = (method = 'GET', more?: Partial<GovernedCall<Inst>>) =>
    executor.call<Inst>({ service: 'orders', method, path: '/x', pick, send, ...more });
  /** Counts on the instance breaker of `id`. */
  const breaker = (id: string) => {
    const b = executor.snapshot().find((s) => s.breaker.instance === id);
    return { calls: b?.calls ?? 0, failures: b?.failures ?? 0 };
  };
  return { clock, executor, sent, call, breaker };
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

  it("the hedged instance's answer counts on its own breaker; the aborted first instance is credited with nothing", async () => {
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

/** A refused connection, as fetch reports it: nothing was sent. */
const refused = () => Object.assign(new TypeError('fetch failed'), { cause: { code: 'ECONNREFUSED', syscall: 'connect' } });
/** The first instance not tried, in order: a retry after a hedge could go back to the hedge's instance. */
const firstUntried = (tried: ReadonlySet<string>) => instances.find((i) => !tried.has(i.id));

describe('hedged attempts: each instance is charged with its own outcome, once', () => {
  const instanceRule = { level: 'instance', consecutiveFailures: 5, sleepWindowMs: 60_000 };

  it("both fail, the hedge's connection refused last: routing hears of the hedge's instance, each breaker of its own failure", async () => {
    const { clock, sent, call, breaker } = setup({ hedge: { delayMs: 10 }, rules: [instanceRule] });
    const unreachable: string[] = [];
    const res = call('GET', { unreachable: (i) => unreachable.push(i.id) });
    await settle();
    clock.advance(10);
    await settle();
    sent[0]?.answer(503);
    await settle();
    sent[1]?.fail(refused());
    await settle();
    // Nothing was sent by the standing attempt: the call defaults retry on an instance neither used.
    assert.deepEqual(
      sent.map((s) => s.id),
      ['a', 'b', 'c'],
    );
    sent[2]?.answer(200);
    assert.equal((await res).status, 200);
    assert.deepEqual(unreachable, ['b'], 'the refused connection was to b, not to a');
    assert.deepEqual(breaker('a'), { calls: 1, failures: 1 }, "a's own 503");
    assert.deepEqual(breaker('b'), { calls: 1, failures: 1 }, "b's refused connection, once");
  });

  it('the first refused while the hedge is out, the hedge then fails: routing hears of the first instance', async () => {
    const { clock, sent, call, breaker } = setup({ hedge: { delayMs: 10 }, rules: [instanceRule] });
    const unreachable: string[] = [];
    const res = call('GET', { unreachable: (i) => unreachable.push(i.id) });
    await settle();
    clock.advance(10);
    await settle();
    sent[0]?.fail(refused());
    await settle();
    sent[1]?.answer(503);
    assert.equal((await res).status, 503, 'the later failure stands (no retry rule: a 503 is not retried)');
    assert.deepEqual(unreachable, ['a']);
    assert.deepEqual(breaker('a'), { calls: 1, failures: 1 });
    assert.deepEqual(breaker('b'), { calls: 1, failures: 1 });
  });

  it("the hedge wins after the first failed: the first instance's breaker gets its failure", async () => {
    const { clock, sent, call, breaker } = setup({ hedge: { delayMs: 10 }, rules: [instanceRule] });
    const res = call();
    await settle();
    clock.advance(10);
    await settle();
    sent[0]?.answer(503);
    await settle();
    sent[1]?.answer(200);
    assert.equal((await res).status, 200);
    assert.deepEqual(breaker('a'), { calls: 1, failures: 1 }, "a's 503 counts on a");
    assert.deepEqual(breaker('b'), { calls: 1, failures: 0 }, "b's 200 on b");
  });

  it('a retry after both failed goes to an instance neither attempt used', async () => {
    const { clock, sent, call } = setup({ hedge: { delayMs: 10 }, retry: { maxRetries: 1 } });
    const res = call('GET', { pick: firstUntried });
    await settle();
    clock.advance(10);
    await settle();
    sent[0]?.answer(503);
    await settle();
    sent[1]?.answer(502);
    await settle();
    // The retry waits out its backoff; it is hedged too, to whatever is left.
    clock.advance(1_000);
    await settle();
    assert.deepEqual(
      sent.map((s) => s.id),
      ['a', 'b', 'c'],
    );
    sent[2]?.answer(200);
    assert.equal((await res).status, 200);
  });

  it("an attempt's timeout counts on the instance that was out at the deadline, once; the other is released", async () => {
    const { clock, sent, call, breaker } = setup({ hedge: { delayMs: 10 }, timeoutMs: 100, rules: [instanceRule] });
    // Both out at the deadline: the first attempt's timeout, the hedge aborted.
    const both = call();
    await settle();
    clock.advance(10);
    await settle();
    clock.advance(90);
    await assert.rejects(both, { name: 'TimeoutError' });
    await settle();
    assert.deepEqual(breaker('a'), { calls: 1, failures: 1 });
    assert.deepEqual(breaker('b'), { calls: 0, failures: 0 });
    // The first failed before the deadline: its own failure on it, the timeout on the hedge's instance.
    const hedgeOut = call();
    await settle();
    clock.advance(10);
    await settle();
    const [first, hedge] = sent.slice(2);
    assert.deepEqual([first?.id, hedge?.id], ['c', 'a']);
    first?.answer(503);
    await settle();
    clock.advance(90);
    await assert.rejects(hedgeOut, { name: 'TimeoutError' });
    await settle();
    assert.deepEqual(breaker('c'), { calls: 1, failures: 1 }, "c's 503");
    assert.deepEqual(breaker('a'), { calls: 2, failures: 2 }, 'the timeout of the hedge to a');
  });
  it('a transport that ignores the abort: the timeout on the first instance, the late answers each on their own, none twice', async () => {
    const { clock, call, breaker } = setup({ hedge: { delayMs: 10 }, timeoutMs: 100, rules: [instanceRule] });
    const late: ((status: number) => void)[] = [];
    const send = () => new Promise<Response>((resolve) => late.push((status) => resolve(new Response(null, { status }))));
    const res = call('GET', { send });
    await settle();
    clock.advance(10);
    await settle();
    clock.advance(90);
    await assert.rejects(res, { name: 'TimeoutError' });
    assert.deepEqual(breaker('a'), { calls: 1, failures: 1 });
    late[1]?.(200);
    late[0]?.(200);
    await settle();
    assert.deepEqual(breaker('a'), { calls: 1, failures: 1 }, "a's late answer: the executor recorded a's timeout already");
    assert.deepEqual(breaker('b'), { calls: 1, failures: 0 }, "b's late answer counts on b");
  });
});

describe('hedged attempts: an answer the call says is worth another instance', () => {
  /** A peer's limiter refused (as gRPC's RESOURCE_EXHAUSTED with x-meshlet-limited, seen as a 429). */
  const limited = (r: Response) => r.status === 429;

  it('does not win: the other attempt is waited for, and its answer stands', async () => {
    const { clock, sent, call, executor } = setup({ hedge: { delayMs: 10 }, retry: { maxRetries: 1 } });
    const res = call('GET', { retryableAnswer: limited });
    await settle();
    clock.advance(10);
    await settle();
    sent[1]?.answer(429);
    await settle();
    assert.equal(sent[0]?.signal?.aborted, false, 'the first attempt is still out');
    sent[0]?.answer(200);
    assert.equal((await res).status, 200);
    assert.equal(sent[1]?.discarded, true, "the limiter's answer was freed");
    assert.equal(executor.hedgeStats('orders')?.wins, 0);
  });

  it('from both attempts: the call goes to a third instance, as for a failure', async () => {
    const { clock, sent, call } = setup({ hedge: { delayMs: 10 }, retry: { maxRetries: 1 } });
    const res = call('GET', { retryableAnswer: limited, pick: firstUntried });
    await settle();
    clock.advance(10);
    await settle();
    sent[1]?.answer(429);
    await settle();
    sent[0]?.answer(429);
    await settle();
    clock.advance(1_000);
    await settle();
    assert.deepEqual(
      sent.map((s) => s.id),
      ['a', 'b', 'c'],
    );
    sent[2]?.answer(200);
    assert.equal((await res).status, 200);
  });
});

describe("hedged attempts: the winner's body", () => {
  it("is watched: a body that breaks after the headers is a failure on the winner's instance", async () => {
    const { clock, sent, call, breaker } = setup({
      hedge: { delayMs: 10 },
      rules: [{ level: 'instance', consecutiveFailures: 5, sleepWindowMs: 60_000 }],
    });
    let verdict: BodyVerdict | undefined;
    const res = call('GET', {
      watchBody: (_r, v) => {
        verdict = v;
        return true;
      },
    });
    await settle();
    clock.advance(10);
    await settle();
    sent[1]?.answer(200);
    assert.equal((await res).status, 200);
    assert.ok(verdict !== undefined, "the hedge's answer is watched");
    verdict.broken(Object.assign(new Error('other side closed'), { code: 'UND_ERR_SOCKET' }));
    assert.deepEqual(breaker('b'), { calls: 1, failures: 1 }, "the broken body counts on b, the hedge's instance");
    assert.deepEqual(breaker('a'), { calls: 0, failures: 0 }, 'the aborted first attempt, nothing');
  });
});
