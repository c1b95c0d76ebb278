// Runs the README's demo and quick start as a newcomer would, so the README stays true.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The `v1.21.0: N` count on the demo line that starts with `label`. */
function count(stdout: string, label: string, version: string): number {
  const line = stdout.split('\n').find((l) => l.trim().startsWith(label)) ?? '';
  const m = new RegExp(`v${version.replaceAll('.', '\\.')}: (\\d+)`).exec(line);
  return m ? Number(m[1]) : 0;
}

async function demo(args: string[], requests: number) {
  const { stdout } = await run(process.execPath, ['examples/dist/demo/main.js', ...args], {
    timeout: 110_000,
    env: { ...process.env, DEMO_REQUESTS: String(requests) },
  });
  return stdout;
}

describe('the demo', () => {
  it('shows each hop, the gray-release split, and the rollback (embedded registry)', async () => {
    const n = 2000;
    const stdout = await demo([], n);
    const hops = stdout.split('\n').filter((l) => /^\s+(gateway|user-service|order-service)\s/.test(l));
    assert.equal(hops.length, 12, stdout);
    assert.match(stdout, /order-service\s+order-1\s+user-service@1\.20\.0\s+ua\.family=Chrome user-tier=vip/);
    const users = hops.filter((l) => l.trim().startsWith('user-service')).map((l) => l.trim().split(/\s+/)[1]);
    assert.deepEqual(new Set(users), new Set(['user-a', 'user-b']), 'both user-service instances serve');
    assert.match(stdout, /order-service\s+order-1\s+user-service@1\.20\.0\s+ua\.family=curl note=a,b ✓/);

    // 20% of the n / 10 Chrome users to v1.21, 10 requests each, within 4 standard deviations
    // of a fair draw of users; no user on both versions (the rule is sticky by user-id).
    const chromeUsers = n / 10;
    const gray = count(stdout, 'Chrome, rule in force', '1.21.0');
    assert.equal(gray % 10, 0, `v1.21 got ${gray} of ${n}: whole users`);
    const sd = Math.sqrt(chromeUsers * 0.2 * 0.8);
    assert.ok(Math.abs(gray / 10 - chromeUsers * 0.2) < 4 * sd, `v1.21 got ${gray / 10} of ${chromeUsers} users`);
    assert.match(stdout, new RegExp(`Chrome users on both versions\\s+0 of ${chromeUsers}\\n`));
    assert.equal(count(stdout, 'Firefox, rule in force', '1.21.0'), 0, 'the rule matches Chrome only');
    assert.equal(count(stdout, 'Firefox, rule in force', '1.20.0'), n / 10);
    // The rollback returns to the rule v1.21 started behind: all traffic on v1.20.
    assert.equal(count(stdout, 'Chrome, after rollback', '1.21.0'), 0, 'v1.21 back to 0%');
    assert.equal(count(stdout, 'Chrome, after rollback', '1.20.0'), n);
  });

  it('runs on a real Consul agent with `npm run demo -- --consul`, as the README says', async () => {
    // Through the npm script: its `sh -c` dropped the arguments once, and the demo ran in memory.
    const { stdout } = await run('npm', ['run', '--silent', 'demo', '--', '--consul'], {
      timeout: 110_000,
      env: { ...process.env, DEMO_REQUESTS: '300' },
    });
    assert.match(stdout, /registry: Consul dev agent/);
    assert.match(stdout, /order-service\s+order-1\s+user-service@1\.20\.0\s+ua\.family=Chrome user-tier=vip/);
    // 30 users, 10 requests each: some on v1.21, and fewer than 4 standard deviations over 20%.
    const gray = count(stdout, 'Chrome, rule in force', '1.21.0');
    assert.ok(gray % 10 === 0 && gray > 0 && gray / 10 < 6 + 4 * Math.sqrt(30 * 0.2 * 0.8), `v1.21 got ${gray} of 300`);
    assert.match(stdout, /Chrome users on both versions\s+0 of 30\n/);
    assert.equal(count(stdout, 'Chrome, after rollback', '1.21.0'), 0);
    assert.equal(count(stdout, 'Chrome, after rollback', '1.20.0'), 300);
  });
});

