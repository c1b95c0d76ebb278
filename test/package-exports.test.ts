// Every entry point a package exports loads through require() as well as import(): a CommonJS
// app (NestJS's default `module: commonjs`) loads meshlet with require(), which refuses an ES
// module graph holding a top-level await (ERR_REQUIRE_ASYNC_MODULE). In this repository
// `meshlet` and `@meshlet/*` resolve to the workspace packages, built.
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { it } from 'node:test';

const root = resolve('.');
// Optional peers (axios for meshlet/axios) are installed here as devDependencies.
const require = createRequire(join(root, 'package.json'));

it("require() loads every package's every exported entry point", async () => {
  const specifiers: string[] = [];
  for (const dir of await readdir(join(root, 'packages'))) {
    const pkg = JSON.parse(await readFile(join(root, 'packages', dir, 'package.json'), 'utf8')) as {
      name: string;
      exports: Record<string, unknown>;
    };
    for (const key of Object.keys(pkg.exports)) specifiers.push(key === '.' ? pkg.name : `${pkg.name}${key.slice(1)}`);
  }
  assert.ok(specifiers.length >= 16, `expected the packages' entry points, found ${specifiers.length}`);
  const failed: string[] = [];
  for (const spec of specifiers) {
    try {
      require(spec);
    } catch (err) {
      failed.push(`${spec}: ${(err as NodeJS.ErrnoException).code ?? ''} ${(err as Error).message.split('\n')[0]}`);
    }
  }
  assert.deepEqual(failed, []);
});
