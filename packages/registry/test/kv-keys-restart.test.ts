// The shared keys query (`sharedQuery: 'keys'`) across a Consul agent's restart, on a fake
// agent: a dev agent that comes back starts its indexes again, and its key list may answer
// at the very index the store last read at, with other keys.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { type KvEntry, MemoryLogger } from '@meshlet/core';
import { waitFor } from '@meshlet/core/testing';
import { ConsulKvStore } from '../src/consul-kv-store.js';
import type { KvPair } from '../src/kv-prefix-query.js';
import { fakeConsulKv } from './fake-consul-kv.js';

const pair = (Key: string, value: string, ModifyIndex: number): KvPair => ({
  Key,
  Value: Buffer.from(value).toString('base64'),
  ModifyIndex,
});

it('after a failed query, an answer at the index last read is read afresh: an agent restarted with other keys at that index is followed', async () => {
  const pairs: KvPair[] = [pair('meshlet/rules/svc-a', 'agent 1 rules for a', 47)];
  let down = false;
  const fake = fakeConsulKv(pairs, () => {
    if (down) throw new TypeError('fetch failed');
    return undefined;
  });
  const logger = new MemoryLogger();
  const store = new ConsulKvStore({ fetch: fake.fetch, waitSeconds: 1, logger });
  const seen: Record<string, (readonly string[])[]> = { a: [], b: [] };
  const values = (entries: readonly KvEntry[]) => entries.map((e) => e.value);
  const offA = store.watch('meshlet/rules/svc-a', (e) => seen.a?.push(values(e)));
  const offB = store.watch('meshlet/rules/svc-b', (e) => seen.b?.push(values(e)));
  try {
    await waitFor(() => seen.a?.length === 1 && seen.b?.length === 1, 'both watches told once');
    assert.deepEqual(seen, { a: [['agent 1 rules for a']], b: [[]] });
    // The agent goes away (its blocked query ends) and comes back holding svc-b alone, at index 47 again.
    down = true;
    fake.drop();
    await waitFor(() => logger.entries.some((e) => e.fields?.code === 'MESHLET_KV_DEGRADED'), 'the store degraded');
    pairs.splice(0, pairs.length, pair('meshlet/rules/svc-b', 'agent 2 rules for b', 47));
    down = false;
    await waitFor(() => seen.a?.length === 2 && seen.b?.length === 2, 'both watches told of the agent that came back');
    assert.deepEqual(seen, { a: [['agent 1 rules for a'], []], b: [[], ['agent 2 rules for b']] });
  } finally {
    offA();
    offB();
  }
});
