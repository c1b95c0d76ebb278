// Issue 16, items 2 and 3: a rule document can neither kill the processes that read it nor
// silently wipe the rules in force. Real servers on 127.0.0.1; the in-memory store in this
// process, and a directory store read by a child process.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { FileKvStore, InMemoryKvStore, InMemoryRegistry, MemoryLogger, RuleRepository, RuleValidationError, withTags } from '@meshlet/core';
import { listen } from '@meshlet/core/testing';
import { createMesh, type Mesh, ruleKinds } from '../src/index.js';

const CHILD = fileURLToPath(new URL('./fixtures/rules-child.js', import.meta.url));

/** The README's gray release: Chrome to v1.21, everyone else to v1.20. */
const grayRoute = {
  rules: [
    {
      name: 'chrome-to-v1.21',
      when: [{ tag: 'ua.family', op: 'equals', value: 'Chrome' }],
      destinations: [{ group: { version: '1.21.0' }, weight: 100 }],
    },
  ],
  default: [{ group: { version: '1.20.0' }, weight: 100 }],
};
const gray = JSON.stringify({ service: 'orders', route: grayRoute });

/** A document whose breaker fallback body is nested `levels` deep (`[[[…]]]`), about 2 bytes a level. */
function deepFallback(levels: number): string {
  const head = JSON.stringify({
    service: 'orders',
    route: grayRoute,
    breaker: { rules: [{ level: 'service', fallback: { status: 503, body: 0 } }] },
  });
  return head.replace('"body":0', `"body":${'['.repeat(levels)}${']'.repeat(levels)}`);
}

/** Asserts a coded refusal naming a field under `pathPrefix`. */
function refused(pathPrefix: string, limit?: string) {
  return (err: unknown) => {
    assert.ok(err instanceof RuleValidationError, String(err));
    assert.equal(err.code, 'MESHLET_BAD_RULE');
    assert.ok(err.path.startsWith(pathPrefix), `${err.path} does not start with ${pathPrefix}`);
    if (limit) assert.equal(err.limit, limit);
    return true;
  };
}

describe('mesh.rules.apply: a whole valid document, or nothing', () => {
  const registry = new InMemoryRegistry();
  const rules = new InMemoryKvStore();
  const servers: { close(): Promise<void> }[] = [];
  let caller: Mesh;

  before(async () => {
    for (const version of ['1.20.0', '1.21.0']) {
      const server = await listen((_req, res) => res.end(version));
      servers.push(server);
      await registry.register({
        id: `orders-${version}`,
        service: 'orders',
        address: '127.0.0.1',
        port: server.port,
        tags: [],
        metadata: { version },
        health: 'passing',
      });
    }
    caller = createMesh({ service: 'gateway', registry, rules, logger: new MemoryLogger() });
    await caller.rules.apply(gray, { author: 't' });
    await caller.rulesInForce('orders');
  });
  after(async () => {
    await caller.close();
    for (const s of servers) await s.close();
  });

  /** The versions `family` reached in `n` calls. */
  const versions = async (family: string, n = 6) => {
    const seen = new Set<string>();
    for (let i = 0; i < n; i++) {
      const res = await withTags({ 'ua.family': family }, () => caller.fetch('http://orders/'));
      seen.add(await res.text());
    }
    return [...seen].sort();
  };

  it('the gray release is in force', async () => {
    assert.deepEqual(await versions('Firefox'), ['1.20.0']);
    assert.deepEqual(await versions('Chrome'), ['1.21.0']);
  });

  it('refuses an unknown section (a typo) naming it, and the gray release stays in force', async () => {
    const before = await caller.rules.current('orders');
    const historyBefore = (await caller.rules.history('orders')).length;
    const typo = JSON.stringify({ service: 'orders', rout: grayRoute });
    await assert.rejects(caller.rules.apply(typo, { author: 't' }), refused('rout', 'section'));
    assert.throws(() => caller.rules.validate(typo), refused('rout', 'section'));
    assert.deepEqual(await caller.rules.current('orders'), before, 'nothing written');
    assert.equal((await caller.rules.history('orders')).length, historyBefore);
    await caller.rulesInForce('orders');
    assert.deepEqual(await versions('Firefox'), ['1.20.0'], 'Firefox still gets none of v1.21');
    assert.deepEqual(await versions('Chrome'), ['1.21.0']);
  });

  it('refuses a fallback body nested 5,000 levels with a code naming the field, and writes nothing', async () => {
    const before = await caller.rules.current('orders');
    const historyBefore = (await caller.rules.history('orders')).length;
    const text = deepFallback(5000);
    assert.ok(text.length < 11_000, 'about 10 KB');
    await assert.rejects(caller.rules.apply(text, { author: 't' }), refused('breaker.rules[0].fallback.body', 'depth'));
    assert.deepEqual(await caller.rules.current('orders'), before, 'nothing written');
    assert.equal((await caller.rules.history('orders')).length, historyBefore);
    assert.deepEqual(await versions('Chrome'), ['1.21.0']);
  });

  it('accepts a fallback body within the bounds and answers with it, serialised when parsed', async () => {
    const text = deepFallback(20).replace('"level":"service"', '"level":"service","consecutiveFailures":1');
    const parsed = caller.rules.validate(text);
    const breaker = parsed.sections.get('breaker') as { service?: { fallback?: { bodyText?: string | null } } };
    assert.equal(breaker.service?.fallback?.bodyText, `${'['.repeat(20)}${']'.repeat(20)}`);
    await caller.rules.apply(gray, { author: 't' });
  });

  it('uses the one list of rule kinds', () => {
    assert.deepEqual(
      ruleKinds.map((k) => k.name),
      ['route', 'breaker', 'ratelimit', 'auth', 'fault'],
    );
  });
});

