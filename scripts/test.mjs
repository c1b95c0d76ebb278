// `npm test`: build, lint, then run every test file with Node's test runner.
// Runs under Node >= 22 (scripts/with-node.sh fetches one when the machine's is older).
// Later suites that need real services (Consul, Redis, the Spring peer) get them
// installed and started from here, so this stays the one command CI runs.
import { spawnSync } from 'node:child_process';
import { globSync } from 'node:fs';

const run = (cmd, args) => {
  console.log(`\n$ ${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
};

run('tsc', ['-b']);
run('biome', ['ci', '.']);

const files = [...globSync('packages/*/dist/test/**/*.test.js'), ...globSync('test/dist/**/*.test.js')].sort();
if (files.length === 0) {
  console.error('no test files found: did the build put them in dist/?');
  process.exit(1);
}
run(process.execPath, ['--test', '--test-timeout=120000', ...process.argv.slice(2), ...files]);
