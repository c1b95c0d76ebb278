#!/usr/bin/env node
import { text } from 'node:stream/consumers';
import { runConfigCli } from './config-cli.js';

process.exitCode = await runConfigCli(process.argv.slice(2), {
  env: process.env,
  readStdin: () => text(process.stdin),
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
});
