// A signal while the mesh is already stopping: a child process (fixtures/stop-child.ts)
// served by mesh.serve() holds a request until the parent writes to its stdin, and the
// parent sends real signals during the stop. The mesh's listeners stay installed until it
// is released: a repeated signal is logged once and ignored, the drain goes on, and the
// process exits 0 once it is done — not killed by the signal's default action, not exited
// early.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type Child, type ChildEvent, startChild, WAIT_MS } from './child-events.js';

const CHILD = fileURLToPath(new URL('./fixtures/stop-child.js', import.meta.url));

/** Starts the child and a request it holds; resolves once the request reached it. */
async function childWithRequestInFlight(env: Record<string, string> = {}) {
  const child = startChild(CHILD, env, { stdin: true });
  // A write after the child is gone must fail the assertions below, not the test process.
  child.proc.stdin?.on('error', () => undefined);
  const served = await child.event('served');
  const slow = fetch(`http://127.0.0.1:${Number(served.port)}/slow`, { signal: AbortSignal.timeout(WAIT_MS) }).then(
    async (res) => ({ status: res.status, body: await res.text() }),
    (err: Error) => ({ status: 0, body: `failed: ${err.message} ${String(err.cause ?? '')}` }),
  );
  await child.event('slow-request');
  return { child, slow };
}

const isLog = (message: string) => (e: ChildEvent) => e.message === message;
const ignored = (e: ChildEvent) => e.code === 'MESHLET_SIGNAL_IGNORED';

/** The request answered, then the process exited 0 by itself. */
async function assertDrainedAndExited(child: Child, slow: Promise<{ status: number; body: string }>) {
  assert.deepEqual(await slow, { status: 200, body: 'done' }, child.describe());
  const [code, killedBy] = await child.exited;
  assert.equal(killedBy, null, child.describe());
  assert.equal(code, 0, child.describe());
  const order = child.events.map((e) => e.event).filter((e) => e === 'slow-answered' || e === 'exit');
  assert.deepEqual(order, ['slow-answered', 'exit'], child.describe());
}

describe('a signal while mesh.serve() is stopping', () => {
  const children: ChildProcess[] = [];
  after(() => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  });

  const pairs = [
    ['SIGTERM', 'SIGTERM'],
    ['SIGTERM', 'SIGINT'],
    ['SIGINT', 'SIGINT'],
  ] as const;
  for (const [first, again] of pairs) {
    it(`${first}, then ${again} twice during the drain: logged once, ignored; the request answered, exit code 0`, async () => {
      const { child, slow } = await childWithRequestInFlight();
      children.push(child.proc);

      assert.ok(child.proc.kill(first));
      await child.event('log', isLog('graceful stop'));
      assert.ok(child.proc.kill(again));
      const log = await child.event('log', ignored);
      assert.equal(log.signal, again);
      assert.equal(log.stoppingOn, first);
      assert.ok(child.proc.kill(again));

      child.proc.stdin?.write('answer\n');
      await assertDrainedAndExited(child, slow);
      assert.equal(child.events.filter((e) => e.event === 'log' && ignored(e)).length, 1, child.describe());
    });
  }

  it("SIGTERM with the app's own SIGTERM listener awaiting mesh.shutdown(): the request answered, then exit code 0", async () => {
    const { child, slow } = await childWithRequestInFlight({ MESHLET_TEST_APP_HOOK: '1' });
    children.push(child.proc);

    assert.ok(child.proc.kill('SIGTERM'));
    await child.event('log', isLog('graceful stop'));
    child.proc.stdin?.write('answer\n');
    await assertDrainedAndExited(child, slow);
  });
});
