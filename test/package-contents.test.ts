// What the packages ship: the files a user's tools read are all in them.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { globSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { it } from 'node:test';

const root = resolve('.');

it("every shipped source map holds its sources' text (src/ is not shipped)", () => {
  // Without it `node --enable-source-maps` named ../../src/*.ts files a user does not have.
  const maps = globSync('packages/*/dist/src/**/*.js.map', { cwd: root });
  assert.ok(maps.length >= 100, `expected the packages' source maps, found ${maps.length}`);
  const without = maps.filter((file) => {
    const map = JSON.parse(readFileSync(resolve(root, file), 'utf8')) as { sources: string[]; sourcesContent?: (string | null)[] };
    return map.sourcesContent?.length !== map.sources.length || map.sourcesContent.some((text) => typeof text !== 'string');
  });
  assert.deepEqual(without, []);
});

it("every package's tarball holds LICENSE, README.md and dist/src, and no tests", () => {
  // `npm pack --dry-run` lists what `npm publish` would send, built from the files here.
  const packs = JSON.parse(
    execFileSync('npm', ['pack', '--dry-run', '--json', '--workspaces'], {
      cwd: root,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }),
  ) as { name: string; files: { path: string }[] }[];
  const license = readFileSync(resolve(root, 'LICENSE'), 'utf8');
  assert.match(license, /^\s+Apache License\s+Version 2\.0, January 2004/);
  assert.match(license, /END OF TERMS AND CONDITIONS/);
  assert.equal(packs.length, globSync('packages/*/package.json', { cwd: root }).length);
  const problems: string[] = [];
  for (const { name, files } of packs) {
    const paths = files.map((f) => f.path);
    for (const wanted of ['LICENSE', 'README.md', 'package.json', 'dist/src/index.js', 'dist/src/index.d.ts'])
      if (!paths.includes(wanted)) problems.push(`${name} lacks ${wanted}`);
    for (const path of paths) if (path.startsWith('dist/test/') || path.endsWith('.tsbuildinfo')) problems.push(`${name} ships ${path}`);
  }
  for (const dir of globSync('packages/*/', { cwd: root }))
    if (readFileSync(resolve(root, dir, 'LICENSE'), 'utf8') !== license) problems.push(`${dir}LICENSE is not the root's`);
  assert.deepEqual(problems, []);
});
