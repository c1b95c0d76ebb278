// A deadline timer that fired LOOP_LATE_MS or more late expires its attempts a turn of the
// loop later (an immediate, after the poll phase reads answers that came in meanwhile). That
// immediate must hold the loop: an unref'd one does not stop the poll phase from blocking,
// so in a quiet process the timeout waited for whatever event came next (the app's next
// timer, seconds away) — and with no other event the process ended with the call unsettled.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { it } from 'node:test';
import { fileURLToPath } from 'node:url';

it('a deadline timer that fired late expires its attempt though nothing else holds the loop', () => {
  const breaker = fileURLToPath(new URL('../src/index.js', import.meta.url));
  const core = import.meta.resolve('@meshlet/core');
  // The attempt never answers; its deadline timer fires in a timers phase with the clock
  // 100 ms past the deadline (a blocked loop), and nothing else keeps the process alive: an
  // unref'd expiry immediate never runs (the process ends, nothing printed); a ref'd one does.
  const code = `import { CallExecutor, LOOP_LATE_MS, parseBreakerRules } from ${JSON.stringify(breaker)};
import { ManualClock } from ${JSON.stringify(core)};
const manual = new ManualClock();
let blocked = 0;
const clock = { now: () => manual.now() + blocked, wallNow: () => manual.wallNow() + blocked, setTimeout: manual.setTimeout.bind(manual) };
const executor = new CallExecutor({ clock });
executor.setRules('orders', parseBreakerRules({ timeoutMs: 100 }, 'breaker'));
executor.call({ service: 'orders', method: 'GET', pick: () => ({ id: 'a' }), send: () => new Promise(() => {}) }).catch((e) => {
  console.log(e.code, e.lateMs);
});
setTimeout(() => {
  blocked = LOOP_LATE_MS;
  manual.advance(100);
}, 1);`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, 'MESHLET_TIMEOUT 100\n');
});
