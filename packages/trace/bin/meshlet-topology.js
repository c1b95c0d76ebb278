#!/usr/bin/env node
// The `meshlet-topology` command. A file in the source tree (not under dist/), so that npm
// links it at install time, before the first build.
const { topologyCommand } = await import('../dist/src/topology-cli.js');
process.exitCode = await topologyCommand(process.argv.slice(2));
