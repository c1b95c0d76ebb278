// Where the governed call's time goes: runs the full governed fetch (governed-client.ts,
// tracing 100%) at concurrency 50 in a child started with `node --cpu-prof`, then reads
// the profile and prints self time by function and by package. The raw fetch is profiled
// the same way first, so the table shows what governance adds on top of undici.
//   node bench/dist/profile-governed.js            both profiles, tables on stdout
//   PROFILE_KEEP=1 ...                             keeps the .cpuprofile files (open in Chrome DevTools)
//   PROFILE_KIND=request ...                       profiles `mesh.request` (the undici fast path) instead of `mesh.fetch`
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { governedClient } from './governed-client.js';
import { fmt, load, machine, sized, startUpstream, stopUpstream, table } from './harness.js';

const REQUESTS = sized('BENCH_PROFILE_REQUESTS', 30_000, 4_000);
const TOP = 25;

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
export interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** Which part of the stack a script belongs to. */
function owner(url: string, fn: string): string {
  if (url === '') return fn.startsWith('(') ? fn : '(native / V8)';
  const pkg = /packages\/([a-z-]+)\/dist/.exec(url);
  if (pkg) return `@meshlet/${pkg[1]}`;
  const mod = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (mod) return mod[1] ?? url;
  if (url.startsWith('node:internal/deps/undici')) return 'undici (fetch)';
  if (url.startsWith('node:')) return `node:${url.slice(5).split('/').slice(0, 2).join('/')}`;
  if (url.includes('/bench/dist/')) return 'bench driver';
  return url;
}

/** A sample weighs at most this many of the profile's median intervals (see `sampleWeights`). */
export const MAX_SAMPLE_INTERVALS = 4;

/**
 * Each sample's weight in µs: its time delta, capped at MAX_SAMPLE_INTERVALS times the
 * profile's median delta. V8 stamps a sample with the wall time since the one before, so a
 * sample taken after the process was descheduled carries the whole gap: on a loaded
 * machine one delta of 190 ms (six samples) put 5.8 µs a request on node:net's
 * `undestroy`, the top row of a `mesh.request` profile, where the rest of the run had
 * none. Capped, a sample counts as about one interval of CPU, which it is.
 */
export function sampleWeights(timeDeltas: readonly number[]): number[] {
  const sorted = timeDeltas.filter((d) => d > 0).sort((a, b) => a - b);
  const median = sorted[sorted.length >> 1] ?? 0;
  const cap = median * MAX_SAMPLE_INTERVALS;
  return timeDeltas.map((d) => Math.max(0, Math.min(d, cap)));
}

export function analyse(profile: CpuProfile): { total: number; byFn: [string, number][]; byOwner: [string, number][] } {
  const self = new Map<number, number>();
  const weights = sampleWeights(profile.timeDeltas);
  for (const [i, id] of profile.samples.entries()) self.set(id, (self.get(id) ?? 0) + (weights[i] ?? 0));
  const byFn = new Map<string, number>();
  const byOwner = new Map<string, number>();
  let total = 0;
  for (const n of profile.nodes) {
    const t = self.get(n.id) ?? 0;
    if (t === 0) continue;
    const { functionName, url, lineNumber } = n.callFrame;
    if (functionName === '(idle)') continue;
    total += t;
    const file = url.replace(/^.*\/(packages|node_modules|bench)\//, '$1/').replace(/^node:internal\/deps\//, '');
    const key = `${functionName || '(anonymous)'} ${file ? `${file}:${lineNumber + 1}` : ''}`.trim();
    byFn.set(key, (byFn.get(key) ?? 0) + t);
    const o = owner(url, functionName);
    byOwner.set(o, (byOwner.get(o) ?? 0) + t);
  }
  const sorted = (m: Map<string, number>) => [...m.entries()].sort((a, b) => b[1] - a[1]);
  return { total, byFn: sorted(byFn), byOwner: sorted(byOwner) };
}

/**
 * This process's node flags without the profiler's: startUpstream forks with
 * `process.execArgv`, and an upstream given `--cpu-prof` would write its own profile
 * beside the client's (and take CPU to write it).
 */
export function withoutProfilerFlags(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (!a.startsWith('--cpu-prof')) out.push(a);
    // `--cpu-prof-dir <dir>`, `--cpu-prof-interval <us>`, `--cpu-prof-name <name>`: their value too.
    else if (a !== '--cpu-prof' && !a.includes('=')) i++;
  }
  return out;
}

