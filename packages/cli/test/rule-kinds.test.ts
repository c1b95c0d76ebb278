import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';
import { ruleKinds } from 'meshlet';
import { RULE_KINDS } from 'meshlet/rule-kinds';
import { NO_RULE_KINDS, runCli } from '../src/index.js';
import { meshlet } from './run-meshlet.js';

it('the CLI checks exactly the rule kinds a mesh reads, each with a published schema', () => {
  assert.deepEqual(
    RULE_KINDS.map((c) => c.kind.name),
    ruleKinds.map((k) => k.name),
  );
  for (const c of RULE_KINDS) assert.ok(c.schema, `${c.kind.name}: no schema`);
});

it("the meshlet bin hands the CLI the mesh's kinds: a section of each is checked, an unknown one refused", async () => {
  const dir = await mkdtemp(join(tmpdir(), 'meshlet-kinds-'));
  try {
    const file = join(dir, 'orders.json');
    await writeFile(
      file,
      JSON.stringify({
        service: 'orders',
        route: { rules: [] },
        breaker: { rules: [{ level: 'service', consecutiveFailures: 5 }] },
        ratelimit: { rules: [{ name: 'all', rate: 10, unit: 'second' }] },
        auth: { rules: [] },
        fault: { rules: [] },
      }),
    );
    const ok = await meshlet(['rules', 'validate', file]);
    assert.equal(ok.code, 0, ok.stderr);
    await writeFile(file, JSON.stringify({ service: 'orders', rout: {} }));
    const typo = await meshlet(['rules', 'validate', file]);
    assert.equal(typo.code, 4, typo.stderr);
    assert.match(typo.stderr, /rout/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

it('without kinds from its host, a command that checks rules says where they come from; the others run', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'meshlet-kinds-'));
  const file = join(dir, 'orders.json');
  await writeFile(file, JSON.stringify({ service: 'orders' }));
  let err = '';
  let out = '';
  const io = {
    env: {},
    out: (t: string) => {
      out += t;
    },
    err: (t: string) => {
      err += t;
    },
    interactive: false,
    ask: async () => undefined,
  };
  try {
    assert.equal(await runCli(['rules', 'validate', file, '--json'], io), 1);
    assert.match(out, new RegExp(NO_RULE_KINDS));
    assert.match(err, /npx meshlet/);
    assert.equal(await runCli(['--help'], io), 0);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
