import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock, MemoryLogger } from '@meshlet/core';
import { assertRuleRefused } from '@meshlet/core/testing';
import { CallExecutor, type GovernedCall, parseBreakerRules } from '../src/index.js';

type Inst = { id: string };
const ids = ['a', 'b', 'c'];

/**
 * A fake upstream on a ManualClock: `statusOf` answers each attempt, `delayMs` holds each
 * attempt open that long (the clock is advanced by the test while it is in flight).
 */
function setup(section: Record<string, unknown>, statusOf: (id: string) => number, options: { delayMs?: number } = {}) {
  const clock = new ManualClock();
  const logger = new MemoryLogger();
  const executor = new CallExecutor({ clock, random: () => 0.5, logger });
  executor.setRules('orders', parseBreakerRules(section, 'breaker'));
  executor.setInstances('orders', ids);
  const sent: string[] = [];
  let next = 0;
  const pick = (tried: ReadonlySet<string>) => {
    for (let i = 0; i < ids.length; i++) {
      const id = ids[(next + i) % ids.length] as string;
      if (tried.has(id) || executor.instanceBreakers.isExcluded(id)) continue;
      next = (next + i + 1) % ids.length;
      return { id };
    }
    return undefined;
  };
  const send = async (inst: Inst) => {
    sent.push(inst.id);
    if (options.delayMs) await new Promise<void>((resolve) => clock.setTimeout(resolve, options.delayMs as number));
    return new Response(inst.id, { status: statusOf(inst.id) });
  };
  const call = async () => {
    const notes: string[] = [];
    const c: GovernedCall<Inst> = { service: 'orders', method: 'GET', path: '/x', pick, send, shadow: (n) => notes.push(n) };
    const p = executor.call<Inst>(c);
    if (options.delayMs) {
      // Let the attempt start, then move time past its delay.
      await new Promise((r) => setImmediate(r));
      clock.advance(options.delayMs);
    }
    const res = await p;
    return { status: res.status, notes };
  };
  const logged = () => logger.entries.filter((e) => e.fields?.code === 'MESHLET_BREAKER_SHADOW').map((e) => e.fields?.shadow);
  return { clock, executor, sent, call, logged };
}

interface Case {
  readonly name: string;
  readonly section: Record<string, unknown>;
  readonly statusOf: (id: string) => number;
  readonly calls: number;
  readonly delayMs?: number;
  /** Every call's status, as if the section were absent. */
  readonly statuses: readonly number[];
  readonly stats: { wouldReject: number; wouldOpen: number; wouldExclude: number; wouldTimeOut: number };
  /** Notes the last call carried. */
  readonly lastNotes: readonly string[];
}

const cases: readonly Case[] = [
  {
    name: 'a service breaker that would open, then reject',
    section: { rules: [{ level: 'service', consecutiveFailures: 2, sleepWindowMs: 60_000 }] },
    statusOf: () => 503,
    calls: 4,
    // Default retries only retry what was never sent: every 503 comes back, nothing rejected.
    statuses: [503, 503, 503, 503],
    stats: { wouldReject: 2, wouldOpen: 1, wouldExclude: 0, wouldTimeOut: 0 },
    lastNotes: ['breaker:service:would-reject'],
  },
  {
    name: 'an API breaker that would reject',
    section: { rules: [{ level: 'api', apis: [{ method: 'GET', path: '/x' }], consecutiveFailures: 1, sleepWindowMs: 60_000 }] },
    statusOf: () => 500,
    calls: 2,
    statuses: [500, 500],
    stats: { wouldReject: 1, wouldOpen: 1, wouldExclude: 0, wouldTimeOut: 0 },
    lastNotes: ['breaker:api:would-reject'],
  },
  {
    name: 'an instance breaker that would eject an instance, then exclude it',
    section: { rules: [{ level: 'instance', consecutiveFailures: 1, sleepWindowMs: 60_000, maxEjectionPercent: 50 }] },
    statusOf: (id) => (id === 'a' ? 503 : 200),
    calls: 4,
    // a, b, c, then a again: the shadow would have excluded it; routing still sends to it.
    statuses: [503, 200, 200, 503],
    stats: { wouldReject: 0, wouldOpen: 1, wouldExclude: 1, wouldTimeOut: 0 },
    lastNotes: ['breaker:instance:would-exclude'],
  },
  {
    name: 'a timeout that would cut a slow attempt',
    section: { timeoutMs: 100 },
    statusOf: () => 200,
    calls: 1,
    delayMs: 250,
    statuses: [200],
    stats: { wouldReject: 0, wouldOpen: 0, wouldExclude: 0, wouldTimeOut: 1 },
    lastNotes: ['breaker:timeout:would-time-out'],
  },
  {
    name: 'a section with nothing to say',
    section: { rules: [{ level: 'service', consecutiveFailures: 5 }], timeoutMs: 1_000 },
    statusOf: () => 200,
    calls: 3,
    delayMs: 10,
    statuses: [200, 200, 200],
    stats: { wouldReject: 0, wouldOpen: 0, wouldExclude: 0, wouldTimeOut: 0 },
    lastNotes: [],
  },
];

