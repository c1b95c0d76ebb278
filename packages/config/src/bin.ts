#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { runConfigCli } from './config-cli.js';

const first = process.argv[2];
if (first === '--version' || first === '-v') {
  // dist/src/bin.js → the package's own package.json.
  const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  process.stdout.write(`${version}\n`);
} else
  process.exitCode = await runConfigCli(process.argv.slice(2), {
    env: process.env,
    readStdin: async (maxChars) => {
      // At most maxChars characters (more is refused): stdin can be a file or a device of any size.
      let text = '';
      process.stdin.setEncoding('utf8');
      for await (const chunk of process.stdin) {
        text += chunk as string;
        if (text.length >= maxChars) {
          process.stdin.destroy();
          break;
        }
      }
      return text;
    },
    out: (t) => process.stdout.write(t),
    err: (t) => process.stderr.write(t),
  });
