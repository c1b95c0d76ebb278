// A retry's backoff keeps a script alive: found by the axios example, whose only pending
// work during a backoff was the governed call, and which exited in the middle of it.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { it } from 'node:test';
import { fileURLToPath } from 'node:url';

it('a governed call in its retry backoff keeps a script alive until it is answered', () => {
  // The first attempt answers 503, the retry policy waits 50 ms, the second answers 200:
  // during the backoff nothing else holds the process.
  const breaker = fileURLToPath(new URL('../src/index.js', import.meta.url));
  const code = `import { CallExecutor, parseBreakerRules } from ${JSON.stringify(breaker)};
const executor = new CallExecutor();
executor.setRules('orders', parseBreakerRules({ retry: { maxRetries: 1, backoff: { baseMs: 50, maxMs: 50 } } }, 'breaker'));
let n = 0;
const res = await executor.call({ service: 'orders', method: 'GET', pick: (tried) => ({ id: tried.has('a') ? 'b' : 'a' }), send: async () => new Response('', { status: ++n === 1 ? 503 : 200 }) });
console.log(res.status, n);`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, '200 2\n');
});
