#!/usr/bin/env node
// `npx meshlet …` in an app that depends on `meshlet` only: the command of @meshlet/cli,
// reporting this package's version and checking rules with this package's one list of
// rule kinds (meshlet/rule-kinds, loaded only by the commands that check rules). The one
// package that declares the `meshlet` bin; @meshlet/cli does not depend on meshlet.
import { readFileSync } from 'node:fs';

let cli;
try {
  cli = await import('@meshlet/cli');
} catch (err) {
  if (err?.code !== 'ERR_MODULE_NOT_FOUND') throw err;
  // Only in a source checkout before its first build (a published package ships dist/).
  process.stderr.write(`meshlet: not built yet; run \`npm run build\` first (${err.message})\n`);
  process.exit(1);
}
const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
const kinds = async () => (await import('../dist/src/rule-kinds.js')).RULE_KINDS;
process.exitCode = await cli.runCli(process.argv.slice(2), cli.processIo(), { version, kinds });
