// The SDK against a sidecar hop (BENCH.md question 2, the project's argument). One forked
// upstream, one client (global fetch, keep-alive), the same concurrency, and these paths,
// taking turns within each run:
//   direct        client → upstream
//   nginx x1      client → nginx → upstream           (the outbound sidecar's hop)
//   nginx x2      client → nginx → nginx → upstream   (a mesh has a proxy on each side)
//   SDK           client with the in-process governed fetch → upstream (tracing off / 100%;
//                 since issue 19 mesh.fetch sends over the mesh's undici Agent, not fetch)
// nginx (Debian's package, installed and started by scripts/sidecar.sh) runs one worker,
// access log off, keep-alive to the upstream. It does no routing by tags, no breakers and
// no tracing, so the SDK rows do strictly more work per call than the nginx rows.
// The machine has 2 cores: with nginx in the path three or four busy processes share them,
// which is what a sidecar costs on a small node. CPU columns are µs per request: the
// client process, the proxies' workers (from /proc, 10 ms ticks), and the two together —
// the fair comparison on a 2-core box, where the sidecar gets the second core for free.
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Agent, request } from 'undici';
import { governedClient } from './governed-client.js';
import { fmt, freePort, type LoadResult, load, machine, med, sized, spread, startUpstream, stopUpstream, table } from './harness.js';

const RUNS = sized('BENCH_RUNS', 5, 2);
const PLAN = [
  { concurrency: 1, total: sized('BENCH_C1_REQUESTS', 2000, 400) },
  { concurrency: 50, total: sized('BENCH_C50_REQUESTS', 5000, 1500) },
];
const script = fileURLToPath(new URL('../../scripts/sidecar.sh', import.meta.url));
const ticksPerSecond = 100; // USER_HZ on Linux

/** CPU seconds used so far by the given processes (utime + stime from /proc). */
function cpuSeconds(pids: readonly number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    // Fields after the command name (which may hold spaces), from its closing paren.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    ticks += Number(fields[11]) + Number(fields[12]);
  }
  return ticks / ticksPerSecond;
}

/** The worker processes of the nginx listening on `port` (children of its master). */
function nginxWorkers(port: number): number[] {
  const dir = `${process.env.TMPDIR ?? '/tmp'}/meshlet-sidecar-${port}`;
  const master = readFileSync(`${dir}/nginx.pid`, 'utf8').trim();
  return readFileSync(`/proc/${master}/task/${master}/children`, 'utf8').trim().split(/\s+/).map(Number);
}

