#!/usr/bin/env node
// The `meshlet-config` command. A file in the source tree (not under dist/), so that npm
// links it at install time, before the first build.
try {
  await import('../dist/src/bin.js');
} catch (err) {
  if (err?.code !== 'ERR_MODULE_NOT_FOUND') throw err;
  process.stderr.write(`meshlet-config: not built yet; run \`npm run build\` first (${err.message})\n`);
  process.exit(1);
}
