// The CLI as a user runs it (a spawned process) against a real Consul agent and a real
// admin endpoint on 127.0.0.1. Fails, never skips, when Consul cannot be started.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CallExecutor, parseBreakerRules } from '@meshlet/breaker';
import { type Instance, ManualClock, RULES_HISTORY_PREFIX, RULES_PREFIX } from '@meshlet/core';
import { listen } from '@meshlet/core/testing';
import { ConsulKvStore, ConsulRegistry } from '@meshlet/registry';
import { type ConsulAgent, startConsulAgent } from '@meshlet/registry/testing';
import { meshlet, start } from './run-meshlet.js';

const ADMIN_TOKEN = 'test-admin-token-0123456789';

/** The SDK's admin handler. Loaded from the sdk's build until the sdk's index exports it. */
type AdminHandlerFactory = (options: {
  token: string;
  instance: () => Instance | undefined;
  status: () => unknown;
  path?: string;
}) => (req: IncomingMessage, res: ServerResponse, next?: () => void) => void;
async function loadAdminHandler(): Promise<AdminHandlerFactory> {
  const url = new URL('./admin-handler.js', import.meta.resolve('meshlet'));
  return ((await import(url.href)) as { createAdminHandler: AdminHandlerFactory }).createAdminHandler;
}

const doc = (failures: number) =>
  JSON.stringify({ service: 'orders', breaker: { rules: [{ level: 'service', consecutiveFailures: failures }] } });

