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
