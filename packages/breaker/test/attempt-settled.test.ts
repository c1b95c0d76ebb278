// `GovernedCall.settled`: the executor tells the front end once per attempt it sent, with
// the record it sent, when that attempt's own promise settled — after its await (untimed,
// or timed on a transport that settles on its abort), in runTimed's handlers when it races
// the attempt, in the hedger's for the attempts a hedge sends — so the chain's observers
// (the span, the in-flight count) end without a promise of their own. Table-driven on a
// ManualClock with a transport the test answers by hand.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '@meshlet/core';
import { type AttemptRecord, CallExecutor, type CallExecutorOptions, type GovernedCall, parseBreakerRules } from '../src/index.js';

type Inst = { id: string };
const ids = ['a', 'b', 'c'];
const TIMEOUT =
  'orders: no answer within 100 ms; the attempt was aborted. Raise the timeout in the breaker rule if the upstream is slow by design.';

interface Pending {
  readonly rec: AttemptRecord<Inst>;
  answer(status: number): void;
}

interface Harness {
  readonly clock: ManualClock;
  readonly sent: Pending[];
  /** Lets the executor's promise chains run, without moving the clock. */
  tick(): Promise<void>;
}

const describeOutcome = (result: { status: number } | undefined, error: unknown) =>
  result !== undefined ? `status ${result.status}` : `error ${(error as Error).name}: ${(error as Error).message}`;