async function child(kind: string): Promise<void> {
  process.execArgv.splice(0, process.execArgv.length, ...withoutProfilerFlags(process.execArgv));
  const { port, child: up } = await startUpstream();
  const client = kind === 'raw' ? undefined : await governedClient({ port, tracing: kind !== 'raw' });
  const governed = kind === 'request' ? client?.request : client?.call;
  const call = governed ?? (() => globalThis.fetch(`http://127.0.0.1:${port}/api/users/42`).then((r) => r.arrayBuffer()));
  await load(call, 3000, 50);
  const r = await load(call, REQUESTS, 50);
  process.stderr.write(`${kind}: ${fmt(r.rps)} req/s, ${fmt(r.cpuPerRequestUs, 1)} µs CPU per request\n`);
  await client?.close();
  await stopUpstream(up);
}

/**
 * Runs `script --child <kind>` under --cpu-prof and analyses the child's own profile (its
 * pid is in the file name, never a process it started); its CPU per `unit` is read from
 * the line it prints on stderr (`<n> µs CPU per <unit>`).
 */
export function profileChild(script: string, kind: string, unit: string): { cpuUs: number; result: ReturnType<typeof analyse> } {
  const dir = mkdtempSync(join(tmpdir(), 'meshlet-prof-'));
  const run = spawnSync(process.execPath, ['--cpu-prof', '--cpu-prof-dir', dir, '--cpu-prof-interval', '200', script, '--child', kind], {
    encoding: 'utf8',
    stdio: ['ignore', 'inherit', 'pipe'],
  });
  if (run.status !== 0) throw new Error(`profiled child failed: ${run.stderr}`);
  const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile') && f.includes(`.${run.pid}.`));
  if (!file) throw new Error('no .cpuprofile written');
  const result = analyse(JSON.parse(readFileSync(join(dir, file), 'utf8')) as CpuProfile);
  if (process.env.PROFILE_KEEP === '1') process.stderr.write(`profile kept: ${join(dir, file)}\n`);
  else rmSync(dir, { recursive: true, force: true });
  const m = new RegExp(`([\\d.,]+) µs CPU per ${unit}`).exec(run.stderr);
  return { cpuUs: Number(m?.[1]?.replace(/,/g, '') ?? Number.NaN), result };
}

const profileOf = (kind: string) => profileChild(fileURLToPath(import.meta.url), kind, 'request');

export async function profileGoverned(): Promise<string> {
  const raw = profileOf('raw');
  const kind = process.env.PROFILE_KIND === 'request' ? 'request' : 'governed';
  const gov = profileOf(kind);
  // Per request: the profile's sampled (non-idle) time spread over the requests of the
  // whole child, warm-up and set-up included, so compare the two columns, not absolutes.
  const perReq = (us: number) => fmt(us / (REQUESTS + 3000), 2);
  const rawOwners = new Map(raw.result.byOwner);
  const owners = gov.result.byOwner
    .slice(0, 16)
    .map(([o, t]) => [o, perReq(rawOwners.get(o) ?? 0), perReq(t), perReq(t - (rawOwners.get(o) ?? 0))]);
  const rawFns = new Map(raw.result.byFn);
  const fns = gov.result.byFn
    .map(([f, t]) => [f, t, t - (rawFns.get(f) ?? 0)] as const)
    .sort((a, b) => b[2] - a[2])
    .slice(0, TOP)
    .map(([f, t, added]) => [`\`${f}\``, perReq(rawFns.get(f) ?? 0), perReq(t), perReq(added)]);
  return [
    `## Profile of the governed call (${kind === 'request' ? '`mesh.request`' : '`mesh.fetch`'}; node --cpu-prof, concurrency 50, tracing 100%)`,
    '',
    `${machine()}; ${fmt(REQUESTS)} requests after 3 000 of warm-up; sampling every 200 µs. ` +
      `Measured CPU per request: raw fetch ${fmt(raw.cpuUs, 1)} µs, governed ${fmt(gov.cpuUs, 1)} µs. Self time in µs per request.`,
    '',
    table(['part of the stack', 'raw fetch', 'governed', 'added'], owners),
    '',
    `Top ${TOP} functions by self time added (governed minus raw):`,
    '',
    table(['function', 'raw fetch', 'governed', 'added'], fns),
  ].join('\n');
}

// Only when this file is the script: trace-profile and inbound-trace import profileChild
// and run children of their own with `--child`, which this module must not answer too
// (it did, and every such child ran a traced mesh.fetch load beside its own).
if (import.meta.url === `file://${process.argv[1]}`) {
  if (process.argv[2] === '--child') await child(process.argv[3] ?? 'governed');
  else console.log(await profileGoverned());
}
