// CHANGELOG.md names only codes that exist: every `MESHLET_…` it quotes is found in some
// package's source, and every `@meshlet/…` package it names is a package (or the one removed).
import assert from 'node:assert/strict';
import { globSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, it } from 'node:test';

const root = resolve('.');
const changelog = readFileSync(resolve(root, 'CHANGELOG.md'), 'utf8');
const sources = globSync('packages/*/src/**/*.ts', { cwd: root })
  .map((f) => readFileSync(resolve(root, f), 'utf8'))
  .join('\n');
const REMOVED_PACKAGES = new Set(['@meshlet/dialects']);

describe('CHANGELOG.md', () => {
  it('names only MESHLET_* codes and variables that exist in packages/*/src', () => {
    const named = [...new Set([...changelog.matchAll(/`(MESHLET_[A-Z0-9_]+)`/g)].map((m) => m[1] as string))];
    assert.ok(named.length >= 5, `expected the changelog to name codes, found ${named.length}`);
    const missing = named.filter((code) => !new RegExp(`\\b${code}\\b`).test(sources));
    assert.deepEqual(missing, []);
  });

  it('names only packages that exist, or the one it says was removed', () => {
    const names = new Set(
      globSync('packages/*/package.json', { cwd: root }).map(
        (f) => (JSON.parse(readFileSync(resolve(root, f), 'utf8')) as { name: string }).name,
      ),
    );
    const named = [...new Set([...changelog.matchAll(/@meshlet\/[a-z-]+/g)].map((m) => m[0]))];
    const missing = named.filter((n) => !names.has(n) && !REMOVED_PACKAGES.has(n));
    assert.deepEqual(missing, []);
  });
});
