// @grpc/grpc-js is an optional peer of meshlet: without it, meshlet loads and governs HTTP,
// and what needs gRPC says what to install. Run in a child process whose resolver finds no
// @grpc/grpc-js (this repository has it installed).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { it } from 'node:test';

const CHILD = `
import { registerHooks } from 'node:module';
registerHooks({
  resolve(specifier, context, next) {
    if (specifier === '@grpc/grpc-js' || specifier.startsWith('@grpc/grpc-js/'))
      throw Object.assign(new Error("Cannot find module '" + specifier + "'"), { code: 'MODULE_NOT_FOUND' });
    return next(specifier, context);
  },
});
const { createMesh } = await import('meshlet');
const mesh = createMesh({ service: 'web' });
const seen = {};
try { mesh.grpc; } catch (err) { seen.grpc = [err.code, err.message]; }
try { createMesh({ service: 'web', grpc: { channels: { maxChannels: 4 } } }); } catch (err) { seen.option = [err.code, err.message]; }
await mesh.close();
process.stdout.write(JSON.stringify(seen));
`;

it('without @grpc/grpc-js, meshlet loads; mesh.grpc and the grpc option name the package to install', () => {
  const run = spawnSync(process.execPath, ['--input-type=module', '-e', CHILD], { encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
  const seen = JSON.parse(run.stdout) as Record<string, [string, string]>;
  assert.equal(seen.grpc?.[0], 'MESHLET_GRPC_NOT_INSTALLED');
  assert.match(seen.grpc?.[1] ?? '', /^mesh\.grpc needs @grpc\/grpc-js.*npm install @grpc\/grpc-js$/);
  assert.equal(seen.option?.[0], 'MESHLET_BAD_OPTION');
  assert.match(seen.option?.[1] ?? '', /grpc.*npm install @grpc\/grpc-js/);
});
