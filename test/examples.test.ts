// Runs the README's demo and quick start as a newcomer would, so the README stays true.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { it } from 'node:test';
import { promisify } from 'node:util';

const run = promisify(execFile);

it('the demo shows each hop, the instance chosen and the tags that arrived', async () => {
  const { stdout } = await run(process.execPath, ['examples/dist/demo/main.js'], { timeout: 60_000 });
  const hops = stdout.split('\n').filter((l) => /^\s+(gateway|user-service|order-service)\s/.test(l));
  assert.equal(hops.length, 12, stdout);
  assert.match(stdout, /order-service\s+order-1\s+user-service@1\.20\.0\s+ua\.family=Chrome user-tier=vip/);
  const userInstances = hops.filter((l) => l.trim().startsWith('user-service')).map((l) => l.trim().split(/\s+/)[1]);
  assert.deepEqual(userInstances, ['user-a', 'user-b', 'user-a', 'user-b'], 'round robin over the two user-service instances');
  assert.match(stdout, /order-service\s+order-1\s+user-service@1\.20\.0\s+ua\.family=curl note=a,b ✓/);
});

it('the quick start prints the tag the gateway set, as seen by user-service', async () => {
  const { stdout } = await run(process.execPath, ['examples/dist/quickstart/main.js'], { timeout: 30_000 });
  assert.equal(stdout.trim(), 'tier=vip');
});
