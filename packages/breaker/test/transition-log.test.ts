// An enforced breaker's opening (an instance's: its ejection) and its closing are logged
// with a code, as every degraded state is; shadow sections log MESHLET_BREAKER_SHADOW instead.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { ManualClock, MemoryLogger, PER_REQUEST_CODES } from '@meshlet/core';
import { CallExecutor, type GovernedCall, parseBreakerRules } from '../src/index.js';

function setup(section: Record<string, unknown>) {
  const clock = new ManualClock();
  const logger = new MemoryLogger();
  const executor = new CallExecutor({ clock, random: () => 0.5, logger });
  executor.setRules('orders', parseBreakerRules(section, 'breaker'));
  executor.setInstances('orders', ['a', 'b', 'c']);
  let status = 503;
  const call = () => {
    const c: GovernedCall<{ id: string }> = {
      service: 'orders',
      method: 'GET',
      path: '/x',
      pick: (tried) => (tried.has('a') ? undefined : { id: 'a' }),
      send: async () => new Response('', { status }),
    };
    return executor.call(c).then(
      (r) => r.status,
      (e: Error & { code?: string }) => e.code,
    );
  };
  // The entry's severity beside its fields (a breaker's own `level` is a field).
  const logged = () =>
    logger.entries
      .filter((e) => /^MESHLET_BREAKER_(OPENED|CLOSED)$/.test(String(e.fields?.code)))
      .map((e) => ({ severity: e.level, ...e.fields }));
  return { clock, call, logged, answer: (s: number) => (status = s) };
}

it('a service breaker that opens logs MESHLET_BREAKER_OPENED (warn), and MESHLET_BREAKER_CLOSED (info) when it closes', async () => {
  const t = setup({ rules: [{ level: 'service', consecutiveFailures: 2, sleepWindowMs: 1000, probes: 1 }] });
  assert.deepEqual([await t.call(), await t.call(), await t.call()], [503, 503, 'MESHLET_CIRCUIT_OPEN']);
  assert.deepEqual(t.logged(), [
    { severity: 'warn', code: 'MESHLET_BREAKER_OPENED', level: 'service', service: 'orders', reason: 'consecutive-failures' },
  ]);
  t.clock.advance(1000);
  t.answer(200);
  assert.equal(await t.call(), 200);
  assert.deepEqual(t.logged()[1], { severity: 'info', code: 'MESHLET_BREAKER_CLOSED', level: 'service', service: 'orders' });
});

it("an instance breaker's ejection logs MESHLET_BREAKER_OPENED naming the instance", async () => {
  const t = setup({ rules: [{ level: 'instance', consecutiveFailures: 1, sleepWindowMs: 60_000 }] });
  await t.call();
  assert.deepEqual(t.logged(), [
    {
      severity: 'warn',
      code: 'MESHLET_BREAKER_OPENED',
      level: 'instance',
      service: 'orders',
      instance: 'a',
      reason: 'consecutive-failures',
    },
  ]);
});

it('both codes are per-request codes: a flapping breaker, or many instances, cannot flood the log', () => {
  for (const code of ['MESHLET_BREAKER_OPENED', 'MESHLET_BREAKER_CLOSED']) assert.ok(PER_REQUEST_CODES.includes(code), code);
});
