import { type ChildProcess, fork } from 'node:child_process';
import { once } from 'node:events';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';

/** Starts bench/upstream in a child process; returns its port. */
export function startUpstream(): Promise<{ port: number; child: ChildProcess }> {
  return startProcess('./upstream.js');
}

/** Starts a bench script (relative to bench/dist) that tells its port over IPC; returns it. */
export async function startProcess(script: string): Promise<{ port: number; child: ChildProcess }> {
  const child = fork(fileURLToPath(new URL(script, import.meta.url)), { stdio: 'inherit' });
  const [msg] = (await once(child, 'message')) as [{ port: number }];
  return { port: msg.port, child };
}

export interface LoadResult {
  /** Requests per second over the run. */
  rps: number;
  /** Latencies in microseconds. */
  p50: number;
  p99: number;
  /** CPU time of this process over the run (user + system), µs per request. */
  cpuPerRequestUs: number;
  /**
   * The same, of the main thread alone (the event loop: what a client at concurrency 50 is
   * bound by, where the rest is V8's GC helpers and libuv's pool); NaN on a Node without
   * `process.threadCpuUsage` (before 23.9).
   */
  mainThreadCpuPerRequestUs: number;
}

/** The main thread's CPU so far (user + system, µs), NaN where Node cannot tell. */
const mainThreadCpu = (): number => {
  const read = (process as { threadCpuUsage?: () => NodeJS.CpuUsage }).threadCpuUsage;
  if (read === undefined) return Number.NaN;
  const u = read.call(process);
  return u.user + u.system;
};

/** Sends `total` requests with `concurrency` callers in flight; each call must resolve when its response is consumed. */
export async function load(call: () => Promise<unknown>, total: number, concurrency: number): Promise<LoadResult> {
  const latencies = new Float64Array(total);
  let next = 0;
  const cpu0 = process.cpuUsage();
  const main0 = mainThreadCpu();
  const start = process.hrtime.bigint();
  const worker = async () => {
    for (;;) {
      const i = next++;
      if (i >= total) return;
      const t0 = process.hrtime.bigint();
      await call();
      latencies[i] = Number(process.hrtime.bigint() - t0) / 1000;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  const main = mainThreadCpu() - main0;
  latencies.sort();
  return {
    rps: total / seconds,
    p50: quantile(latencies, 0.5),
    p99: quantile(latencies, 0.99),
    cpuPerRequestUs: (cpu.user + cpu.system) / total,
    mainThreadCpuPerRequestUs: main / total,
  };
}

export function quantile(sorted: Float64Array | number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
}

export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] ?? Number.NaN) : ((s[mid - 1] ?? 0) + (s[mid] ?? 0)) / 2;
}

/**
 * A distribution-free confidence interval for the median of `values` (order statistics):
 * the k-th lowest and k-th highest, k the largest with P(Binomial(n, ½) < k) ≤ (1 − level)/2.
 * Undefined when n is too small for `level` (five values give at most 93.75%). Also the
 * interval's own coverage, which is at least `level`.
 */
export function medianInterval(values: readonly number[], level = 0.95): { low: number; high: number; coverage: number } | undefined {
  const n = values.length;
  const sorted = [...values].sort((a, b) => a - b);
  // P(B ≤ j) for B ~ Binomial(n, ½), summed term by term.
  let term = 0.5 ** n;
  let below = 0; // P(B < k)
  let k = 0;
  for (let j = 0; j < n; j++) {
    if (below + term > (1 - level) / 2) break;
    below += term;
    k = j + 1;
    term = (term * (n - j)) / (j + 1);
  }
  if (k === 0) return undefined;
  return { low: sorted[k - 1] as number, high: sorted[n - k] as number, coverage: 1 - 2 * below };
}

/** Prints a markdown table. */
export function table(headers: string[], rows: (string | number)[][]): string {
  const line = (cells: (string | number)[]) => `| ${cells.join(' | ')} |`;
  return [line(headers), line(headers.map(() => '---')), ...rows.map(line)].join('\n');
}

export function machine(): string {
  return `${cpus()[0]?.model ?? 'unknown CPU'} x${cpus().length}, Node ${process.version}`;
}

export const fmt = (n: number, digits = 0) => n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

/** `BENCH_QUICK=1`: smoke-run sizes (run.ts sets the per-section env defaults from it). */
export const quick = process.env.BENCH_QUICK === '1';

/** A number from the environment, else `full`, else `smoke` in quick mode. */
export function sized(envName: string, full: number, smoke: number): number {
  const v = process.env[envName];
  return v !== undefined && v !== '' ? Number(v) : quick ? smoke : full;
}

/** The spread of a set of runs, as "min–max". */
export function spread(values: number[], digits = 0): string {
  return `${fmt(Math.min(...values), digits)}–${fmt(Math.max(...values), digits)}`;
}

/** The median of one field over runs. */
export function med<T>(runs: readonly T[], field: (r: T) => number): number {
  return median(runs.map(field));
}

/** A TCP port free on 127.0.0.1 right now. */
export async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  const s = createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const a = s.address();
  await new Promise((r) => s.close(r));
  return typeof a === 'object' && a ? a.port : 0;
}

/** Stops a forked upstream and waits for it to exit. */
export async function stopUpstream(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.disconnect();
  await exited;
}
