// What `npm ci` / `npm install` run in this repository: nothing unreviewed, and no build.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { it } from 'node:test';

const root = resolve('.');
const json = async <T>(file: string) => JSON.parse(await readFile(join(root, file), 'utf8')) as T;

it('every dependency with an install script has a decision in allowScripts (npm ci runs none unreviewed)', async () => {
  const lock = await json<{ packages: Record<string, { hasInstallScript?: boolean; link?: boolean }> }>('package-lock.json');
  const withScripts = Object.entries(lock.packages)
    .filter(([path, p]) => path !== '' && p.hasInstallScript === true && p.link !== true)
    .map(([path]) => path.slice(path.lastIndexOf('node_modules/') + 'node_modules/'.length));
  const { allowScripts = {} } = await json<{ allowScripts?: Record<string, boolean> }>('package.json');
  const decided = new Set(Object.keys(allowScripts).map((key) => key.replace(/(?<=.)@.*$/, '')));
  assert.deepEqual(
    withScripts.filter((name) => !decided.has(name)),
    [],
    'packages whose install scripts npm would run with a warning: add them to allowScripts (true or false) and say why in README',
  );
});

it('installing builds nothing: the root package has no install-time script (npm test and npm run demo build)', async () => {
  const { scripts = {} } = await json<{ scripts?: Record<string, string> }>('package.json');
  for (const hook of ['preinstall', 'install', 'postinstall', 'prepare']) assert.equal(scripts[hook], undefined, hook);
  assert.match(scripts.test ?? '', /test\.mjs/);
  assert.match(await readFile(join(root, 'scripts/test.mjs'), 'utf8'), /run\('tsc', \['-b'\]\)/, 'npm test builds first');
  assert.match(scripts.demo ?? '', /tsc -b &&/, 'npm run demo builds first');
});
