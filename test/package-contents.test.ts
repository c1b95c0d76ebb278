// What the packages ship: the files a user's tools read are all in them.
import assert from 'node:assert/strict';
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
