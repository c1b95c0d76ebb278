// A caller of many services on a real Consul agent, whose default
// http_max_conns_per_client is 200: each service it follows holds a blocking query of its
// instances (a connection to the agent), and the rules of all of them are read through one
// blocking query of meshlet/rules/. 150 services called at once stay under the agent's
// limit (two queries each hit HTTP 429 past the 124th–138th). Destinations left idle are
// released, so 300 services called once each never hold the agent's connections all at
// once, and the connections drop once they are idle.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { MemoryLogger } from '@meshlet/core';
import { ConsulKvStore, ConsulRegistry } from '@meshlet/registry';
import { type ConsulAgent, startConsulAgent } from '@meshlet/registry/testing';
import { createMesh, type Mesh } from 'meshlet';

const SERVICES = 300;
/** Services called in a row. */
const WAVE = 75;
/** Services followed at once in the second test: at two queries each the agent refused the 124th to 138th. */
const AT_ONCE = 150;
const IDLE_MS = 1_000;
/** The blocking queries' wait: a stopped one holds its connection at the agent until then. */
const WAIT_SECONDS = 2;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** TCP sockets to `port` (remote side) and of `port` (local side: the agent's), from /proc (Linux). */
function sockets(port: number): { ours: number; agents: number } {
  const inodes = new Set<string>();
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`));
      if (m) inodes.add(m[1] as string);
    } catch {
      // closed while listed
    }
  }
  let ours = 0;
  let agents = 0;
  const portOf = (address: string) => Number.parseInt(address.split(':')[1] as string, 16);
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10) continue;
      // State 01 ESTABLISHED; 08 CLOSE_WAIT: the client went, the agent still holds it (a
      // blocking query is not ended by its client's close, only by its wait).
      if (f[3] === '01' && portOf(f[2] as string) === port && inodes.has(f[9] as string)) ours++;
      if ((f[3] === '01' || f[3] === '08') && portOf(f[1] as string) === port) agents++;
    }
  }
  return { ours, agents };
}

async function until(test: () => boolean, what: () => string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!test()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what()}`);
    await sleep(50);
  }
}

/** Registers `count` services `svc-<i>` straight on the agent (no check: passing), on one keep-alive connection. */
async function registerServices(agent: ConsulAgent, count: number, port: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const res = await fetch(`${agent.address}/v1/agent/service/register`, {
      method: 'PUT',
      body: JSON.stringify({ ID: `svc-${i}-0`, Name: `svc-${i}`, Address: '127.0.0.1', Port: port }),
    });
    assert.equal(res.status, 200, await res.text());
  }
}

describe('Consul: idle destinations release their connections to the agent', { skip: process.platform !== 'linux' }, () => {
  let agent: ConsulAgent;
  let server: Server;
  let caller: Mesh;

  before(async () => {
    agent = await startConsulAgent();
    server = createServer((_req, res) => res.end('ok'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as { port: number }).port;
    await registerServices(agent, SERVICES, port);
    caller = createMesh({
      service: 'caller',
      registry: new ConsulRegistry({ address: agent.address, waitSeconds: WAIT_SECONDS, logger: new MemoryLogger() }),
      rules: new ConsulKvStore({ address: agent.address, waitSeconds: WAIT_SECONDS, logger: new MemoryLogger() }),
      logger: new MemoryLogger(),
      destinations: { idleMs: IDLE_MS },
    });
  });
  after(async () => {
    await caller?.close();
    server?.close();
    await agent?.stop();
  });

  it(`${SERVICES} services called once each, ${WAVE} at a time: every call answered; the connections drop once they are idle`, async () => {
    // The caller's own watches (the service names, its own rules) and the registrations'
    // connection; and room for a connection its HTTP client keeps alive between queries.
    const first = sockets(agent.httpPort);
    const base = { ours: first.ours + 2, agents: first.agents + 2 };
    let most = 0;
    for (let from = 0; from < SERVICES; from += WAVE) {
      for (let i = from; i < from + WAVE; i++) {
        const res = await caller.fetch(`http://svc-${i}/`);
        assert.equal(res.status, 200, `svc-${i}`);
        assert.equal(await res.text(), 'ok');
        most = Math.max(most, sockets(agent.httpPort).agents);
      }
      // Left idle: released, their blocking queries stopped, and ended at the agent after their wait.
      await until(
        () => {
          const now = sockets(agent.httpPort);
          return now.ours <= base.ours && now.agents <= base.agents;
        },
        () =>
          `the connections of services ${from}..${from + WAVE - 1} to close: ${JSON.stringify(sockets(agent.httpPort))}, at most ${JSON.stringify(base)} wanted`,
      );
    }
    assert.ok(most < 200, `at most ${most} connections at the agent`);
  });
});

describe('Consul: the rules of every destination through one query', { skip: process.platform !== 'linux' }, () => {
  let agent: ConsulAgent;
  let server: Server;
  let caller: Mesh;

  before(async () => {
    agent = await startConsulAgent();
    server = createServer((_req, res) => res.end('ok'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    await registerServices(agent, AT_ONCE, (server.address() as { port: number }).port);
    caller = createMesh({
      service: 'caller',
      registry: new ConsulRegistry({ address: agent.address, waitSeconds: WAIT_SECONDS, logger: new MemoryLogger() }),
      rules: new ConsulKvStore({ address: agent.address, waitSeconds: WAIT_SECONDS, logger: new MemoryLogger() }),
      logger: new MemoryLogger(),
    });
  });
  after(async () => {
    await caller?.close();
    server?.close();
    await agent?.stop();
  });

  it(`${AT_ONCE} services followed at once: one connection each and one for all their rules, under the agent's 200; every call answered`, async () => {
    const first = sockets(agent.httpPort);
    let most = 0;
    for (let i = 0; i < AT_ONCE; i++) {
      const res = await caller.fetch(`http://svc-${i}/`);
      assert.equal(res.status, 200, `svc-${i}`);
      assert.equal(await res.text(), 'ok');
      most = Math.max(most, sockets(agent.httpPort).agents);
    }
    // The caller's own watches and its rules' query were there before the first call; a
    // connection its HTTP client keeps alive between queries may come and go.
    assert.ok(most <= first.agents + AT_ONCE + 2, `${most} connections at the agent, ${first.agents} before the first call`);
    assert.ok(most < 200, `${most} connections at the agent`);
  });
});