describe('the executor settles every attempt it sent, once (GovernedCall.settled)', () => {
  interface Row {
    name: string;
    rules?: unknown;
    options?: CallExecutorOptions;
    method?: string;
    /** The transport hooks the record's abort and rejects with its reason (the mesh's dispatch). */
    settlesOnAbort?: boolean;
    /** The transport rejects when its signal aborts (else it ignores it, and only the executor's race ends the attempt). */
    honoursSignal?: boolean;
    /** The transport throws instead of returning a promise. */
    throws?: boolean;
    callerAborted?: boolean;
    script(h: Harness): Promise<void>;
    want: string[];
    /** `settled` throws after logging (a broken front end): dropped, the call goes on. */
    settledThrows?: boolean;
    /** The order of these lines is the event loop's, not the contract's: compared sorted. */
    unordered?: boolean;
  }
  const rows: Row[] = [
    {
      name: 'untimed, answered: settled once, before the call resolves',
      script: async (h) => (h.sent[0] as Pending).answer(200),
      want: ['send a#0', 'settled a#0 status 200', 'call status 200'],
    },
    {
      name: 'a failed answer retried: each attempt settled before the next is sent',
      rules: { retry: { maxRetries: 1, backoff: { baseMs: 0, maxMs: 0 } } },
      script: async (h) => {
        (h.sent[0] as Pending).answer(503);
        while (h.sent.length < 2) await h.tick();
        (h.sent[1] as Pending).answer(200);
      },
      want: ['send a#0', 'settled a#0 status 503', 'send b#1', 'settled b#1 status 200', 'call status 200'],
    },
    {
      name: 'timed, on a transport that settles on its abort: the deadline rejects it, settled with the TimeoutError',
      rules: { timeoutMs: 100 },
      method: 'POST',
      settlesOnAbort: true,
      script: async (h) => h.clock.advance(100),
      want: ['send a#0', `settled a#0 error TimeoutError: ${TIMEOUT}`, `call error TimeoutError: ${TIMEOUT}`],
    },
    {
      name: 'timed and raced (the transport ignores its abort): settled when its own promise settles, after the call gave up',
      rules: { timeoutMs: 100 },
      method: 'POST',
      script: async (h) => {
        h.clock.advance(100);
        await h.tick();
        (h.sent[0] as Pending).answer(200);
      },
      want: ['send a#0', `call error TimeoutError: ${TIMEOUT}`, 'settled a#0 status 200'],
    },
    {
      name: 'timed and raced, answered in time: settled before the call resolves',
      rules: { timeoutMs: 100 },
      script: async (h) => (h.sent[0] as Pending).answer(200),
      want: ['send a#0', 'settled a#0 status 200', 'call status 200'],
    },
    {
      name: 'a synchronous throw from send: settled with it, as a rejection',
      method: 'POST',
      throws: true,
      script: async () => {},
      want: ['send a#0', 'settled a#0 error Error: refused at once', 'call error Error: refused at once'],
    },
    {
      name: 'no governance (defaults off, no rules): settled all the same',
      options: { defaults: false },
      script: async (h) => (h.sent[0] as Pending).answer(200),
      want: ['send a#0', 'settled a#0 status 200', 'call status 200'],
    },
    {
      name: "the caller's signal aborted before the attempt: nothing sent, nothing settled",
      rules: { timeoutMs: 100 },
      settlesOnAbort: true,
      callerAborted: true,
      script: async () => {},
      want: ['call error Error: caller left'],
    },
    {
      name: 'hedged: each racing attempt settled with its own record, the loser with its abort',
      rules: { hedge: { delayMs: 50 } },
      honoursSignal: true,
      script: async (h) => {
        h.clock.advance(50);
        while (h.sent.length < 2) await h.tick();
        (h.sent[1] as Pending).answer(200);
        await h.tick();
      },
      want: [
        'send a#0',
        'send b#1',
        'settled b#1 status 200',
        'settled a#0 error HedgeLostError: another attempt of this hedged call answered first',
        'call status 200',
      ],
      unordered: true,
    },
    {
      name: 'a hedge rule without its delay yet (a percentile, too few samples): the attempt sent alone, settled',
      rules: { hedge: { percentile: 90 } },
      script: async (h) => (h.sent[0] as Pending).answer(200),
      want: ['send a#0', 'settled a#0 status 200', 'call status 200'],
    },
    ...(
      [
        ['untimed', undefined],
        ['retried', { retry: { maxRetries: 1, backoff: { baseMs: 0, maxMs: 0 } } }],
        ['raced', { timeoutMs: 100 }],
      ] as const
    ).map(
      ([kind, rules]): Row => ({
        name: `a settled that throws is dropped (${kind}): the call and the executor go on`,
        ...(rules === undefined ? {} : { rules }),
        settledThrows: true,
        script: async (h) => {
          (h.sent[0] as Pending).answer(kind === 'retried' ? 503 : 200);
          if (kind !== 'retried') return;
          while (h.sent.length < 2) await h.tick();
          (h.sent[1] as Pending).answer(200);
        },
        want:
          kind === 'retried'
            ? ['send a#0', 'settled a#0 status 503', 'send b#1', 'settled b#1 status 200', 'call status 200']
            : ['send a#0', 'settled a#0 status 200', 'call status 200'],
      }),
    ),
    {
      name: 'a settled that throws is dropped (hedged): the race still ends',
      rules: { hedge: { delayMs: 50 } },
      honoursSignal: true,
      settledThrows: true,
      script: async (h) => {
        h.clock.advance(50);
        while (h.sent.length < 2) await h.tick();
        (h.sent[1] as Pending).answer(200);
        await h.tick();
      },
      want: [
        'send a#0',
        'send b#1',
        'settled b#1 status 200',
        'settled a#0 error HedgeLostError: another attempt of this hedged call answered first',
        'call status 200',
      ],
      unordered: true,
    },
  ];
  for (const row of rows) {
    it(row.name, async () => {
      const clock = new ManualClock();
      const executor = new CallExecutor({ clock, random: () => 0.5, ...row.options });
      if (row.rules !== undefined) executor.setRules('orders', parseBreakerRules(row.rules, 'breaker'));
      executor.setInstances('orders', ids);
      const log: string[] = [];
      const sent: Pending[] = [];
      const told = new Map<AttemptRecord<Inst>, number>();
      const caller = new AbortController();
      if (row.callerAborted) caller.abort(new Error('caller left'));
      const call: GovernedCall<Inst> = {
        service: 'orders',
        method: row.method ?? 'GET',
        signal: caller.signal,
        pick: (tried) => {
          const id = ids.find((i) => !tried.has(i));
          return id === undefined ? undefined : { id };
        },
        ...(row.settlesOnAbort ? { abortsOnRecord: true, settlesOnAbort: true } : {}),
        send: (inst, signal, rec) => {
          log.push(`send ${inst.id}#${rec.number}`);
          if (row.throws) throw new Error('refused at once');
          return new Promise<Response>((resolve, reject) => {
            sent.push({ rec, answer: (status) => resolve(new Response(null, { status })) });
            if (row.settlesOnAbort) rec.abort?.onAbort(reject);
            else if (row.honoursSignal) signal?.addEventListener('abort', () => reject(signal.reason), { once: true });
          });
        },
        settled: (rec, result, error) => {
          told.set(rec, (told.get(rec) ?? 0) + 1);
          log.push(`settled ${rec.target.id}#${rec.number} ${describeOutcome(result, error)}`);
          if (row.settledThrows) throw new Error('front end broke');
        },
      };
      const done = executor.call(call).then(
        (res) => log.push(`call ${describeOutcome(res, undefined)}`),
        (error: unknown) => log.push(`call ${describeOutcome(undefined, error)}`),
      );
      const tick = () => new Promise<void>((r) => setImmediate(r));
      await row.script({ clock, sent, tick });
      await done;
      for (let i = 0; i < 3; i++) await tick();
      if (row.unordered) assert.deepEqual([...log].sort(), [...row.want].sort());
      else assert.deepEqual(log, row.want);
      // Once each, and with the very record it was sent with.
      for (const p of sent) assert.equal(told.get(p.rec), 1, `attempt ${p.rec.number} settled once`);
      for (const rec of told.keys()) assert.ok(row.throws || sent.some((p) => p.rec === rec), 'settled with the record it sent');
    });
  }
});
