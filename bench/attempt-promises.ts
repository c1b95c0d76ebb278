// Promises per governed call, counted (async_hooks' PROMISE inits), not timed: `mesh.fetch`
// through a stub client that answers at once and `mesh.request` through a stub undici
// dispatcher (decision-cost.ts), with the bench rules in force (a timeout, one retry, the
// breakers), tracing off, on but unsampled, and 100% sampled. "added" is over the row's raw
// client alone: what the pipeline's own steps cost in promises (the executor's async
// function, the awaits, any `.then` a per-attempt concern puts on the attempt).
import { createHook } from 'node:async_hooks';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createContext, runWithContext } from '@meshlet/core';
import type { Mesh } from 'meshlet';
import { request } from 'undici';
import { meshWith, stubDispatcher } from './decision-cost.js';
import { UPSTREAM_SERVICE } from './governed-client.js';
import { table } from './harness.js';

const CALLS = 200;

/** Promises made per call of `fn`, over CALLS sequential calls after a warm-up. */
async function promisesPer(fn: () => Promise<unknown>): Promise<number> {
  for (let i = 0; i < 50; i++) await fn();
  let made = 0;
  const hook = createHook({
    init(_id, type) {
      if (type === 'PROMISE') made++;
    },
  });
  // The loop's own await and the hook's bookkeeping are the same for every row: subtracted by "added".
  hook.enable();
  for (let i = 0; i < CALLS; i++) await fn();
  hook.disable();
  return made / CALLS;
}

export async function attemptPromises(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'meshlet-bench-promises-'));
  const ctx = createContext({ tags: [['user-tier', 'vip']], caller: { service: 'edge' } });
  const url = `http://${UPSTREAM_SERVICE}/api/users/42`;
  const shared = new Response(null, { status: 200 });
  const stub = () => Promise.resolve(shared);
  const meshes = [
    await meshWith('off', join(dir, 'a.jsonl')),
    await meshWith('unsampled', join(dir, 'b.jsonl')),
    await meshWith('sampled', join(dir, 'c.jsonl')),
  ] as Mesh[];
  const rows: string[][] = [];
  try {
    const rawFetch = await promisesPer(stub);
    const rawRequest = await promisesPer(() =>
      request('http://127.0.0.1:9/api/users/42', { dispatcher: stubDispatcher }).then((r) => r.body.text()),
    );
    rows.push(['stub client alone', rawFetch.toFixed(1), '—']);
    for (const [name, m] of [
      ['tracing off', meshes[0]],
      ['unsampled', meshes[1]],
      ['tracing 100%', meshes[2]],
    ] as const) {
      const n = await promisesPer(() => runWithContext(ctx, () => (m as Mesh).fetch(url)));
      rows.push([`mesh.fetch, ${name}`, n.toFixed(1), (n - rawFetch).toFixed(1)]);
    }
    rows.push(['undici.request alone, stub dispatcher, body read', rawRequest.toFixed(1), '—']);
    for (const [name, m] of [
      ['tracing off', meshes[0]],
      ['unsampled', meshes[1]],
      ['tracing 100%', meshes[2]],
    ] as const) {
      const n = await promisesPer(() =>
        runWithContext(ctx, () => (m as Mesh).request(url, { dispatcher: stubDispatcher }).then((r) => r.body.text())),
      );
      rows.push([`mesh.request, ${name}`, n.toFixed(1), (n - rawRequest).toFixed(1)]);
    }
  } finally {
    for (const m of meshes) await m.close();
    await rm(dir, { recursive: true, force: true });
  }
  return [
    '## Promises per governed call',
    '',
    `${CALLS} sequential calls with the bench rules in force (a 5 s timeout, one retry, breakers), answered first time by a stub; ` +
      'promises made per call (async_hooks PROMISE inits, a count, not a time); "added" is over the raw client alone.',
    '',
    table(['call', 'promises per call', 'added'], rows),
  ].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(await attemptPromises());
