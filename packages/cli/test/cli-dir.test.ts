// The CLI as a user runs it (a spawned process), on a rule directory: no Consul needed.
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FileKvStore, RULES_HISTORY_PREFIX, RULES_PREFIX, RuleRepository } from '@meshlet/core';
import { RULE_KINDS } from 'meshlet/rule-kinds';
import { type CliIo, COMMANDS, runCli } from '../src/index.js';
import { meshletInProcess as inProcess, meshlet, start } from './run-meshlet.js';

const quietIo: CliIo = { env: {}, out: () => {}, err: () => {}, interactive: false, ask: async () => undefined };

const v1 = { service: 'orders', breaker: { rules: [{ level: 'service', consecutiveFailures: 2 }] } };
const v2 = {
  service: 'orders',
  breaker: { rules: [{ level: 'service', consecutiveFailures: 5 }] },
  route: { rules: [{ name: 'gray', priority: 1, destinations: [{ weight: 100, group: { version: '2.0.0' } }] }] },
};

describe('meshlet rules on a --dir store', () => {
  let dir: string;
  let kvDir: string;
  const file = (name: string) => join(dir, name);
  const store = () => ['--dir', kvDir];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'meshlet-cli-'));
    kvDir = join(dir, 'kv');
    await writeFile(file('v1.json'), JSON.stringify(v1));
    await writeFile(file('v2.json'), JSON.stringify(v2, null, 2));
    await writeFile(file('bad.json'), JSON.stringify({ service: 'orders', breaker: { rules: [{ level: 'service', probes: 'three' }] } }));
    await writeFile(file('typo.json'), JSON.stringify({ service: 'orders', rout: { rules: [] } }));
    await writeFile(
      file('auth-fault.json'),
      JSON.stringify({
        service: 'orders',
        auth: { default: 'deny', rules: [{ name: 'billing', action: 'allow', services: ['billing'] }] },
        fault: { rules: [{ name: 'slow', percentage: 10, delay: 100 }] },
      }),
    );
    await writeFile(file('bad-auth.json'), JSON.stringify({ service: 'orders', auth: { rules: [{ name: 'x', action: 'maybe' }] } }));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('validates offline: a good file passes, a bad one is refused naming the field (exit 4)', async () => {
    const ok = await meshlet(['rules', 'validate', file('v1.json'), file('v2.json')]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /ok: .*v2\.json: orders \[breaker, route\]/);
    const bad = await inProcess(['rules', 'validate', file('v1.json'), file('bad.json')]);
    assert.equal(bad.code, 4);
    assert.match(bad.stderr, /bad\.json: breaker\.rules\[0\]\.probes: must be a number/);
    const json = await inProcess(['rules', 'validate', file('bad.json'), '--json']);
    assert.deepEqual(
      (JSON.parse(json.stdout) as { code: string; path: string }[]).map((r) => `${r.code} ${r.path}`),
      ['MESHLET_BAD_RULE breaker.rules[0].probes'],
    );
  });

  it('checks auth and fault sections as the mesh reads them', async () => {
    const ok = await inProcess(['rules', 'validate', file('auth-fault.json')]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /orders \[auth, fault\]/);
    const bad = await inProcess(['rules', 'validate', file('bad-auth.json')]);
    assert.equal(bad.code, 4);
    assert.match(bad.stderr, /auth\.rules\[0\]\.action/);
  });

  it('refuses a section no kind knows, unless told to store it unchecked', async () => {
    const typo = await inProcess(['rules', 'validate', file('typo.json')]);
    assert.equal(typo.code, 4);
    assert.match(typo.stderr, /rout: unknown rule section \(known: route, breaker, ratelimit, auth, fault\).*\(MESHLET_BAD_RULE\)$/m);
    const allowed = await inProcess(['rules', 'validate', file('typo.json'), '--allow-unknown']);
    assert.equal(allowed.code, 0);
    assert.match(allowed.stdout, /unchecked: rout/);
  });

  it('apply → history → rollback → rollback round trip, each recorded with its author', async () => {
    const a1 = await meshlet(['rules', 'apply', file('v1.json'), ...store()], { MESHLET_AUTHOR: 'alice' });
    assert.equal(a1.code, 0, a1.stderr);
    assert.match(a1.stdout, /\+ {2}"service": "orders"/);
    assert.match(a1.stdout, /applied: orders version 1 .* by alice/);
    const a2 = await meshlet(['rules', 'apply', file('v2.json'), ...store(), '--author', 'bob']);
    assert.equal(a2.code, 0, a2.stderr);
    assert.match(a2.stdout, /-\s+"consecutiveFailures": 2/);
    assert.match(a2.stdout, /\+\s+"consecutiveFailures": 5/);

    const rb = await meshlet(['rules', 'rollback', 'orders', ...store()], { USER: 'carol' });
    assert.equal(rb.code, 0, rb.stderr);
    assert.match(rb.stdout, /rolled back: orders version 3 restores version 1, by carol/);
    const now = await inProcess(['rules', 'get', 'orders', ...store(), '--json']);
    assert.deepEqual((JSON.parse(now.stdout) as { document: unknown }).document, v1);

    const back = await meshlet(['rules', 'rollback', 'orders', '--to', '2', ...store(), '--author', 'dave', '--reason', 'v2 was fine']);
    assert.equal(back.code, 0, back.stderr);
    const recorded = JSON.parse((await inProcess(['rules', 'history', 'orders', ...store(), '--json'])).stdout) as {
      versions: { author: string; reason?: string }[];
    };
    assert.deepEqual(
      recorded.versions.map((v) => v.reason),
      [undefined, undefined, undefined, 'v2 was fine'],
    );
    const history = await meshlet(['rules', 'history', 'orders', ...store()]);
    assert.equal(history.code, 0, history.stderr);
    const lines = history.stdout.trimEnd().split('\n');
    assert.match(lines[0] ?? '', /^VERSION\s+WHEN\s+AUTHOR\s+ACTION\s+CHANGE$/);
    assert.match(lines[1] ?? '', /^1 .* alice\s+apply\s+created: breaker$/);
    assert.match(lines[2] ?? '', /^2 .* bob\s+apply\s+~breaker \+route$/);
    assert.match(lines[3] ?? '', /^3 .* carol\s+rollback to v1\s+~breaker -route$/);
    assert.match(lines[4] ?? '', /^4\* .* dave\s+rollback to v2\s+~breaker \+route$/);
    const old = await inProcess(['rules', 'get', 'orders', '--version', '1', ...store()]);
    assert.deepEqual(JSON.parse(old.stdout), v1);
  });

  it('writes nothing when the file matches the rules in force', async () => {
    const before = (await new FileKvStore(kvDir).get(`${RULES_PREFIX}orders`))?.revision;
    const same = await inProcess(['rules', 'apply', file('v2.json'), ...store()]);
    assert.equal(same.code, 0);
    assert.match(same.stdout, /no change/);
    assert.equal((await new FileKvStore(kvDir).get(`${RULES_PREFIX}orders`))?.revision, before);
    const diff = await inProcess(['rules', 'diff', file('v1.json'), ...store(), '--json']);
    assert.equal((JSON.parse(diff.stdout) as { changed: boolean }).changed, true);
  });

  it('refuses an apply when the rules are no longer at the revision the caller read (exit 3)', async () => {
    const read = JSON.parse((await inProcess(['rules', 'get', 'orders', ...store(), '--json'])).stdout) as { revision: number };
    assert.equal((await inProcess(['rules', 'apply', file('v1.json'), ...store(), '--if-revision', String(read.revision)])).code, 0);
    const stale = await inProcess(['rules', 'apply', file('v2.json'), ...store(), '--if-revision', String(read.revision), '--json']);
    assert.equal(stale.code, 3);
    assert.equal((JSON.parse(stale.stdout) as { error: { code: string } }).error.code, 'MESHLET_RULE_CONFLICT');
    assert.match(stale.stderr, /changed since they were read/);
  });

  it('refuses a rollback when the rules changed while its operator read the diff (exit 3), or are not at --if-revision', async () => {
    const kv = ['--dir', join(dir, 'rollback-race-kv')];
    for (const f of ['v1.json', 'v2.json']) assert.equal((await inProcess(['rules', 'apply', file(f), '--yes', ...kv])).code, 0);
    let err = '';
    // Operator A is shown the diff against revision R and asked; meanwhile B applies.
    const a: CliIo = {
      ...quietIo,
      interactive: true,
      err: (t) => (err += t),
      ask: async () => {
        assert.equal((await inProcess(['rules', 'apply', file('auth-fault.json'), '--yes', ...kv])).code, 0);
        return 'y';
      },
    };
    assert.equal(await runCli(['rules', 'rollback', 'orders', ...kv], a, { kinds: RULE_KINDS }), 3);
    assert.match(err, /changed since they were read/);
    const inForce = JSON.parse((await inProcess(['rules', 'get', 'orders', ...kv, '--json'])).stdout) as {
      revision: number;
      document: unknown;
    };
    assert.deepEqual(Object.keys(inForce.document as object), ['service', 'auth', 'fault'], "B's change stays in force");

    const stale = await inProcess(['rules', 'rollback', 'orders', '--yes', '--if-revision', String(inForce.revision - 1), ...kv]);
    assert.equal(stale.code, 3);
    const current = await inProcess(['rules', 'rollback', 'orders', '--yes', '--if-revision', String(inForce.revision), ...kv]);
    assert.equal(current.code, 0, current.stderr);
  });

  it('checks the version a rollback restores as apply checks a file, in a dry run too, with the same options', async () => {
    const root = join(dir, 'rollback-check-kv');
    const kv = ['--dir', root];
    assert.equal((await inProcess(['rules', 'apply', file('v1.json'), '--yes', ...kv])).code, 0);
    // Version 2 as an older release wrote it: a field the parsers refuse now.
    const old = { service: 'orders', breaker: { rules: [{ level: 'service', consecutiveFailures: 3, retired: true }] } };
    const entry = { version: 2, at: 0, author: 'old-release', action: 'apply', document: JSON.stringify(old) };
    await new FileKvStore(root).put(`${RULES_HISTORY_PREFIX}orders/0000000002`, JSON.stringify(entry));
    assert.equal((await inProcess(['rules', 'apply', file('v2.json'), '--yes', ...kv])).code, 0);
    const before = await new FileKvStore(root).list('meshlet/');
    for (const extra of [['--dry-run'], ['--yes']]) {
      const r = await inProcess(['rules', 'rollback', 'orders', '--to', '2', ...extra, ...kv]);
      assert.equal(r.code, 4, `${extra}: ${r.stdout}`);
      assert.match(r.stderr, /invalid rules: breaker\.rules\[0\]\.retired/);
      assert.doesNotMatch(r.stdout, /dry run/);
    }
    assert.deepEqual(await new FileKvStore(root).list('meshlet/'), before, 'nothing written');

    // A version applied with --allow-unknown rolls back with it, as it was applied.
    assert.equal((await inProcess(['rules', 'apply', file('typo.json'), '--yes', '--allow-unknown', ...kv])).code, 0);
    assert.equal((await inProcess(['rules', 'apply', file('v1.json'), '--yes', ...kv])).code, 0);
    assert.equal((await inProcess(['rules', 'rollback', 'orders', '--yes', ...kv])).code, 4);
    const allowed = await inProcess(['rules', 'rollback', 'orders', '--yes', '--allow-unknown', ...kv]);
    assert.equal(allowed.code, 0, allowed.stderr);
    assert.match(allowed.stdout, /restores version 4/);
  });

  it('rolls one version back to no rules, as the repository does, showing it first; nothing to roll back without history', async () => {
    const root = join(dir, 'rollback-none-kv');
    const kv = ['--dir', root];
    assert.equal((await inProcess(['rules', 'rollback', 'orders', '--to', '0', ...kv])).code, 5, 'no history: no version 0');
    assert.equal((await inProcess(['rules', 'apply', file('v1.json'), '--yes', ...kv])).code, 0);
    const dry = await inProcess(['rules', 'rollback', 'orders', '--dry-run', ...kv]);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /\+\+\+ orders no rules \(version 0, before version 1\)/);
    assert.match(dry.stdout, /-\s+"service": "orders"/);
    const r = await inProcess(['rules', 'rollback', 'orders', '--to', '0', '--yes', ...kv]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /rolled back: orders version 2 restores no rules/);
    assert.equal((await inProcess(['rules', 'get', 'orders', ...kv])).code, 5);
    const again = await inProcess(['rules', 'rollback', 'orders', '--yes', ...kv]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /restores version 1/);
  });

  it('asks before writing with --confirm, and writes nothing on "n" (exit 6)', async () => {
    const history = async () => (await readdir(join(kvDir, 'meshlet', 'rules-history', 'orders'))).length;
    const count = await history();
    const run = start(['rules', 'apply', file('v2.json'), ...store(), '--confirm']);
    await run.waitForOutput('[y/N]');
    run.child.stdin.end('n\n');
    const r = await run.done;
    assert.equal(r.code, 6);
    assert.equal(await history(), count);
  });

  it('refuses an invalid file with the field named and writes nothing', async () => {
    const fresh = join(dir, 'fresh-kv');
    const r = await meshlet(['rules', 'apply', file('bad.json'), '--dir', fresh]);
    assert.equal(r.code, 4);
    assert.match(r.stderr, /invalid rules: breaker\.rules\[0\]\.probes/);
    assert.deepEqual(await new FileKvStore(fresh).list('meshlet/'), []);
  });

  it('history: a stored author is printed without its control characters, and entries that are not versions are named', async () => {
    const kv = new FileKvStore(join(dir, 'hostile-kv'));
    const repo = new RuleRepository({ kv, kinds: RULE_KINDS.map((k) => k.kind) });
    await repo.apply(JSON.stringify(v1), { author: 'alice' });
    // The reviewer's: cursor up one line and erase it, hiding alice's row, then a benign-looking row.
    await repo.apply(JSON.stringify(v2), { author: 'bob\x1b[1A\x1b[2K\r2  2024-01-01 00:00:00Z  alice  apply' });
    await kv.put(`${RULES_HISTORY_PREFIX}orders/0000000003`, 'oops');
    await kv.put(`${RULES_HISTORY_PREFIX}orders/zz\x1b]0;pwned\x07`, '{}');
    const r = await inProcess(['rules', 'history', 'orders', '--dir', join(dir, 'hostile-kv')]);
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stdout + r.stderr, /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/);
    const lines = r.stdout.trimEnd().split('\n');
    assert.equal(lines.length, 3);
    assert.match(lines[1] ?? '', /^1 .* alice +apply/);
    assert.match(lines[2] ?? '', /^2\* .* bob\\x1b\[1A\\x1b\[2K 2 {2}2024/);
    assert.match(r.stderr, /orders: 2 history entries are not a version, skipped \(MESHLET_BAD_RULE_HISTORY\)/);
    assert.match(r.stderr, /rules-history\/orders\/0000000003: not JSON/);
    assert.match(r.stderr, /rules-history\/orders\/zz\\x1b\]0;pwned\\x07: its key does not name a version/);
  });

  it('two operators applying at once on one directory: each apply is recorded or refused (exit 3), none overwritten', async () => {
    const kv = ['--dir', join(dir, 'race-kv')];
    const doc = (rate: number) => JSON.stringify({ service: 'orders', ratelimit: { rules: [{ name: 'r', rate, unit: 'second' }] } });
    let applied = 0;
    for (let round = 0; round < 20; round++) {
      await writeFile(file('race-a.json'), doc(1000 + round));
      await writeFile(file('race-b.json'), doc(2000 + round));
      const runs = await Promise.all(['race-a.json', 'race-b.json'].map((f) => inProcess(['rules', 'apply', file(f), '--yes', ...kv])));
      for (const r of runs) {
        assert.ok(
          r.code === 0 || (r.code === 3 && /MESHLET_RULE_CONFLICT|changed since they were read/.test(r.stderr)),
          `${r.code} ${r.stderr}`,
        );
        if (r.code === 0) applied++;
      }
    }
    const history = await new RuleRepository({ kv: new FileKvStore(join(dir, 'race-kv')), kinds: [] }).history('orders');
    assert.equal(history.length, applied, 'every apply told "applied" has its own version');
  });

  it('says what is missing: no rules, no version, bad usage', async () => {
    assert.equal((await inProcess(['rules', 'get', 'nobody', ...store()])).code, 5);
    assert.equal((await inProcess(['rules', 'rollback', 'orders', '--to', '99', ...store()])).code, 5);
    const usage = await inProcess(['rules', 'apply', ...store()]);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /usage: meshlet rules apply/);
    assert.equal((await inProcess(['rules', 'get', 'orders', '--bogus'])).code, 2);
    assert.equal((await inProcess(['nonsense'])).code, 2);
    // A bad flag is a usage error before any registry is asked (nothing listens on port 1).
    for (const bad of ['0', '2147483648', 'x']) {
      const r = await inProcess(['instances', 'orders', '--consul', 'http://127.0.0.1:1', '--admin-timeout', bad]);
      assert.equal(r.code, 2, `--admin-timeout ${bad}: ${r.stderr}`);
    }
    assert.equal((await inProcess(['rules', 'get', 'orders', '--version', 'x', ...store()])).code, 2);
  });

  it('prints help for every command, with the exit codes', async () => {
    const main = await meshlet(['--help']);
    assert.equal(main.code, 0);
    const spawned = await meshlet(['rules', 'apply', '--help']);
    assert.equal(spawned.code, 0);
    assert.match(spawned.stdout, /^usage: meshlet rules apply/);
    for (const c of COMMANDS) {
      assert.match(main.stdout, new RegExp(`  ${c.words.join(' ')} `));
      // The rest in-process: the same function the binary runs, without a process each.
      let out = '';
      const code = await runCli([...c.words, '--help'], { ...quietIo, out: (t) => (out += t) });
      assert.equal(code, 0, c.words.join(' '));
      assert.match(out, new RegExp(`^usage: meshlet ${c.words.join(' ')}`));
      assert.match(out, /3 conflict/);
    }
  });

  it('a group\'s word alone or with --help lists the group\'s commands (was "unknown command", exit 2)', async () => {
    const help = await inProcess(['rules', '--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /^usage: meshlet rules <command>/);
    for (const c of COMMANDS.filter((c) => c.words[0] === 'rules')) assert.match(help.stdout, new RegExp(`  ${c.words.join(' ')} `));
    assert.doesNotMatch(help.stdout, / {2}services /);
    const bare = await inProcess(['rules']);
    assert.equal(bare.code, 2);
    assert.match(bare.stdout, /^usage: meshlet rules <command>/);
    const unknown = await inProcess(['rules', 'bogus']);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown command "rules bogus"[\s\S]*usage: meshlet rules <command>/);
  });
});
