// Issue 17: an upstream process dies while Consul cannot tell anyone — the agent is down,
// so the caller keeps its last view, which still lists the dead instance. Under a steady
// load from a bounded loop the caller sees 0 failed calls with the default settings and no
// rules, and with breaker rules in force (read from Consul KV before the outage). Real
// Consul (MESHLET_CONSUL_BIN), real upstream processes killed with SIGKILL.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { MemoryLogger } from '@meshlet/core';
import { ConsulKvStore, ConsulRegistry } from '@meshlet/registry';
import { type ConsulAgent, startConsulAgent } from '@meshlet/registry/testing';
import { createMesh, type Mesh } from 'meshlet';

// The sdk's upstream fixture: a node:http server in its own process that answers with its name.
const CHILD = fileURLToPath(new URL('../../packages/sdk/dist/test/fixtures/upstream-child.js', import.meta.url));
const TOTAL = 600;
const CONCURRENCY = 8;
const KILL_AFTER = 150;

interface Upstream {
  readonly name: string;
  readonly port: number;
  readonly proc: ChildProcess;
}

const cleanup: (() => Promise<unknown>)[] = [];
after(async () => {
  for (const c of cleanup.reverse()) await c().catch(() => {});
});

async function startUpstream(name: string): Promise<Upstream> {
  const proc = spawn(process.execPath, [CHILD], { env: { ...process.env, MESHLET_TEST_NAME: name }, stdio: ['ignore', 'pipe', 'inherit'] });
  cleanup.push(async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGKILL');
      await once(proc, 'exit');
    }
  });
  const port = await new Promise<number>((resolve, reject) => {
    proc.once('exit', (code) => reject(new Error(`upstream ${name} exited (${code}) before it listened`)));
    createInterface({ input: proc.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      const event = JSON.parse(line) as { event: string; port?: number };
      if (event.event === 'listening') resolve(event.port as number);
    });
  });
  return { name, port, proc };
}

async function kill(u: Upstream): Promise<void> {
  const gone = once(u.proc, 'exit');
  u.proc.kill('SIGKILL');
  await gone;
}

async function until(test: () => Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 1_500; i++) {
    if (await test().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out waiting for ${what}`);
}

const RULES = {
  breaker: {
    rules: [{ level: 'instance', consecutiveFailures: 3, sleepWindowMs: 60_000, maxEjectionPercent: 50 }],
    retry: { maxRetries: 2, backoff: { baseMs: 0, maxMs: 0 } },
    timeoutMs: 5_000,
  },
};

describe('an upstream dies while the Consul agent is down', () => {
  for (const rules of [false, true]) {
    it(`${rules ? 'breaker rules in force' : 'no rules, default settings'}: 0 failed calls under a steady load`, async () => {
      const agent: ConsulAgent = await startConsulAgent();
      cleanup.push(() => agent.stop());
      const service = rules ? 'inventory-ruled' : 'inventory';
      const logger = new MemoryLogger();
      const registrar = new ConsulRegistry({ address: agent.address, healthCheck: { type: 'http', interval: '1s' }, logger });
      cleanup.push(() => registrar.close());
      const ups: Upstream[] = [];
      for (let i = 0; i < 3; i++) {
        const up = await startUpstream(`${service}-${i}`);
        ups.push(up);
        await registrar.register({ id: up.name, service, address: '127.0.0.1', port: up.port, tags: [], metadata: {}, health: 'passing' });
      }
      const caller: Mesh = createMesh({
        service: `${service}-caller`,
        registry: new ConsulRegistry({ address: agent.address, waitSeconds: 5, logger }),
        rules: new ConsulKvStore({ address: agent.address, logger }),
        logger,
      });
      cleanup.push(() => caller.close());
      if (rules) {
        await caller.rules.apply(JSON.stringify({ service, ...RULES }), { author: 'test' });
        await caller.rulesInForce(service);
      }
      // The caller knows all three, each passing its check.
      const answered = new Set<string>();
      await until(async () => {
        answered.add(await (await caller.fetch(`http://${service}/`)).text());
        return answered.size === 3;
      }, 'calls reaching all three instances');

      await agent.stop(); // Consul is down: the caller keeps its last view.
      const victim = ups[0] as Upstream;
      let issued = 0;
      let done = 0;
      let failed = 0;
      const errors: string[] = [];
      let killed: Promise<void> | undefined;
      const worker = async () => {
        while (issued < TOTAL) {
          issued++;
          try {
            const res = await caller.fetch(`http://${service}/work`);
            const body = await res.text();
            if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${body.slice(0, 80)}`);
          } catch (err) {
            failed++;
            if (errors.length < 5) errors.push(String((err as Error).cause ?? err));
          }
          if (++done === KILL_AFTER) killed = kill(victim);
        }
      };
      await Promise.all(Array.from({ length: CONCURRENCY }, worker));
      await killed;
      assert.equal(failed, 0, `${failed} of ${TOTAL} failed: ${errors.join('; ')}`);
      assert.equal(caller.breakers.snapshot().find((s) => s.breaker.instance === victim.name)?.state, 'open');
    });
  }
});
