// Two meshes in one process, each served by mesh.serve(): a signal reaches both, and the
// process exits once the last one's stop is done, not when the first one's is (that cut
// the other's drain and trace flush). A child process (fixtures/two-meshes-child.ts)
// holds a request to its second mesh until the parent writes to its stdin.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type ChildEvent, startChild, WAIT_MS } from './child-events.js';

const CHILD = fileURLToPath(new URL('./fixtures/two-meshes-child.js', import.meta.url));

const ignored = (e: ChildEvent) => e.code === 'MESHLET_SIGNAL_IGNORED';

describe('two meshes served in one process', () => {
  const children: ChildProcess[] = [];
  after(() => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  });

  it("SIGTERM: the process exits 0 once the second mesh's request is answered, not when the first mesh's stop is done; a repeat meanwhile logged once", async () => {
    const child = startChild(CHILD, {}, { stdin: true });
    children.push(child.proc);
    child.proc.stdin?.on('error', () => undefined);
    const served = await child.event('served');
    const slow = fetch(`http://127.0.0.1:${Number(served.port)}/slow`, { signal: AbortSignal.timeout(WAIT_MS) }).then(
      async (res) => ({ status: res.status, body: await res.text() }),
      (err: Error) => ({ status: 0, body: `failed: ${err.message} ${String(err.cause ?? '')}` }),
    );
    await child.event('slow-request');

    assert.ok(child.proc.kill('SIGTERM'));
    await child.event('a-stopped');
    // svc-a is released; the process is still up, svc-b draining. A repeated signal now is
    // ignored, logged once for the process.
    assert.ok(child.proc.kill('SIGTERM'));
    await child.event('log', ignored);

    child.proc.stdin?.write('answer\n');
    assert.deepEqual(await slow, { status: 200, body: 'done' }, child.describe());
    const [code, killedBy] = await child.exited;
    assert.equal(killedBy, null, child.describe());
    assert.equal(code, 0, child.describe());
    const order = child.events.map((e) => e.event).filter((e) => e === 'a-stopped' || e === 'slow-answered' || e === 'exit');
    assert.deepEqual(order, ['a-stopped', 'slow-answered', 'exit'], child.describe());
    const stops = child.events.filter((e) => e.message === 'graceful stop').map((e) => e.service);
    assert.deepEqual(stops.sort(), ['svc-a', 'svc-b'], child.describe());
    assert.equal(child.events.filter(ignored).length, 1, child.describe());
  });
});
