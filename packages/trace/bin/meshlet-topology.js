#!/usr/bin/env node
// The `meshlet-topology` command. A file in the source tree (not under dist/), so that npm
// links it at install time, before the first build.
let cli;
try {
  cli = await import('../dist/src/topology-cli.js');
} catch (err) {
  if (err?.code !== 'ERR_MODULE_NOT_FOUND') throw err;
  process.stderr.write(`meshlet-topology: not built yet; run \`npm run build\` first (${err.message})\n`);
  process.exit(1);
}
process.exitCode = await cli.topologyCommand(process.argv.slice(2));