it('a SIGTERM to the demo on Consul stops its Consul agent too', async () => {
  const child = spawn(process.execPath, ['examples/dist/demo/main.js', '--consul'], {
    env: { ...process.env, DEMO_REQUESTS: '1000000' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = once(child, 'exit');
  // Read on until the agent's address is printed (the stream is read to its end, not cut).
  let out = '';
  const address = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (chunk) => {
      out += String(chunk);
      const m = /registry: Consul dev agent at (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m?.[1] !== undefined) resolve(m[1]);
    });
    child.once('exit', () => reject(new Error(`the demo ended first: ${out}`)));
  });
  const leader = await fetch(`${address}/v1/status/leader`);
  assert.equal(leader.status, 200, 'the agent answers while the demo runs');
  child.kill('SIGTERM');
  const [code] = await exited;
  assert.equal(code, 143);
  // The demo waited for its agent to exit: nothing answers on its port any more.
  await assert.rejects(fetch(`${address}/v1/status/leader`), /fetch failed/);
});

it('the quick start prints the tag the gateway set, as seen by user-service', async () => {
  const { stdout } = await run(process.execPath, ['examples/dist/quickstart/main.js'], { timeout: 30_000 });
  assert.equal(stdout.trim(), 'tier=vip');
});

it('the catalog example reads its OpenAPI JSDoc, publishes the list, and limits by template', async () => {
  const { stdout } = await run(process.execPath, ['examples/dist/catalog/main.js'], { timeout: 30_000 });
  const lines = stdout.trim().split('\n');
  assert.deepEqual(lines.filter((l) => l.startsWith('api: ')).sort(), [
    'api: GET /users/{id} (One user)',
    'api: POST /users (Create a user)',
  ]);
  assert.match(stdout, /registered with apis-hash [0-9a-f]{16}\n/);
  assert.match(stdout, /GET \/users\/1, GET \/users\/2, POST \/users: 200, 429, 201/);
});

it('the axios example retries on the other instance and reports an open breaker', async () => {
  const { stdout } = await run(process.execPath, ['examples/dist/axios/main.js'], { timeout: 30_000 });
  assert.match(stdout, /^served by: inventory-b \(inventory-a's 503s were retried\)$/m);
  assert.match(stdout, /^breaker: MESHLET_CIRCUIT_OPEN \(cause: CircuitOpenError\)$/m);
});

it('the Koa example carries the tag its handler set', async () => {
  const { stdout } = await run(process.execPath, ['examples/dist/koa/main.js'], { timeout: 30_000 });
  assert.deepEqual(stdout.trim().split('\n'), ['user-tier=vip', 'health: 200']);
});

for (const platform of ['express', 'fastify']) {
  it(`the NestJS example (${platform}): tags through HttpService, @RateLimit's 429, graceful stop on SIGTERM`, async () => {
    // The example ends by sending itself SIGTERM; Nest's shutdown hooks re-raise it once closed.
    const stdout = await run(process.execPath, ['examples/nest/dist/main.js', platform], { timeout: 60_000 }).then(
      (r) => r.stdout,
      (err: { signal?: string; stdout?: string; stderr?: string }) => {
        assert.equal(err.signal, 'SIGTERM', err.stderr);
        return err.stdout ?? '';
      },
    );
    const lines = stdout.trim().split('\n');
    assert.equal(lines[0], `${platform}: orders registered: 1`);
    assert.equal(lines[1], 'GET /orders: 200 {"tier":"vip","user":"user 42 (tier seen: vip)"}');
    assert.match(lines[3] ?? '', /^GET \/orders: 429 \{"error":"rate_limited".*"rule":"orders-list"/);
    assert.equal(lines[4], 'stopped on SIGTERM: 0 instance(s) of orders registered');
  });
}

it('the ky and got example carries the tag through both clients', async () => {
  const { stdout } = await run(process.execPath, ['examples/dist/ky-got/main.js'], { timeout: 30_000 });
  assert.deepEqual(stdout.trim().split('\n'), ['ky: tier=gold', 'got: tier=vip']);
});

it('the gRPC example calls a gRPC service by name with the tag in metadata, and stops it gracefully', async () => {
  const { stdout } = await run(process.execPath, ['examples/dist/grpc/main.js'], { timeout: 30_000 });
  assert.equal(stdout.trim(), 'user 42 tier=vip from user-service@1.21.0\ndrained: true');
});