function startSidecar(upstreamPort: number, port: number): number {
  const out = execFileSync(script, ['start', String(upstreamPort), String(port)], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return Number(out.trim().split('\n').pop());
}

interface PathRun extends LoadResult {
  proxyCpuPerRequestUs: number;
}

export async function sidecar(): Promise<string> {
  const { port, child } = await startUpstream();
  const started: number[] = [];
  const inner = startSidecar(port, await freePort());
  started.push(inner);
  const outer = startSidecar(inner, await freePort());
  started.push(outer);
  const one = startSidecar(port, await freePort());
  started.push(one);
  const sdk = await governedClient({ port, tracing: true });
  const sdkUntraced = await governedClient({ port, tracing: false });
  const get = (p: number) => () => globalThis.fetch(`http://127.0.0.1:${p}/api/users/42`).then((r) => r.arrayBuffer());
  const agent = new Agent();
  const rawRequest = () => request(`http://127.0.0.1:${port}/api/users/42`, { dispatcher: agent }).then((r) => r.body.arrayBuffer());
  const paths: { name: string; call: () => Promise<unknown>; proxies: number[] }[] = [
    { name: 'direct (no proxy)', call: get(port), proxies: [] },
    { name: 'nginx x1 (one sidecar hop)', call: get(one), proxies: nginxWorkers(one) },
    { name: 'nginx x2 (sidecar each side)', call: get(outer), proxies: [...nginxWorkers(outer), ...nginxWorkers(inner)] },
    { name: 'SDK governed, tracing off', call: sdkUntraced.call, proxies: [] },
    { name: 'SDK governed, tracing 100%', call: sdk.call, proxies: [] },
    // The fast path: undici's request, raw and through `mesh.request`.
    { name: 'direct, raw undici request', call: rawRequest, proxies: [] },
    { name: 'SDK governed request, tracing off', call: sdkUntraced.request, proxies: [] },
    { name: 'SDK governed request, tracing 100%', call: sdk.request, proxies: [] },
  ];

  const sections: string[] = [];
  try {
    for (const { concurrency, total } of PLAN) {
      for (const p of paths) await load(p.call, Math.min(1500, total), concurrency); // warm-up: JIT, both keep-alive pools
      const runs: PathRun[][] = paths.map(() => []);
      for (let r = 0; r < RUNS; r++) {
        for (let k = 0; k < paths.length; k++) {
          const i = (k + r) % paths.length;
          const p = paths[i];
          if (!p) continue;
          const before = cpuSeconds(p.proxies);
          const result = await load(p.call, total, concurrency);
          const proxyCpuPerRequestUs = ((cpuSeconds(p.proxies) - before) * 1e6) / total;
          runs[i]?.push({ ...result, proxyCpuPerRequestUs });
        }
      }
      const rps = (i: number) => med(runs[i] ?? [], (x) => x.rps);
      const p50 = (i: number) => med(runs[i] ?? [], (x) => x.p50);
      const p99 = (i: number) => med(runs[i] ?? [], (x) => x.p99);
      // CPU per request counted across processes: the client's plus its proxies' workers'
      // (the upstream's is the same on every path and left out).
      const totalCpu = (i: number) => med(runs[i] ?? [], (x) => x.cpuPerRequestUs + x.proxyCpuPerRequestUs);
      const rows = paths.map((p, i) => {
        const xs = runs[i] ?? [];
        const client = med(xs, (x) => x.cpuPerRequestUs);
        const proxy = med(xs, (x) => x.proxyCpuPerRequestUs);
        return [
          p.name,
          fmt(rps(i)),
          spread(xs.map((x) => x.rps)),
          fmt(rps(i) / rps(0), 3),
          fmt(p50(i), 1),
          fmt(p50(i) - p50(0), 1),
          fmt(p99(i), 1),
          fmt(p99(i) - p99(0), 1),
          fmt(client, 1),
          p.proxies.length ? fmt(proxy, 1) : '—',
          fmt(totalCpu(i), 1),
        ];
      });
      sections.push(
        `### Concurrency ${concurrency} (${fmt(total)} requests a run)`,
        '',
        table(
          [
            'path',
            'req/s',
            'req/s spread',
            'vs direct',
            'p50 µs',
            'added p50',
            'p99 µs',
            'added p99',
            'client CPU µs/req',
            'proxy CPU µs/req',
            'total CPU µs/req',
          ],
          rows,
        ),
        '',
        `SDK (tracing 100%) / nginx x1: **${fmt(rps(4) / rps(1), 2)}x** the req/s; SDK (tracing off) / nginx x1: **${fmt(rps(3) / rps(1), 2)}x**; ` +
          `SDK (tracing 100%) / nginx x2: **${fmt(rps(4) / rps(2), 2)}x**. Added p50 over direct: SDK ${fmt(p50(4) - p50(0), 0)} µs (tracing off ${fmt(p50(3) - p50(0), 0)} µs) ` +
          `vs one nginx hop ${fmt(p50(1) - p50(0), 0)} µs, two hops ${fmt(p50(2) - p50(0), 0)} µs. ` +
          `Fast path: SDK governed request (tracing 100%) / nginx x1: **${fmt(rps(7) / rps(1), 2)}x** the req/s (tracing off **${fmt(rps(6) / rps(1), 2)}x**); ` +
          `vs raw undici request **${fmt(rps(7) / rps(5), 3)}x** (tracing off **${fmt(rps(6) / rps(5), 3)}x**). ` +
          `Total CPU per request, raw fetch through nginx x1 (client + nginx worker) / governed direct (target ≥ 2x): ` +
          `mesh.fetch **${fmt(totalCpu(1) / totalCpu(3), 2)}x** (tracing 100% **${fmt(totalCpu(1) / totalCpu(4), 2)}x**), ` +
          `mesh.request **${fmt(totalCpu(1) / totalCpu(6), 2)}x** (tracing 100% **${fmt(totalCpu(1) / totalCpu(7), 2)}x**).`,
        '',
      );
    }
  } finally {
    await sdk.close();
    await sdkUntraced.close();
    await agent.close();
    for (const p of started) execFileSync(script, ['stop', String(p)]);
    await stopUpstream(child);
  }
  const version = spawnSync('/usr/sbin/nginx', ['-v'], { encoding: 'utf8' }).stderr.trim() || 'nginx';
  return [
    '## SDK vs sidecar hop (BENCH.md Q2)',
    '',
    `${machine()}; ${version.replace('nginx version: ', '')} (1 worker, keep-alive upstream, access log off); the same forked upstream and client (global fetch, keep-alive) on every path but the undici rows (undici request on a keep-alive Agent); ` +
      `median of ${RUNS} interleaved runs after a warm-up; latencies in µs. The SDK rows do tag routing (20/80 rule), breakers, timeout, retry policy and (100%) tracing; nginx only forwards.`,
    '',
    ...sections,
  ].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(await sidecar());
