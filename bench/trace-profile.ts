// What tracing at 100% adds to `mesh.request` on the event loop: the governed request at
// concurrency 50 with tracing into the trace log and with tracing off, each profiled in
// a child under --cpu-prof (profile-governed.ts's profileChild); self time per request by
// package and the functions tracing adds. Small enough to run by hand:
//   node bench/dist/trace-profile.js
import { fileURLToPath } from 'node:url';
import { governedClient } from './governed-client.js';
import { fmt, load, machine, sized, startUpstream, stopUpstream, table } from './harness.js';
import { profileChild, withoutProfilerFlags } from './profile-governed.js';

const REQUESTS = sized('BENCH_PROFILE_REQUESTS', 40_000, 4_000);
/** BENCH_PROFILE_CONCURRENCY=1: the same profile one request at a time. */
const CONCURRENCY = sized('BENCH_PROFILE_CONCURRENCY', 50, 50);
const TOP = 30;

async function child(kind: string): Promise<void> {
  process.execArgv.splice(0, process.execArgv.length, ...withoutProfilerFlags(process.execArgv));
  const { port, child: up } = await startUpstream();
  const client = await governedClient({ port, tracing: kind === 'traced' });
  await load(client.request, 3000, 50);
  const r = await load(client.request, REQUESTS, CONCURRENCY);
  process.stderr.write(`${kind}: ${fmt(r.rps)} req/s, ${fmt(r.cpuPerRequestUs, 1)} µs CPU per request\n`);
  await client.close();
  await stopUpstream(up);
}

export function traceProfile(): string {
  const script = fileURLToPath(import.meta.url);
  const off = profileChild(script, 'off', 'request');
  const on = profileChild(script, 'traced', 'request');
  const perReq = (us: number) => fmt(us / (REQUESTS + 3000), 2);
  const offOwners = new Map(off.result.byOwner);
  const owners = on.result.byOwner
    .slice(0, 12)
    .map(([o, t]) => [o, perReq(offOwners.get(o) ?? 0), perReq(t), perReq(t - (offOwners.get(o) ?? 0))]);
  const offFns = new Map(off.result.byFn);
  const fns = on.result.byFn
    .map(([f, t]) => [f, t, t - (offFns.get(f) ?? 0)] as const)
    .sort((a, b) => b[2] - a[2])
    .slice(0, TOP)
    .map(([f, t, added]) => [`\`${f}\``, perReq(offFns.get(f) ?? 0), perReq(t), perReq(added)]);
  return [
    `## Profile of \`mesh.request\`, tracing off vs 100% into the trace log (node --cpu-prof, concurrency ${CONCURRENCY})`,
    '',
    `${machine()}; ${fmt(REQUESTS)} requests after 3 000 of warm-up. Measured CPU per request: off ${fmt(off.cpuUs, 1)} µs, traced ${fmt(on.cpuUs, 1)} µs. Self time in µs per request.`,
    '',
    table(['part of the stack', 'off', 'traced', 'added'], owners),
    '',
    `Top ${TOP} functions by self time added (traced minus off):`,
    '',
    table(['function', 'off', 'traced', 'added'], fns),
  ].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const at = process.argv.indexOf('--child');
  if (at >= 0) await child(process.argv[at + 1] as string);
  else console.log(traceProfile());
}
