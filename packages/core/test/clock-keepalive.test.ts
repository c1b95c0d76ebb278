// A wait that a caller awaits keeps the process alive (keepAlive); a background timer does
// not. Found by the axios example: a script whose only pending work was a governed call
// in its retry backoff exited in the middle of the call (exit 13, unsettled await).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ManualClock, sleep, systemClock } from '../src/index.js';

const core = fileURLToPath(new URL('../src/index.js', import.meta.url));
const script = (options: string) =>
  `import { sleep, systemClock } from ${JSON.stringify(core)};\nawait sleep(systemClock, 20, undefined, ${options});\nconsole.log('woke');`;
const runScript = (options: string) =>
  spawnSync(process.execPath, ['--input-type=module', '-e', script(options)], { encoding: 'utf8', timeout: 30_000 });

it('a keepAlive sleep on the system clock holds the process until it wakes', () => {
  const r = runScript('{ keepAlive: true }');
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, 'woke\n');
});

it('a background sleep does not: the process ends with the await unsettled', () => {
  const r = runScript('undefined');
  assert.equal(r.status, 13, r.stderr);
  assert.equal(r.stdout, '');
});

it('passes the options to the clock', () => {
  const seen: unknown[] = [];
  const clock = new ManualClock(0);
  const recording = {
    now: () => clock.now(),
    wallNow: () => clock.wallNow(),
    setTimeout: (fn: () => void, ms: number, o?: unknown) => {
      seen.push(o);
      return clock.setTimeout(fn, ms);
    },
  };
  void sleep(recording, 5, undefined, { keepAlive: true });
  void sleep(recording, 5);
  assert.deepEqual(seen, [{ keepAlive: true }, undefined]);
});

it('a system-clock timer longer than 2^31-1 ms is run in legs, not turned into 1 ms', async () => {
  const warnings: string[] = [];
  const onWarning = (w: Error) => warnings.push(w.name);
  process.on('warning', onWarning);
  const cancel = systemClock.setTimeout(() => {}, 30 * 86_400_000);
  // Node reports an overflowing delay (and makes it 1 ms) with a warning on process.nextTick.
  await new Promise((resolve) => setImmediate(resolve));
  cancel();
  process.off('warning', onWarning);
  assert.deepEqual(warnings, []);
});

it('the legs add up: a 30-day system-clock timer fires once, at 30 days', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const day = 86_400_000;
  let fired = 0;
  systemClock.setTimeout(() => fired++, 30 * day);
  t.mock.timers.tick(2 ** 31 - 1); // the first leg
  t.mock.timers.tick(30 * day - 2 ** 31);
  assert.equal(fired, 0);
  t.mock.timers.tick(1);
  assert.equal(fired, 1);
  t.mock.timers.tick(60 * day);
  assert.equal(fired, 1);
});
