// What the real-Consul TSF suites share: servers on loopback, bounded waits, seeded draws.
import assert from 'node:assert/strict';
import type { Server } from 'node:http';
import { after, before } from 'node:test';
import { MemoryLogger } from '@meshlet/core';

/** The seeded random source of core (mulberry32), named as the suites call it. */
export { seededRandom as seeded } from '@meshlet/core';

import { ConsulKvStore } from '@meshlet/registry';
import { type ConsulAgent, startConsulAgent } from '@meshlet/registry/testing';

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

/**
 * A real Consul agent for the suite it is called in: started before its tests (a Consul that
 * cannot start fails them: they never skip), stopped after, with every mesh and server the
 * tests put in `meshes` and `servers` closed first.
 */
export function consulEstate() {
  let agent: ConsulAgent | undefined;
  let kv: ConsulKvStore | undefined;
  const meshes: { close(): Promise<void> }[] = [];
  const servers: Server[] = [];
  before(async () => {
    agent = await startConsulAgent();
    kv = new ConsulKvStore({ address: agent.address, waitSeconds: 2, logger: new MemoryLogger() });
  });
  after(async () => {
    for (const m of meshes) await m.close();
    for (const s of servers) {
      s.closeAllConnections();
      s.close();
    }
    await agent?.stop();
  });
  const started = <T>(value: T | undefined): T => {
    if (value === undefined) throw new Error('the Consul agent is not started yet (use it inside a test)');
    return value;
  };
  return {
    meshes,
    servers,
    get agent(): ConsulAgent {
      return started(agent);
    },
    get kv(): ConsulKvStore {
      return started(kv);
    },
  };
}