describe('breaker section in shadow mode (`breaker.mode: "shadow"`)', () => {
  for (const c of cases) {
    it(`${c.name}: counted, logged, noted on the call, not enforced`, async () => {
      const shadow = setup({ ...c.section, mode: 'shadow' }, c.statusOf, c.delayMs ? { delayMs: c.delayMs } : {});
      const statuses: number[] = [];
      let last: string[] = [];
      for (let i = 0; i < c.calls; i++) {
        const r = await shadow.call();
        statuses.push(r.status);
        last = r.notes;
      }
      assert.deepEqual(statuses, c.statuses);
      assert.deepEqual(shadow.executor.shadowStats('orders'), c.stats);
      assert.deepEqual(last, c.lastNotes);
      const total = c.stats.wouldReject + c.stats.wouldOpen + c.stats.wouldExclude + c.stats.wouldTimeOut;
      assert.equal(shadow.logged().length, total);
      // Nothing real: only the default outlier breakers, all closed; no instance excluded from routing.
      assert.deepEqual(
        shadow.executor.snapshot().filter((s) => s.breaker.level !== 'instance' || s.state !== 'closed'),
        [],
      );
      for (const id of ids) assert.equal(shadow.executor.instanceBreakers.isExcluded(id), false);
    });
  }

  it('enforced, the same section rejects (the shadow result is not the enforced one)', async () => {
    const enforced = setup({ rules: [{ level: 'service', consecutiveFailures: 2, sleepWindowMs: 60_000 }] }, () => 503);
    await enforced.call();
    await enforced.call();
    await assert.rejects(enforced.call(), { code: 'MESHLET_CIRCUIT_OPEN' });
    assert.equal(enforced.executor.shadowStats('orders'), undefined);
  });

  it('keeps the safe defaults: an attempt that sent nothing is retried on another instance', async () => {
    const clock = new ManualClock();
    const executor = new CallExecutor({ clock, random: () => 0.5 });
    executor.setRules('orders', parseBreakerRules({ mode: 'shadow', rules: [{ level: 'service', consecutiveFailures: 1 }] }, 'breaker'));
    const sent: string[] = [];
    const res = await executor.call<Inst>({
      service: 'orders',
      method: 'POST',
      pick: (tried) => ids.map((id) => ({ id })).find((i) => !tried.has(i.id)),
      send: async (i) => {
        sent.push(i.id);
        if (i.id === 'a') throw Object.assign(new TypeError('fetch failed'), { cause: { code: 'ECONNREFUSED' } });
        return new Response('ok');
      },
    });
    assert.equal(res.status, 200);
    assert.deepEqual(sent, ['a', 'b']);
  });

  it('watches attempts without defaults too (`defaults: false`): a timeout it would apply is noted, not applied', async () => {
    const clock = new ManualClock();
    const executor = new CallExecutor({ clock, defaults: false });
    executor.setRules('orders', parseBreakerRules({ mode: 'shadow', timeoutMs: 50 }, 'breaker'));
    const notes: string[] = [];
    const p = executor.call<Inst>({
      service: 'orders',
      method: 'GET',
      pick: () => ({ id: 'a' }),
      send: () => new Promise((resolve) => clock.setTimeout(() => resolve(new Response('late')), 80)),
      shadow: (n) => notes.push(n),
    });
    await new Promise((r) => setImmediate(r));
    clock.advance(80);
    assert.equal(await (await p).text(), 'late');
    assert.deepEqual(notes, ['breaker:timeout:would-time-out']);
    assert.equal(executor.shadowStats('orders')?.wouldTimeOut, 1);
  });

  it('refuses a mode that is neither enforce nor shadow, naming the field', () => {
    assertRuleRefused(() => parseBreakerRules({ mode: 'dry-run' }, 'breaker'), 'breaker.mode');
    assertRuleRefused(() => parseBreakerRules({ mode: true }, 'breaker'), 'breaker.mode');
    assert.equal(parseBreakerRules({ mode: 'shadow' }, 'breaker').mode, 'shadow');
    assert.equal(parseBreakerRules({ mode: 'enforce' }, 'breaker').mode, undefined);
  });
});