describe('a directory store read by another process', () => {
  const dir = mkdtempSync(join(tmpdir(), 'meshlet-rule-safety-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('a document nested 5,000 levels is refused by a reader when written by hand (the reader keeps calling), and by the writer', async () => {
    const upstream = await listen((_req, res) => res.end('ok'));
    const child = spawn(process.execPath, [CHILD], {
      env: { ...process.env, MESHLET_TEST_RULES_DIR: dir, MESHLET_TEST_UPSTREAM_PORT: String(upstream.port) },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr = (stderr + d).slice(-4000);
    });
    const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
    const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
    const next = async (): Promise<Record<string, unknown>> => {
      const r = await lines.next();
      assert.ok(!r.done, `the child exited (stderr: ${stderr})`);
      return JSON.parse(r.value) as Record<string, unknown>;
    };
    try {
      assert.deepEqual(await next(), { event: 'ready', status: 200 });
      const operator = new FileKvStore(dir);
      const repo = new RuleRepository({ kv: operator, kinds: ruleKinds });
      await repo.apply(JSON.stringify({ service: 'orders', route: { rules: [], default: [{ group: {}, weight: 100 }] } }), {
        author: 't',
      });
      child.stdin.write('check\n');
      const good = await next();
      assert.equal(good.status, 200);
      assert.ok((good.rules as { revision: number }).revision > 0, JSON.stringify(good));

      // Written by hand (an editor, another tool), a reader refuses it and keeps the last good rules…
      await operator.put('meshlet/rules/orders', deepFallback(5000));
      child.stdin.write('check\n');
      const after = await next();
      assert.equal(after.status, 200, 'the process keeps calling');
      assert.equal((after.rules as { code?: string }).code, 'MESHLET_RULES_REJECTED', JSON.stringify(after));
      assert.match(String((after.rules as { message?: string }).message), /breaker\.rules\[0\]\.fallback\.body/);
      // …and the writer (the CLI, mesh.rules) refuses it.
      await assert.rejects(repo.apply(deepFallback(5000), { author: 't' }), refused('breaker.rules[0].fallback.body', 'depth'));

      child.stdin.write('exit\n');
      assert.deepEqual(await next(), { event: 'closed' });
      const [code] = await exited;
      assert.equal(code, 0, stderr);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
      await upstream.close();
    }
  });
});
