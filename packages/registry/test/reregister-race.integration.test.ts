// A graceful stop deregisters while the registry's "does the agent still have it?" check, or
// the re-registration that follows it, is on its way: the instance must stay deregistered.
// Against a real Consul dev agent; the registry's fetch holds the chosen request at a gate
// until the test lets it go, so the interleaving is the one under test every run.
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { type Instance, MemoryLogger } from '@meshlet/core';
import { ConsulRegistry } from '../src/index.js';
import { type ConsulAgent, startConsulAgent } from '../src/testing/consul-agent.js';

let agent: ConsulAgent;
before(async () => {
  agent = await startConsulAgent();
});
after(() => agent?.stop());

const instance = (id: string): Instance => ({
  id,
  service: 'racer',
  address: '127.0.0.1',
  port: 9,
  tags: [],
  metadata: {},
  health: 'passing',
});

interface Gate {
  /** Resolves when a request the gate holds arrives. */
  readonly arrived: Promise<void>;
  /** Lets it (and any other held) go on to the agent; resolves with the agent's answers. */
  release(): Promise<void>;
}

/**
 * A fetch to the agent that holds requests matching `hold` once `arm` is called, and tells
 * when a registration of `id` is sent.
 */
function gatedFetch(id: string) {
  let holding: ((method: string, url: string, body: string) => boolean) | undefined;
  let arrived: () => void = () => {};
  let open: () => void = () => {};
  let gate = Promise.resolve();
  const forwarded: Promise<unknown>[] = [];
  const registrations: number[] = [];
  const fetchVia = (async (input: string | URL | Request, init?: RequestInit) => {
    const url = String(input);
    const method = init?.method ?? 'GET';
    const body = String(init?.body ?? '');
    if (method === 'PUT' && url.endsWith('/v1/agent/service/register') && body.includes(`"ID":"${id}"`)) registrations.push(Date.now());
    if (holding?.(method, url, body)) {
      // The agent's answer read whole here: what the registry does with it then needs no I/O.
      const answer = gate
        .then(() => fetch(input, init))
        .then(async (r) => new Response(await r.arrayBuffer(), { status: r.status, headers: r.headers }));
      forwarded.push(answer);
      arrived();
      return answer;
    }
    return fetch(input, init);
  }) as typeof globalThis.fetch;
  return {
    fetchVia,
    /** How many registrations of the id were sent. */
    get registrations() {
      return registrations.length;
    },
    arm(hold: (method: string, url: string, body: string) => boolean): Gate {
      gate = new Promise((r) => {
        open = r;
      });
      const arrivedP = new Promise<void>((r) => {
        arrived = r;
      });
      holding = hold;
      return {
        arrived: arrivedP,
        async release() {
          holding = undefined;
          open();
          await Promise.allSettled(forwarded);
        },
      };
    },
  };
}

const agentHas = async (id: string) =>
  (await fetch(`${agent.address}/v1/agent/service/${encodeURIComponent(id)}`).then((r) => r.body?.cancel().then(() => r.status))) === 200;
/** A few turns of the event loop: what the registry does on an answer read whole (no timer, no I/O) is done by then. */
const turns = async (n = 20) => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
};

it('a deregistration while the check is on its way: the check’s 404 registers nothing again', async () => {
  const id = `race-check-${process.pid}`;
  const g = gatedFetch(id);
  const logger = new MemoryLogger();
  const registry = new ConsulRegistry({ address: agent.address, fetch: g.fetchVia, logger, reregisterCheckMs: 20 });
  const isCheck = (method: string, url: string) => method === 'GET' && url.includes(`/v1/agent/service/${id}`);
  try {
    await registry.register(instance(id));
    assert.equal(g.registrations, 1);

    // The control: an agent that lost the instance while the check was held gets it back
    // within the same few turns the case under test waits.
    let gate = g.arm(isCheck);
    await gate.arrived;
    await fetch(`${agent.address}/v1/agent/service/deregister/${id}`, { method: 'PUT' }).then((r) => r.body?.cancel());
    await gate.release();
    await turns();
    assert.ok(g.registrations >= 2, 'the keeper registers a lost instance again');
    const registered = g.registrations;

    // The case: this process deregisters while the check is held.
    gate = g.arm(isCheck);
    await gate.arrived;
    await registry.deregister(id);
    await gate.release();
    await turns();
    assert.equal(g.registrations, registered, 'no registration after the deregistration');
    assert.equal(await agentHas(id), false);
  } finally {
    await registry.close();
  }
});

it('a deregistration while a re-registration is on its way waits for it, then deregisters', async () => {
  const id = `race-put-${process.pid}`;
  const g = gatedFetch(id);
  const registry = new ConsulRegistry({ address: agent.address, fetch: g.fetchVia, logger: new MemoryLogger(), reregisterCheckMs: 20 });
  try {
    await registry.register(instance(id));
    // The agent loses the instance; the keeper's registration of it is held.
    const gate = g.arm(
      (method, url, body) => method === 'PUT' && url.endsWith('/v1/agent/service/register') && body.includes(`"ID":"${id}"`),
    );
    await fetch(`${agent.address}/v1/agent/service/deregister/${id}`, { method: 'PUT' }).then((r) => r.body?.cancel());
    await gate.arrived;
    const deregistered = registry.deregister(id);
    await gate.release();
    await deregistered;
    assert.equal(await agentHas(id), false);
  } finally {
    await registry.close();
  }
});

it('closed while the check is on its way: the check’s 404 registers nothing again', async () => {
  const id = `race-close-${process.pid}`;
  const g = gatedFetch(id);
  const registry = new ConsulRegistry({ address: agent.address, fetch: g.fetchVia, logger: new MemoryLogger(), reregisterCheckMs: 20 });
  await registry.register(instance(id));
  const gate = g.arm((method, url) => method === 'GET' && url.includes(`/v1/agent/service/${id}`));
  await gate.arrived;
  await fetch(`${agent.address}/v1/agent/service/deregister/${id}`, { method: 'PUT' }).then((r) => r.body?.cancel());
  await registry.close();
  await gate.release();
  await turns();
  assert.equal(g.registrations, 1);
  assert.equal(await agentHas(id), false);
});

// Found reviewing the fixes above: register() after close() sent its PUT and started a
// keeper that re-registered the instance for the life of the process.
it('a closed registry registers nothing: register() is refused (MESHLET_CLOSED), nothing sent', async () => {
  const id = `race-after-close-${process.pid}`;
  const g = gatedFetch(id);
  const registry = new ConsulRegistry({ address: agent.address, fetch: g.fetchVia, logger: new MemoryLogger(), reregisterCheckMs: 20 });
  await registry.close();
  await assert.rejects(registry.register(instance(id)), (e: unknown) => (e as { code?: string }).code === 'MESHLET_CLOSED');
  await turns();
  assert.equal(g.registrations, 0);
  assert.equal(await agentHas(id), false);
});
