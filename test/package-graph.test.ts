// The packages' dependency graph, as npm installs it for a user (dependencies and peer
// dependencies, not devDependencies): no cycle. `meshlet` depends on `@meshlet/cli` for its
// bin, so the CLI takes the rule kinds from the bin instead of depending on `meshlet`.
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { it } from 'node:test';

const root = resolve('.');

it('no workspace package depends, through others, on itself', async () => {
  const edges = new Map<string, string[]>();
  for (const dir of await readdir(join(root, 'packages'))) {
    const pkg = JSON.parse(await readFile(join(root, 'packages', dir, 'package.json'), 'utf8')) as {
      name: string;
      dependencies?: Record<string, string>;
      peerDependencies?: Record<string, string>;
    };
    edges.set(pkg.name, [...Object.keys(pkg.dependencies ?? {}), ...Object.keys(pkg.peerDependencies ?? {})]);
  }
  const cycles: string[] = [];
  const visit = (name: string, path: readonly string[]) => {
    for (const next of edges.get(name) ?? []) {
      if (!edges.has(next)) continue; // not a workspace package
      if (path.includes(next)) cycles.push([...path.slice(path.indexOf(next)), next].join(' → '));
      else visit(next, [...path, next]);
    }
  };
  for (const name of edges.keys()) visit(name, [name]);
  assert.deepEqual([...new Set(cycles)], []);
});

it("each package's source imports the workspace packages its package.json depends on, and no other", async () => {
  const workspace = new Set<string>();
  const manifests = new Map<string, { name: string; dependencies?: Record<string, string>; peerDependencies?: Record<string, string> }>();
  for (const dir of await readdir(join(root, 'packages'))) {
    const pkg = JSON.parse(await readFile(join(root, 'packages', dir, 'package.json'), 'utf8'));
    workspace.add(pkg.name);
    manifests.set(dir, pkg);
  }
  // `from '<spec>'` and `import('<spec>')` with a literal: a subpath counts as its package.
  const IMPORT = /(?:from\s+|import\()\s*'((?:@meshlet\/)?[a-z-]+)(?:\/[^']*)?'/g;
  const problems: string[] = [];
  for (const [dir, pkg] of manifests) {
    const declared = new Set(
      [...Object.keys(pkg.dependencies ?? {}), ...Object.keys(pkg.peerDependencies ?? {})].filter((d) => workspace.has(d)),
    );
    const imported = new Set<string>();
    // What a user installs runs: the source, and the bin scripts (`meshlet`'s runs the CLI).
    for (const sub of ['src', 'bin']) {
      const folder = join(root, 'packages', dir, sub);
      const files = await readdir(folder, { recursive: true }).catch(() => [] as string[]);
      for (const file of files) {
        if (!/\.[mc]?[jt]s$/.test(file) || file.endsWith('.d.ts')) continue;
        for (const m of (await readFile(join(folder, file), 'utf8')).matchAll(IMPORT))
          if (m[1] !== undefined && workspace.has(m[1]) && m[1] !== pkg.name) imported.add(m[1]);
      }
    }
    for (const d of imported) if (!declared.has(d)) problems.push(`${pkg.name} imports ${d} without depending on it`);
    for (const d of declared) if (!imported.has(d)) problems.push(`${pkg.name} depends on ${d} and never imports it`);
  }
  assert.deepEqual(problems, []);
});

it('@grpc/grpc-js is an optional peer of every package that loads it, never a dependency: the app has one copy', async () => {
  // A dependency gave a package its own copy beside an app's at another version, and the
  // two refuse each other's objects: "Channel credentials must be a ChannelCredentials object".
  const problems: string[] = [];
  for (const dir of await readdir(join(root, 'packages'))) {
    const pkg = JSON.parse(await readFile(join(root, 'packages', dir, 'package.json'), 'utf8')) as {
      name: string;
      dependencies?: Record<string, string>;
      peerDependencies?: Record<string, string>;
      peerDependenciesMeta?: Record<string, { optional?: boolean }>;
    };
    const source = await readdir(join(root, 'packages', dir, 'src'), { recursive: true });
    let loads = false;
    for (const file of source)
      if (file.endsWith('.ts') && (await readFile(join(root, 'packages', dir, 'src', file), 'utf8')).includes("'@grpc/grpc-js"))
        loads = true;
    if (pkg.dependencies?.['@grpc/grpc-js'] !== undefined) problems.push(`${pkg.name} depends on @grpc/grpc-js`);
    if (loads && (pkg.peerDependencies?.['@grpc/grpc-js'] === undefined || pkg.peerDependenciesMeta?.['@grpc/grpc-js']?.optional !== true))
      problems.push(`${pkg.name} loads @grpc/grpc-js without it as an optional peer`);
  }
  assert.deepEqual(problems, []);
});

it("every package declares the root's Node.js versions, and no dependency asks for a later one", async () => {
  // OpenTelemetry 3 (under @meshlet/trace, so under meshlet) needs 22.15: packages saying >=22
  // let npm install them on 22.12, with EBADENGINE warnings.
  type Manifest = { name: string; engines?: { node?: string }; dependencies?: Record<string, string> };
  const json = async (file: string) => JSON.parse(await readFile(join(root, file), 'utf8')) as Manifest;
  const lowest = (range: string | undefined) =>
    /^>=\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?$/
      .exec(range?.trim() ?? '')
      ?.slice(1)
      .map((n) => Number(n ?? 0));
  const wanted = (await json('package.json')).engines?.node;
  const ours = lowest(wanted);
  assert.ok(ours, `the root's engines.node is a >= range: ${wanted}`);
  const problems: string[] = [];
  for (const dir of await readdir(join(root, 'packages'))) {
    const pkg = await json(join('packages', dir, 'package.json'));
    if (pkg.engines?.node !== wanted) problems.push(`${pkg.name} says ${pkg.engines?.node}`);
    for (const dep of Object.keys(pkg.dependencies ?? {})) {
      const theirs = lowest((await json(join('node_modules', dep, 'package.json'))).engines?.node);
      if (theirs && theirs.join('.') !== ours.join('.') && theirs.reduce((c, n, k) => c || n - (ours[k] ?? 0), 0) > 0)
        problems.push(`${pkg.name}'s dependency ${dep} needs ${theirs.join('.')}`);
    }
  }
  assert.deepEqual(problems, []);
});
