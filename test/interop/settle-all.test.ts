// settleAll, which starts Spring peers side by side: when one start fails, the ones that
// started are stopped (a JVM left running kept the test process alive until its timeout).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { settleAll } from './spring-peer.js';

describe('settleAll', () => {
  const started = (name: string, stopped: string[]) => Promise.resolve({ name, stop: async () => void stopped.push(name) });

  it('returns every started value, in order, and stops none', async () => {
    const stopped: string[] = [];
    const all = await settleAll([started('a', stopped), started('b', stopped)]);
    assert.deepEqual(
      all.map((p) => p.name),
      ['a', 'b'],
    );
    assert.deepEqual(stopped, []);
  });

  it('stops the ones that started when another fails, and throws the failure', async () => {
    const stopped: string[] = [];
    const failure = new Error('spring peer b exited (1) before it was ready');
    await assert.rejects(settleAll([started('a', stopped), Promise.reject(failure), started('c', stopped)]), failure);
    assert.deepEqual(stopped.sort(), ['a', 'c']);
  });
});
