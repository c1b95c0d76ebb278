#!/usr/bin/env node
// `npx meshlet-config …` in an app that depends on `meshlet` only: the command of @meshlet/config.
import { readFileSync } from 'node:fs';
import { text } from 'node:stream/consumers';
import { runConfigCli } from '@meshlet/config';

const argv = process.argv.slice(2);
if (argv[0] === '--version' || argv[0] === '-v') {
  const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
  process.stdout.write(`${version}\n`);
} else {
  process.exitCode = await runConfigCli(argv, {
    env: process.env,
    readStdin: () => text(process.stdin),
    out: (t) => process.stdout.write(t),
    err: (t) => process.stderr.write(t),
  });
}
