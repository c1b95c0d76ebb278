// `npm run bench`: every benchmark, one markdown report on stdout (progress on stderr).
//   npm run bench -- route sidecar     only the sections whose name contains a word given
//                                      (a section's whole name picks it alone: grpc, grpc-layers)
//   BENCH_ONLY=route npm run bench     the same, from the environment
//   BENCH_QUICK=1 npm run bench        smoke sizes: every section, a few seconds each
// Sections marked `optIn` (the CPU profile) run only when named. Every section stops
// by itself, talks to 127.0.0.1 only, and a failing one is reported and fails the run
// (exit code 1) without stopping the others.
import { machine } from './harness.js';

if (process.env.BENCH_QUICK === '1') {
  // Sizes of the sections that read their own variables (the others use harness.sized).
  const smoke: Record<string, string> = {
    BENCH_RUNS: '2',
    BENCH_AUTH_OPS: '20000',
    BENCH_BREAKER_CALLS: '20000',
    BENCH_DIALECT_OPS: '5000',
    BENCH_ROUTE_DECISIONS: '20000',
    RATELIMIT_BENCH_SECONDS: '2',
    HEDGE_RUNS: '1',
    ADAPTIVE_ROUNDS: '1',
  };
  for (const [k, v] of Object.entries(smoke)) process.env[k] ??= v;
}

interface Section {
  readonly name: string;
  readonly run: () => Promise<string>;
  readonly optIn?: boolean;
}

// Imported after the environment is set: sections read their sizes when loaded.
const sections: Section[] = [
  { name: 'governed-call', run: (await import('./fetch-overhead.js')).fetchOverhead },
  { name: 'governance-cost', run: (await import('./governance-cost.js')).governanceCost },
  { name: 'decision-cost', run: (await import('./decision-cost.js')).decisionCost },
  { name: 'attempt-promises', run: (await import('./attempt-promises.js')).attemptPromises },
  { name: 'grpc', run: (await import('./grpc-overhead.js')).grpcOverhead },
  { name: 'grpc-layers', run: (await import('./grpc-layers.js')).grpcLayers },
  { name: 'grpc-server', run: (await import('./grpc-server.js')).grpcServer },
  { name: 'grpc-server-stub', run: () => import('./grpc-server-stub.js').then((m) => m.grpcServerStub()) },
  { name: 'grpc-cpu', run: (await import('./grpc-cpu.js')).grpcCpu, optIn: true },
  { name: 'grpc-profile', run: (await import('./grpc-profile.js')).grpcProfile, optIn: true },
  { name: 'sidecar', run: (await import('./sidecar.js')).sidecar },
  { name: 'route-decision', run: (await import('./route-decision.js')).routeDecision },
  { name: 'memory', run: (await import('./memory.js')).memory },
  { name: 'breaker-overhead', run: (await import('./breaker-overhead.js')).breakerOverhead },
  { name: 'breaker-reaction', run: (await import('./breaker-reaction.js')).breakerReaction },
  { name: 'ratelimit-accuracy', run: (await import('./ratelimit-accuracy.js')).ratelimitAccuracy },
  { name: 'consul-propagation', run: (await import('./consul-propagation.js')).consulPropagation },
  { name: 'registry-resync', run: (await import('./registry-resync.js')).registryResync },
  { name: 'registry-scale', run: (await import('./registry-scale.js')).registryScale },
  { name: 'consul-rules-prefix', run: (await import('./consul-rules-prefix.js')).consulRulesPrefix },
  { name: 'trace-overhead', run: (await import('./trace-overhead.js')).traceOverhead },
  { name: 'inbound-trace', run: (await import('./inbound-trace.js')).inboundTrace },
  { name: 'inbound-alloc', run: () => import('./inbound-alloc.js').then((m) => m.inboundAlloc()) },
  { name: 'outbound-alloc', run: () => import('./outbound-alloc.js').then((m) => m.outboundAlloc()) },
  { name: 'trace-split', run: (await import('./trace-split.js')).traceSplit },
  { name: 'targets', run: (await import('./targets.js')).targets },
  { name: 'trace-encode', run: (await import('./trace-encode.js')).traceEncode },
  { name: 'config-reload', run: (await import('./config-reload.js')).configReload },
  { name: 'auth-identity', run: (await import('./auth-identity.js')).authIdentity },
  { name: 'dialects', run: (await import('./dialects.js')).dialectsBench },
  { name: 'card-opossum', run: (await import('./card-opossum.js')).cardOpossum },
  { name: 'card-bottleneck', run: (await import('./card-bottleneck.js')).cardBottleneck },
  { name: 'regex-conditions', run: (await import('./regex-conditions.js')).regexConditions },
  { name: 'adaptive-convergence', run: (await import('./adaptive-convergence.js')).adaptiveConvergence },
  { name: 'adaptive-overload', run: (await import('./adaptive-overload.js')).adaptiveOverload },
  { name: 'hedge-tail', run: (await import('./hedge-tail.js')).hedgeTail },
  { name: 'import-cost', run: (await import('./import-cost.js')).importCost },
  { name: 'profile-governed', run: (await import('./profile-governed.js')).profileGoverned, optIn: true },
];

const words = [...process.argv.slice(2), ...(process.env.BENCH_ONLY ?? '').split(/[\s,]+/)].map((w) => w.toLowerCase()).filter(Boolean);
// A word that is a section's whole name picks that section alone (`grpc` is not also grpc-layers).
const picks = (s: Section, w: string) => s.name === w || (!sections.some((x) => x.name === w) && s.name.includes(w));
const chosen = words.length ? sections.filter((s) => words.some((w) => picks(s, w))) : sections.filter((s) => !s.optIn);
if (chosen.length === 0) {
  console.error(`no section matches ${words.join(', ')}; sections: ${sections.map((s) => s.name).join(', ')}`);
  process.exit(2);
}

const started = process.hrtime.bigint();
const times: [string, string][] = [];
let failed = 0;
console.log(
  `# Meshlet benchmarks\n\n${machine()}${process.env.BENCH_QUICK === '1' ? ' — quick mode (smoke sizes, not for quoting)' : ''}\n`,
);
for (const s of chosen) {
  process.stderr.write(`bench: ${s.name}…\n`);
  const t0 = process.hrtime.bigint();
  try {
    console.log(`${await s.run()}\n`);
  } catch (err) {
    failed++;
    console.log(`## ${s.name}: FAILED\n\n\`\`\`\n${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n\`\`\`\n`);
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  times.push([s.name, seconds.toFixed(1)]);
  process.stderr.write(`bench: ${s.name} done in ${seconds.toFixed(1)} s\n`);
}
const total = (Number(process.hrtime.bigint() - started) / 1e9).toFixed(1);
console.log(`Run time: ${total} s (${times.map(([n, s]) => `${n} ${s} s`).join(', ')}).`);
if (failed > 0) process.exitCode = 1;
