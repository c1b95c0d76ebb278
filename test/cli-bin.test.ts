// The commands as a user runs them: `npx meshlet` in this repository after `npm ci` and a
// build (`npm test` builds first), and in an app that depends on `meshlet` only (the
// workspace packages packed with `npm pack` and installed into a throwaway app, as from
// the registry).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, realpath, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';

const run = promisify(execFile);
const root = resolve('.');
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const version = (JSON.parse(await readFile(join(root, 'packages/sdk/package.json'), 'utf8')) as { version: string }).version;

/** Runs `npx <args>` in `cwd`, offline: only what is installed there may answer. */
async function npx(cwd: string, args: string[]) {
  try {
    const r = await run(npm, ['exec', '--offline', '--no', '--', ...args], { cwd, timeout: 60_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

describe('npx meshlet in this repository', () => {
  it('each command is declared by one package only; `meshlet` by the package meshlet', async () => {
    // npm links the first package that claims a bin name and skips the others, so two
    // packages declaring one command make which one runs depend on install order.
    const owners = new Map<string, string[]>();
    for (const dir of await readdir(join(root, 'packages'))) {
      const pkg = JSON.parse(await readFile(join(root, 'packages', dir, 'package.json'), 'utf8')) as {
        name: string;
        bin?: Record<string, string>;
      };
      for (const command of Object.keys(pkg.bin ?? {})) owners.set(command, [...(owners.get(command) ?? []), pkg.name]);
    }
    const shared = [...owners].filter(([, names]) => names.length > 1);
    assert.deepEqual(shared, [], 'commands declared by more than one package');
    // `npx meshlet` with nothing installed fetches the package meshlet and runs its bin.
    assert.deepEqual(owners.get('meshlet'), ['meshlet']);
    assert.equal(await realpath(join(root, 'node_modules/.bin/meshlet')), join(root, 'packages/sdk/bin/meshlet.js'));
  });

  it('prints its help and version', async () => {
    const help = await npx(root, ['meshlet', '--help']);
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /usage: meshlet <command>/);
    assert.match(help.stdout, /rules rollback/);
    const v = await npx(root, ['meshlet', '--version']);
    assert.equal(v.stdout.trim(), version);
  });

  it('meshlet-config and meshlet-topology run too', async () => {
    const v = await npx(root, ['meshlet-config', '--version']);
    assert.equal(v.code, 0, v.stderr);
    assert.equal(v.stdout.trim(), version);
    const key = await npx(root, ['meshlet-config', 'keygen']);
    assert.equal(Buffer.from(key.stdout.trim(), 'base64').length, 32);
    const topology = await npx(root, ['meshlet-topology', '--help']);
    assert.match(topology.stdout + topology.stderr, /topology/);
  });
});

describe('npx meshlet in an app that depends on meshlet only', () => {
  let app = '';
  before(async () => {
    app = await mkdtemp(join(tmpdir(), 'meshlet-app-'));
    const packs = join(app, 'packs');
    await mkdir(packs);
    // Every workspace package as the registry would serve it (built files only).
    const { stdout } = await run(npm, ['pack', '--workspaces', '--json', '--pack-destination', packs], { cwd: root, timeout: 120_000 });
    const packed = JSON.parse(stdout) as { name: string; filename: string }[];
    const file = (name: string) => `file:${join(packs, packed.find((p) => p.name === name)?.filename ?? name)}`;
    // The @meshlet/* packages are not on the registry: overrides point them at the packs,
    // while the app itself names meshlet alone.
    const overrides = Object.fromEntries(packed.filter((p) => p.name !== 'meshlet').map((p) => [p.name, file(p.name)]));
    await writeFile(
      join(app, 'package.json'),
      JSON.stringify({ name: 'app', private: true, type: 'module', dependencies: { meshlet: file('meshlet') }, overrides }),
    );
    await run(npm, ['install', '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts'], { cwd: app, timeout: 180_000 });
  });
  after(async () => {
    if (app) await rm(app, { recursive: true, force: true });
  });

  it('runs meshlet --help, meshlet --version and meshlet-config --version from the app', async () => {
    const pkg = JSON.parse(await readFile(join(app, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
    assert.deepEqual(Object.keys(pkg.dependencies), ['meshlet']);
    const help = await npx(app, ['meshlet', '--help']);
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /usage: meshlet <command>/);
    assert.equal((await npx(app, ['meshlet', '--version'])).stdout.trim(), version);
    assert.equal((await npx(app, ['meshlet-config', '--version'])).stdout.trim(), version);
  });

  it("checks a rule document with the mesh's rule kinds (the meshlet bin hands them to @meshlet/cli)", async () => {
    await writeFile(join(app, 'orders.json'), JSON.stringify({ service: 'orders', fault: { rules: [] }, rout: {} }));
    const typo = await npx(app, ['meshlet', 'rules', 'validate', 'orders.json']);
    assert.equal(typo.code, 4, typo.stderr);
    assert.match(typo.stderr, /rout/);
    await writeFile(join(app, 'orders.json'), JSON.stringify({ service: 'orders', fault: { rules: [] } }));
    const ok = await npx(app, ['meshlet', 'rules', 'validate', 'orders.json']);
    assert.equal(ok.code, 0, ok.stderr);
  });

  it('imports createMesh and the decorators from meshlet alone', async () => {
    await writeFile(
      join(app, 'main.js'),
      `import { createMesh, CircuitBreaker, RateLimit, Traced, Authorize } from 'meshlet';
const mesh = createMesh({ service: 'app' });
console.log([typeof CircuitBreaker, typeof RateLimit, typeof Traced, typeof Authorize].join(' '), mesh.service);
await mesh.close();`,
    );
    const { stdout } = await run(process.execPath, ['main.js'], { cwd: app, timeout: 30_000 });
    assert.equal(stdout.trim(), 'function function function function app');
  });
});
