import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { it } from 'node:test';
import { NewestLive } from '../src/index.js';

it('gives the newest item not removed; removing it hands back to the one before', () => {
  const live = new NewestLive<{ n: number }>();
  const a = { n: 1 };
  const b = { n: 2 };
  const c = { n: 3 };
  assert.equal(live.newest(), undefined);
  live.add(a);
  live.add(b);
  live.add(c);
  assert.equal(live.newest(), c);
  live.remove(b);
  assert.equal(live.newest(), c);
  live.remove(c);
  assert.equal(live.newest(), a);
  live.remove(a);
  assert.equal(live.newest(), undefined);
});

it(`holds its items strongly, at most NEWEST_LIVE_MAX: past it the oldest is let go`, async () => {
  const { NEWEST_LIVE_MAX } = await import('../src/index.js');
  const live = new NewestLive<{ n: number }>();
  const items = Array.from({ length: NEWEST_LIVE_MAX + 1 }, (_, n) => ({ n }));
  for (const item of items) live.add(item);
  // Remove every one but the first two: the first was let go when the last came in.
  for (const item of items.slice(2)) live.remove(item);
  assert.equal(live.newest(), items[1]);
  live.remove(items[1] as { n: number });
  assert.equal(live.newest(), undefined);
});

it('AdoptableLogger: a logger given at construction is never replaced; adopted ones are given back newest first', async () => {
  const { AdoptableLogger, MemoryLogger } = await import('../src/index.js');
  const fallback = new MemoryLogger();
  const a = new MemoryLogger();
  const b = new MemoryLogger();
  const adoptable = new AdoptableLogger(undefined, fallback);
  adoptable.adoptLogger(a);
  adoptable.adoptLogger(b);
  adoptable.warn('1');
  adoptable.releaseLogger(b);
  adoptable.warn('2');
  adoptable.releaseLogger(a);
  adoptable.warn('3');
  assert.deepEqual(
    [b, a, fallback].map((l) => l.entries.map((e) => e.message)),
    [['1'], ['2'], ['3']],
  );
  const given = new MemoryLogger();
  const owned = new AdoptableLogger(given, fallback);
  owned.adoptLogger(a);
  owned.warn('4');
  assert.deepEqual(
    given.entries.map((e) => e.message),
    ['4'],
  );
});

it('keeps an item nothing else references (a mesh the app never kept still serves the module-level fetch)', () => {
  const child = `
    const { NewestLive } = await import(${JSON.stringify(new URL('../src/newest-live.js', import.meta.url).href)});
    const live = new NewestLive();
    (() => live.add({ n: 7 }))();
    for (let i = 0; i < 10; i++) { globalThis.gc(); await new Promise((r) => setImmediate(r)); }
    process.stdout.write(String(live.newest()?.n));
  `;
  const run = spawnSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', child], { encoding: 'utf8', timeout: 20_000 });
  assert.equal(run.status, 0, run.stderr);
  assert.equal(run.stdout, '7');
});