describe('meshlet on a real Consul agent', () => {
  let agent: ConsulAgent;
  let kv: ConsulKvStore;
  let dir: string;
  const file = (name: string) => join(dir, name);
  const consul = () => ['--consul', agent.address];
  // The CLI's 2 s default per admin endpoint is for people; a loaded CI machine can be slower.
  const patientAdmin = ['--admin-timeout', '20000'];

  before(async () => {
    agent = await startConsulAgent();
    kv = new ConsulKvStore({ address: agent.address });
    dir = await mkdtemp(join(tmpdir(), 'meshlet-cli-consul-'));
    for (const n of [2, 3, 4, 5]) await writeFile(file(`v${n}.json`), doc(n));
    await writeFile(file('bad.json'), JSON.stringify({ service: 'orders', breaker: { rules: [{ level: 'sideways' }] } }));
    await writeFile(file('bad-new.json'), JSON.stringify({ service: 'billing', ratelimit: { rules: [{ bogus: 1 }] } }));
  });
  after(async () => {
    await agent?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('apply → history → rollback round trip', async () => {
    assert.equal((await meshlet(['rules', 'apply', file('v2.json'), ...consul()], { MESHLET_AUTHOR: 'alice' })).code, 0);
    const a = await meshlet(['rules', 'apply', file('v3.json'), ...consul(), '--author', 'bob', '--json']);
    assert.equal(a.code, 0, a.stderr);
    const applied = JSON.parse(a.stdout) as { version: number; revision: number; written: boolean };
    assert.deepEqual([applied.version, applied.written], [2, true]);
    assert.equal((await kv.get(`${RULES_PREFIX}orders`))?.revision, applied.revision);

    const rb = await meshlet(['rules', 'rollback', 'orders', ...consul(), '--author', 'carol']);
    assert.equal(rb.code, 0, rb.stderr);
    assert.match(rb.stdout, /-\s+"consecutiveFailures": 3/);
    assert.match(rb.stdout, /\+\s+"consecutiveFailures": 2/);
    assert.equal((await kv.get(`${RULES_PREFIX}orders`))?.value, doc(2));

    const h = await meshlet(['rules', 'history', 'orders', ...consul(), '--json']);
    const history = JSON.parse(h.stdout) as {
      drifted: boolean;
      versions: { version: number; author: string; action: string; restored?: number }[];
    };
    assert.equal(history.drifted, false);
    assert.deepEqual(
      history.versions.map((v) => [v.version, v.author, v.action, v.restored]),
      [
        [1, 'alice', 'apply', undefined],
        [2, 'bob', 'apply', undefined],
        [3, 'carol', 'rollback', 1],
      ],
    );
  });

  it('refuses an apply whose read was overtaken by another apply (compare-and-set, exit 3)', async () => {
    const before = await kv.get(`${RULES_PREFIX}orders`);
    // The first apply reads, shows its diff and waits for confirmation…
    const slow = start(['rules', 'apply', file('v4.json'), ...consul(), '--confirm', '--author', 'slow']);
    await slow.waitForOutput('[y/N]');
    // …meanwhile someone else applies…
    const fast = await meshlet(['rules', 'apply', file('v5.json'), ...consul(), '--author', 'fast']);
    assert.equal(fast.code, 0, fast.stderr);
    // …so the first one's confirmed write must be refused.
    slow.child.stdin.end('y\n');
    const r = await slow.done;
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /orders: the rules changed since they were read; read them again and retry/);
    assert.equal((await kv.get(`${RULES_PREFIX}orders`))?.value, doc(5));
    assert.notEqual((await kv.get(`${RULES_PREFIX}orders`))?.revision, before?.revision);
    const authors = (await kv.list(`${RULES_HISTORY_PREFIX}orders/`)).map((e) => (JSON.parse(e.value) as { author: string }).author);
    assert.deepEqual(authors.slice(-1), ['fast']);
    assert.equal(authors.includes('slow'), false);
  });

  it('refuses an invalid rule file with the field named, and writes nothing', async () => {
    const keys = async () => (await kv.list('meshlet/')).map((e) => `${e.key}@${e.revision}`);
    const before = await keys();
    const bad = await meshlet(['rules', 'apply', file('bad.json'), ...consul(), '--yes']);
    assert.equal(bad.code, 4);
    assert.match(bad.stderr, /breaker\.rules\[0\]\.level: must be one of "service", "api", "instance"/);
    const badNew = await meshlet(['rules', 'apply', file('bad-new.json'), ...consul(), '--json']);
    assert.equal(badNew.code, 4);
    assert.match((JSON.parse(badNew.stdout) as { error: { path: string } }).error.path, /^ratelimit\.rules\[0\]/);
    assert.deepEqual(await keys(), before);
    assert.equal((await meshlet(['rules', 'get', 'billing', ...consul()])).code, 5);
  });

  it('fails with exit 1 and says where when Consul cannot be reached', async () => {
    const r = await meshlet(['rules', 'get', 'orders', '--consul', 'http://127.0.0.1:1']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /unreachable at http:\/\/127\.0\.0\.1:1/);
  });

  describe('services and instances, with state from a real admin endpoint', () => {
    let registry: ConsulRegistry;
    let app: Awaited<ReturnType<typeof listen>>;
    let executor: CallExecutor;

    before(async () => {
      const createAdminHandler = await loadAdminHandler();
      // The orders instance calls payments through a real breaker executor; its admin
      // endpoint reports those breakers. (The SDK's mesh will feed this in the real thing.)
      executor = new CallExecutor({ clock: new ManualClock() });
      executor.setRules('payments', parseBreakerRules({ rules: [{ level: 'instance', consecutiveFailures: 2 }] }, 'breaker'));
      executor.setInstances('payments', ['payments-1', 'payments-2']);
      let self: Instance | undefined;
      const admin = createAdminHandler({
        token: ADMIN_TOKEN,
        instance: () => self,
        status: () => ({
          service: 'orders',
          instance: 'orders-a',
          rules: [{ service: 'payments', revision: 7, rejected: 0 }],
          breakers: executor.snapshot(),
          limiter: {
            allowed: 12,
            refused: 3,
            degraded: false,
            outages: 0,
            degradedDecisions: 0,
            buckets: 1,
            adaptive: {
              limit: 14,
              mode: 'track',
              minRttMs: 12,
              sampleRttMs: 15,
              eventLoopDelayMs: 1,
              probes: 1,
              inFlight: 5,
              admitted: 12,
              refused: 2,
              classes: [],
            },
          },
          registry: { mode: 'consul', degraded: false },
          degraded: { registry: false },
        }),
      });
      app = await listen((req, res) =>
        admin(req, res, () => {
          res.end('UP');
        }),
      );
      registry = new ConsulRegistry({ address: agent.address });
      const meta = { version: '1.4.0', zone: 'zone-a', lane: 'gray', 'meshlet-admin': '/_meshlet' };
      self = {
        id: 'orders-a',
        service: 'orders',
        address: '127.0.0.1',
        port: app.port,
        tags: [],
        metadata: meta,
        health: 'passing',
      };
      await registry.register(self);
      // A second instance with no admin endpoint: listed, with the reason.
      await registry.register({
        id: 'orders-b',
        service: 'orders',
        address: '127.0.0.1',
        port: app.port,
        tags: [],
        metadata: { version: '1.3.0', zone: 'zone-b' },
        health: 'passing',
      });
    });
    after(async () => {
      await registry?.deregister('orders-a');
      await registry?.deregister('orders-b');
      await registry?.close();
      await app?.close();
    });

    const row = (stdout: string, id: string) => stdout.split('\n').find((l) => l.startsWith(`${id} `)) ?? '';

    it('rules apply warns, without refusing, when a route rule sends traffic to a group no instance serves now', async () => {
      await registry.register({
        id: 'shipping-1',
        service: 'shipping',
        address: '127.0.0.1',
        port: app.port,
        tags: [],
        metadata: { version: '1.0.0' },
        health: 'passing',
      });
      try {
        const v1 = [{ group: { version: '1.0.0' }, weight: 100 }];
        await writeFile(
          file('shipping.json'),
          JSON.stringify({
            service: 'shipping',
            route: { rules: [{ name: 'to-v2', destinations: [{ group: { version: '2.0.0' }, weight: 100 }], fallback: v1 }], default: v1 },
          }),
        );
        const warning = `warning: route rule "to-v2" sends traffic to group {"version":"2.0.0"}, which has no instance of shipping in consul ${agent.address} now (MESHLET_ROUTE_GROUP_EMPTY)\n`;
        const dry = await meshlet(['rules', 'apply', file('shipping.json'), ...consul(), '--dry-run']);
        assert.equal(dry.code, 0, dry.stderr);
        assert.equal(dry.stderr, warning, 'the v2 group only: the fallback and the default have shipping-1');
        const applied = await meshlet(['rules', 'apply', file('shipping.json'), ...consul(), '--yes', '--json']);
        assert.equal(applied.code, 0, applied.stderr);
        const out = JSON.parse(applied.stdout) as { written: boolean; warnings?: string[] };
        assert.deepEqual([out.written, out.warnings], [true, [warning.slice('warning: '.length, -1)]]);
        // A rule directory: no registry is known, no warning.
        const local = await meshlet(['rules', 'apply', file('shipping.json'), '--dir', join(dir, 'rules'), '--yes']);
        assert.equal(local.code, 0, local.stderr);
        assert.equal(local.stderr, '');
      } finally {
        await registry.deregister('shipping-1');
      }
    });

    it('rules apply does not warn of a group whose instances carry its metadata as key=value tags (metadataInTags)', async () => {
      // Spring Cloud Hoxton's way: no Meta, the version in a tag. A mesh reading with
      // metadataInTags routes this group; the CLI does not know whether the meshes do.
      const put = (path: string, body?: unknown) =>
        fetch(`${agent.address}${path}`, { method: 'PUT', ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
      const registered = await put('/v1/agent/service/register', {
        ID: 'billing-hox',
        Name: 'billing',
        Address: '127.0.0.1',
        Port: app.port,
        Tags: ['version=2.0.0'],
      });
      assert.equal(registered.status, 200);
      try {
        await writeFile(
          file('billing.json'),
          JSON.stringify({
            service: 'billing',
            route: {
              rules: [
                { name: 'to-v2', destinations: [{ group: { version: '2.0.0' }, weight: 100 }] },
                { name: 'to-v3', destinations: [{ group: { version: '3.0.0' }, weight: 100 }] },
              ],
            },
          }),
        );
        const dry = await meshlet(['rules', 'apply', file('billing.json'), ...consul(), '--dry-run']);
        assert.equal(dry.code, 0, dry.stderr);
        assert.equal(
          dry.stderr,
          `warning: route rule "to-v3" sends traffic to group {"version":"3.0.0"}, which has no instance of billing in consul ${agent.address} now (MESHLET_ROUTE_GROUP_EMPTY)\n`,
          'the v3 group only: v2 is served under the tags reading',
        );
      } finally {
        await put('/v1/agent/service/deregister/billing-hox');
      }
    });

    it('lists services with their instance counts', async () => {
      const r = await meshlet(['services', ...consul()]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^SERVICE\s+INSTANCES\s+PASSING\s+VERSIONS$/m);
      assert.match(r.stdout, /^orders\s+2\s+2\s+1\.3\.0, 1\.4\.0$/m);
    });

    it('shows an instance breaker opening after a failing instance is hit', async () => {
      const env = { MESHLET_ADMIN_TOKEN: ADMIN_TOKEN };
      const closed = await meshlet(['instances', 'orders', ...consul(), ...patientAdmin], env);
      assert.equal(closed.code, 0, closed.stderr);
      assert.match(closed.stdout, /^ID\s+ADDRESS\s+ZONE\s+VERSION\s+LANE\s+HEALTH\s+ADMIN\s+RULES\s+BREAKERS\s+LIMITER$/m);
      assert.match(
        row(closed.stdout, 'orders-a'),
        new RegExp(
          `orders-a\\s+127\\.0\\.0\\.1:${app.port}\\s+zone-a\\s+1\\.4\\.0\\s+gray\\s+passing\\s+ok\\s+payments@7\\s+-\\s+12 allowed, 3 refused, adaptive limit 14, 5 in flight$`,
        ),
      );
      assert.match(row(closed.stdout, 'orders-b'), /zone-b\s+1\.3\.0\s+-\s+passing\s+no endpoint/);

      // payments-1 fails: two 503s in a row open its instance breaker.
      for (let k = 0; k < 2; k++) {
        const res = await executor.call({
          service: 'payments',
          method: 'GET',
          path: '/pay',
          pick: (tried) => (tried.has('payments-1') ? undefined : { id: 'payments-1' }),
          send: async () => new Response('down', { status: 503 }),
        });
        assert.equal(res.status, 503);
      }
      const open = await meshlet(['instances', 'orders', ...consul(), ...patientAdmin], env);
      assert.equal(open.code, 0, open.stderr);
      assert.match(row(open.stdout, 'orders-a'), /payments\[payments-1\] open/);

      const json = await meshlet(['instances', 'orders', ...consul(), ...patientAdmin, '--json'], env);
      const rows = JSON.parse(json.stdout) as {
        instance: { id: string };
        admin: { ok: boolean; status?: { breakers: { state: string }[] } };
      }[];
      const a = rows.find((r) => r.instance.id === 'orders-a');
      assert.deepEqual(
        a?.admin.status?.breakers.map((b) => b.state),
        ['open'],
      );
    });

    it('sends a registration pointing at a stranger a token that opens no real instance, never the secret', async () => {
      // Whoever can register in Consul points two instances at their own listener: one at
      // its address, one at the real instance's address with the admin port set to theirs.
      const stolen: string[] = [];
      const trap = await listen((req, res) => {
        stolen.push(req.headers.authorization ?? '');
        res.end('{}');
      });
      const evil = (id: string, port: number, where: string) =>
        registry.register({
          id,
          service: 'orders',
          address: '127.0.0.1',
          port,
          tags: [],
          metadata: { 'meshlet-admin': where },
          health: 'passing',
        });
      await evil('orders-evil', trap.port, '/x');
      await evil('orders-evil-port', app.port, `:${trap.port}/x`);
      try {
        const r = await meshlet(['instances', 'orders', ...consul(), ...patientAdmin], { MESHLET_ADMIN_TOKEN: ADMIN_TOKEN });
        assert.equal(r.code, 0, r.stderr);
        assert.match(row(r.stdout, 'orders-a'), /passing\s+ok\s+payments@7/);
        assert.equal(stolen.length, 2);
        for (const authorization of stolen) {
          assert.match(authorization, /^Bearer [0-9a-f]{64}$/);
          assert.equal(authorization.includes(ADMIN_TOKEN), false);
          const replayed = await fetch(`http://127.0.0.1:${app.port}/_meshlet/status`, { headers: { authorization } });
          assert.equal(replayed.status, 401, 'a stolen token opened the real instance');
        }
      } finally {
        await registry.deregister('orders-evil');
        await registry.deregister('orders-evil-port');
        await trap.close();
      }
    });

    it('shows why an admin endpoint said nothing: no token, a wrong token', async () => {
      const none = await meshlet(['instances', 'orders', ...consul(), ...patientAdmin]);
      assert.match(row(none.stdout, 'orders-a'), /passing\s+no token\s+-\s+-\s+-$/);
      const wrong = await meshlet(['instances', 'orders', ...consul(), ...patientAdmin, '--admin-token', 'not-the-token-at-all']);
      assert.match(row(wrong.stdout, 'orders-a'), /passing\s+unauthorized/);
      assert.equal((await meshlet(['instances', 'nobody', ...consul()])).code, 5);
    });
  });
});
