#!/usr/bin/env node
// `npx meshlet …` in an app that depends on `meshlet` only: the command of @meshlet/cli,
// reporting this package's version.
import { readFileSync } from 'node:fs';
import { processIo, runCli } from '@meshlet/cli';

const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
process.exitCode = await runCli(process.argv.slice(2), processIo(), { version });
