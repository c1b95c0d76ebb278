// mesh.serve()'s graceful stop on a real signal: a child process (fixtures/serve-child.ts)
// registers in a real Consul dev agent, and the parent sends it SIGTERM or SIGINT while a
// request is in flight. Needs MESHLET_CONSUL_BIN (or consul on PATH): fails, never skips,
// without it.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type ConsulAgent, startConsulAgent } from '@meshlet/registry/testing';
import { startChild, WAIT_MS } from './child-events.js';

const CHILD = fileURLToPath(new URL('./fixtures/serve-child.js', import.meta.url));

/** Polls `probe` until it returns a value other than undefined; fails after WAIT_MS. */
async function until<T>(what: string, probe: () => Promise<T | undefined>, intervalMs = 50): Promise<T> {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${WAIT_MS} ms`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

async function consulGet<T>(consul: ConsulAgent, path: string): Promise<T> {
  const res = await fetch(`${consul.address}${path}`, { signal: AbortSignal.timeout(5000) });
  assert.equal(res.status, 200, `GET ${path}`);
  return (await res.json()) as T;
}

/** IDs of the instances of `service` whose checks all pass. */
async function passingIds(consul: ConsulAgent, service: string): Promise<string[]> {
  const entries = await consulGet<{ Service: { ID: string } }[]>(consul, `/v1/health/service/${service}?passing=true`);
  return entries.map((e) => e.Service.ID);
}

/** Whether the agent still has the instance registered. */
async function registered(consul: ConsulAgent, id: string): Promise<boolean> {
  const services = await consulGet<Record<string, unknown>>(consul, '/v1/agent/services');
  return id in services;
}

/** GET <url>: the status, or "refused" when the server no longer takes connections. */
async function status(url: string): Promise<number | 'refused'> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
    await res.body?.cancel();
    return res.status;
  } catch {
    return 'refused';
  }
}

describe('mesh.serve() stops gracefully on a real signal', () => {
  let consul: ConsulAgent;
  const children: ChildProcess[] = [];
  before(async () => {
    consul = await startConsulAgent();
  });
  after(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await consul?.stop();
  });

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`${signal}: health 503, deregistered, the request in flight answered, exit code 0`, async () => {
      const service = `signal-stop-${signal.toLowerCase()}`;
      const child = startChild(CHILD, { MESHLET_TEST_CONSUL: consul.address, MESHLET_TEST_SERVICE: service });
      children.push(child.proc);

      const served = await child.event('served');
      const id = String(served.id);
      const base = `http://127.0.0.1:${Number(served.port)}`;
      await until(`${id} passing in Consul`, async () => ((await passingIds(consul, service)).includes(id) ? true : undefined));
      assert.equal(await status(`${base}/health`), 200);

      // A request that the child holds until its stop is under way.
      const slow = fetch(`${base}/slow`, { signal: AbortSignal.timeout(WAIT_MS) }).then(
        async (res) => ({ status: res.status, body: await res.text() }),
        (err: Error) => ({ status: 0, body: `failed: ${err.message} ${String(err.cause ?? '')}` }),
      );
      await child.event('slow-request');

      assert.ok(child.proc.kill(signal), `could not send ${signal}`);

      // While it stops, the health path answers 503 until the server closes. The first
      // answer that is not 200 must be a 503, not a refused connection.
      const firstNotUp = await until(
        'the health path stops answering 200',
        async () => {
          const s = await status(`${base}/health`);
          return s === 200 ? undefined : s;
        },
        10,
      );
      assert.equal(firstNotUp, 503, child.describe());

      await until(`${id} deregistered from Consul`, async () => ((await registered(consul, id)) ? undefined : true));

      const answer = await slow;
      assert.deepEqual(answer, { status: 200, body: 'done' }, child.describe());

      const [code, killedBy] = await child.exited;
      assert.equal(killedBy, null, child.describe());
      assert.equal(code, 0, child.describe());

      // Gone from Consul before the process ended (deregistration is not left to the
      // check's DeregisterCriticalServiceAfter), and nothing registered it again.
      assert.equal(await registered(consul, id), false);
      assert.deepEqual(await passingIds(consul, service), []);
      assert.deepEqual(
        child.events.map((e) => e.event),
        ['served', 'slow-request', 'slow-saw-stopping', 'slow-answered', 'exit'],
      );
      assert.equal(child.events.at(-1)?.code, 0);
    });
  }
});
