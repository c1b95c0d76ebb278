// How fast the adaptive limit converges after a load change and recovers when it drops, on
// a simulated service (ManualClock, no noise): 20 ms a request, 8 at full speed, past that
// sharing the CPU. The same model the ratelimit tests use; here its timings are printed.
import { quantile, Simulation } from '@meshlet/ratelimit/testing';
import { fmt, table } from './harness.js';

export async function adaptiveConvergence(): Promise<string> {
  const rows: (string | number)[][] = [];
  for (const [from, to] of [
    [4, 48],
    [4, 100],
    [48, 6],
    [6, 200],
  ] as const) {
    const sim = new Simulation({ baseMs: 20, parallel: 8 });
    sim.run({ clients: from, ms: 3000 });
    const r = sim.run({ clients: to, ms: 5000 });
    const settled = r.settledFrom(6, 16);
    rows.push([
      `${from} → ${to} clients`,
      r.limits.slice(0, 10).join(', '),
      settled < 0 ? (to <= 8 ? 'n/a (no overload)' : 'did not') : `${fmt(settled)} ms`,
      fmt(quantile(r.rtts, 0.5), 1),
      fmt(quantile(r.rtts, 0.99), 1),
      fmt(r.refused),
    ]);
  }
  return [
    '## adaptive-convergence: the limit after a load change (simulated service, ManualClock)',
    '',
    '20 ms a request, 8 run at full speed, past that they share the CPU: the best limit is 8-12 (12 keeps the RTT at 1.5x). Closed-loop clients; a refused one tries again 1 ms later. 3 s at the first load, then 5 s at the second.',
    '',
    table(
      [
        'load change',
        'limit, first 10 windows',
        'in [6, 16] for good from',
        'p50 ms',
        'p99 ms',
        'refused attempts (each client retries every ms)',
      ],
      rows,
    ),
  ].join('\n');
}
