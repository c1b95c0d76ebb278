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

it('holds its items weakly: one no longer referenced elsewhere is collected and not given', () => {
  const child = `
    const { NewestLive } = await import(${JSON.stringify(new URL('../src/newest-live.js', import.meta.url).href)});
    const live = new NewestLive();
    const kept = { n: 1 };
    live.add(kept);
    let dropped = { n: 2 };
    let done;
    const collected = new Promise((r) => { done = r; });
    const registry = new FinalizationRegistry(() => done());
    registry.register(dropped, 'x');
    live.add(dropped);
    dropped = undefined;
    for (let i = 0; i < 20; i++) { globalThis.gc(); await new Promise((r) => setImmediate(r)); }
    await collected;
    process.stdout.write(String(live.newest() === kept && registry !== undefined));
  `;
  const run = spawnSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', child], { encoding: 'utf8', timeout: 20_000 });
  assert.equal(run.status, 0, run.stderr);
  assert.equal(run.stdout, 'true');
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
