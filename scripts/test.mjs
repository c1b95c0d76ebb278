// `npm test`: build, lint, get the real services the integration tests need, then run
// every test file with Node's test runner. Runs under Node >= 22 (scripts/with-node.sh
// fetches one when the machine's is older). Tests start their own Consul agents and
// Redis servers from the binaries prepared here, on free loopback ports.
import { execFileSync, spawnSync } from 'node:child_process';
import { globSync } from 'node:fs';
import { delimiter, resolve } from 'node:path';

// As under `npm test`, whoever runs this directly: the project's tools first on PATH.
process.env.PATH = `${resolve('node_modules/.bin')}${delimiter}${process.env.PATH}`;

const run = (cmd, args, env = process.env) => {
  console.log(`\n$ ${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { stdio: 'inherit', env });
  if (r.error) console.error(`${cmd}: ${r.error.message}`);
  if (r.status !== 0) process.exit(r.status ?? 1);
};

/** Runs a setup script whose last stdout line is a path; its progress goes to our stderr. */
const prepare = (script, args = []) => {
  console.log(`\n$ ${script} ${args.join(' ')}`);
  const out = execFileSync(script, args, { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });
  return out.trim().split('\n').at(-1);
};

run('tsc', ['-b']);
run('biome', ['ci', '.']);

const env = { ...process.env };
env.MESHLET_CONSUL_BIN ??= prepare('scripts/install-consul.sh');
// The Spring Cloud peers of the interop suite, Boot 3 and Boot 4 (Maven builds, cached by their sources).
env.MESHLET_SPRING_PEER_JAR ??= prepare('scripts/spring-peer.sh', ['boot3']);
env.MESHLET_SPRING_PEER_BOOT4_JAR ??= prepare('scripts/spring-peer.sh', ['boot4']);
// The grpc-java peer of the gRPC interop test (Maven build, cached by its sources).
env.MESHLET_GRPC_PEER_JAR ??= prepare('scripts/grpc-peer.sh');
// The OpenTelemetry Collector the OTLP exporter's test sends to (Go build, cached by its sources).
env.MESHLET_OTELCOL ??= prepare('scripts/otel-collector.sh');
// Chromium for the console's browser tests, from Debian's packages (installed once).
env.MESHLET_CHROMIUM ??= prepare('scripts/chromium.sh');
// One Redis for the distributed rate-limit tests, stopped at exit. On a free port of this
// run's own (as the tests' Consul agents), not a fixed one: a second `npm test` on the
// machine would share a fixed port's Redis and stop it under the first when it ended.
if (!env.MESHLET_REDIS_URL) env.MESHLET_REDIS_URL = await startRedis();

async function startRedis() {
  const { freeLoopbackPorts } = await import('@meshlet/registry/testing');
  for (let attempt = 1; ; attempt++) {
    const [port] = (await freeLoopbackPorts(1)).map(String);
    console.log(`\n$ scripts/redis.sh start ${port}`);
    const r = spawnSync('scripts/redis.sh', ['start', port], { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });
    // 3: someone bound the port between the check and Redis's bind; another port then.
    if (r.status === 3 && attempt < 3) continue;
    if (r.status !== 0) process.exit(r.status ?? 1);
    process.on('exit', () => spawnSync('scripts/redis.sh', ['stop', port], { stdio: 'inherit' }));
    return r.stdout.trim().split('\n').at(-1);
  }
}

// Redis Sentinel from Debian's packages for the failover test (which starts its own set).
prepare('scripts/redis-sentinel.sh', ['install']);

// `--only=<prefix>` keeps the test files under a prefix (`npm run test:interop`); other
// arguments go to node --test.
const only = process.argv.find((a) => a.startsWith('--only='))?.slice('--only='.length);
const passOn = process.argv.slice(2).filter((a) => !a.startsWith('--only='));
// bench/test: the benchmarks' own arithmetic (their statistics), not the benchmarks.
const files = [
  ...globSync('packages/*/dist/test/**/*.test.js'),
  ...globSync('test/dist/**/*.test.js'),
  ...globSync('bench/dist/test/**/*.test.js'),
]
  .filter((f) => only === undefined || f.startsWith(only))
  .sort();
if (files.length === 0) {
  console.error('no test files found: did the build put them in dist/?');
  process.exit(1);
}
// One bound on the whole run: a test file that leaves a handle open (a server a failed
// assertion skipped closing) keeps its process, and the run, waiting; once a CI run waited
// so until its own time limit. Not --test-force-exit: it ends a file once the tests it knows
// of are done, before subtests a test makes later, and counts them passed (seen in a run).
const RUN_LIMIT_MS = 45 * 60_000;
const r = spawnSync(process.execPath, ['--test', '--test-timeout=180000', ...passOn, ...files], {
  stdio: 'inherit',
  env,
  timeout: RUN_LIMIT_MS,
  killSignal: 'SIGKILL',
});
if (r.error?.code === 'ETIMEDOUT' || r.signal === 'SIGKILL')
  console.error(
    `\nthe tests ran past ${RUN_LIMIT_MS / 60_000} minutes and were stopped: a test file likely left something open (a server, a timer) after a failure above`,
  );
process.exitCode = r.status ?? 1;
