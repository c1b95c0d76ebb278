#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { text as readText } from 'node:stream/consumers';
import { runConfigCli } from './config-cli.js';

const first = process.argv[2];
if (first === '--version' || first === '-v') {
  // dist/src/bin.js → the package's own package.json.
  const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  process.stdout.write(`${version}\n`);
} else
  process.exitCode = await runConfigCli(process.argv.slice(2), {
    env: process.env,
    readStdin: () => readText(process.stdin),
    out: (t) => process.stdout.write(t),
    err: (t) => process.stderr.write(t),
  });
