#!/usr/bin/env node
// The `meshlet-config` command. A file in the source tree (not under dist/), so that npm
// links it at install time, before the first build.
await import('../dist/src/bin.js');
