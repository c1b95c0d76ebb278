// mesh.serve() in a worker thread: Node delivers signals to the main thread only, so the
// mesh installs no signal handler there (one would never fire) and says once, with a code,
// that the main thread must call mesh.shutdown(); posted a message, the worker stops
// gracefully (fixtures/worker-serve.ts).
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, describe, it } from 'node:test';
import { Worker } from 'node:worker_threads';
import { WAIT_MS } from './child-events.js';

type WorkerEvent = { event: string; [field: string]: unknown };

describe('mesh.serve() in a worker thread', () => {
  const workers: Worker[] = [];
  after(async () => {
    await Promise.all(workers.map((w) => w.terminate()));
  });

  it('installs no signal handler, logs MESHLET_SIGNALS_NOT_IN_WORKER once, and stops gracefully when the main thread asks', async () => {
    const worker = new Worker(new URL('./fixtures/worker-serve.js', import.meta.url));
    workers.push(worker);
    const events: WorkerEvent[] = [];
    const waiters = new Set<() => void>();
    worker.on('message', (m: WorkerEvent) => {
      events.push(m);
      for (const w of waiters) w();
    });
    const event = (name: string) =>
      new Promise<WorkerEvent>((resolve, reject) => {
        const check = () => {
          const found = events.find((e) => e.event === name);
          if (found === undefined) return;
          waiters.delete(check);
          clearTimeout(timer);
          resolve(found);
        };
        const timer = setTimeout(
          () => reject(new Error(`no "${name}" from the worker within ${WAIT_MS} ms: ${JSON.stringify(events)}`)),
          WAIT_MS,
        );
        waiters.add(check);
        check();
      });
    worker.on('error', (err) => events.push({ event: 'error', message: err.message }));

    const served = await event('served');
    assert.equal(served.signalListeners, 0, JSON.stringify(events));
    const notes = events.filter((e) => e.code === 'MESHLET_SIGNALS_NOT_IN_WORKER');
    assert.equal(notes.length, 1, JSON.stringify(events));
    assert.equal(notes[0]?.level, 'warn');
    assert.equal(notes[0]?.service, 'in-worker');

    worker.postMessage('stop');
    const stopped = await event('stopped');
    assert.deepEqual({ listening: stopped.listening, instances: stopped.instances }, { listening: false, instances: 0 });
    const [code] = await once(worker, 'exit');
    assert.equal(code, 0, JSON.stringify(events));
  });
});
