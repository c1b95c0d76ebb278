// What the real-Consul TSF suites share: servers on loopback, bounded waits, seeded draws.
import assert from 'node:assert/strict';

export { listen } from '@meshlet/core/testing';

/** The TSF namespace the suites' services live in. */
export const NS = 'namespace-n1';

/** Waits (bounded, ~30 s) for state that arrives through Consul's blocking queries. */
export async function until(what: string, test: () => boolean): Promise<void> {
  for (let i = 0; i < 600; i++) {
    if (test()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`timed out waiting for ${what}`);
}

/** mulberry32: a seeded random source, so splits and draws are the same on every run. */
export function seeded(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
