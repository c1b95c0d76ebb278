// The adaptive concurrency limit at explicit instants (x/time/rate style), then a simulated
// service on a ManualClock: convergence after a load change, recovery, floor and ceiling.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '@meshlet/core';
import { AdaptiveLimit, type AdaptiveLimitOptions } from '../src/index.js';
import { quantile, Simulation } from '../src/testing/adaptive-sim.js';

interface Step {
  /** The instant of the sample, ms. */
  readonly at: number;
  readonly rtt: number;
  readonly inFlight: number;
  /** Epoch offset from the limit's current epoch at admission (-1: admitted before the last probe began). */
  readonly epochDelta?: number;
  /** Expected after the sample. */
  readonly limit: number;
  readonly mode?: 'probe' | 'track';
  readonly minRtt?: number;
  readonly why: string;
}

const tableSettings: AdaptiveLimitOptions = {
  initialLimit: 10,
  minLimit: 3,
  maxLimit: 50,
  tolerance: 1.5,
  windowMs: 100,
  minWindowSamples: 2,
  probeSamples: 3,
  probeIntervalMs: 10_000,
  probeJitter: 0,
  stuckWindows: 3,
};

function play(
  steps: readonly Step[],
  options: AdaptiveLimitOptions = tableSettings,
  loop?: { ms: number },
): { limit: AdaptiveLimit; clock: ManualClock } {
  const clock = new ManualClock(0);
  const limit = new AdaptiveLimit({ ...options, clock, ...(loop ? { eventLoopDelay: () => loop.ms } : {}) });
  assert.equal(limit.limit, options.minLimit, 'starts by measuring the minimum RTT at the floor');
  assert.equal(limit.state.mode, 'probe');
  for (const s of steps) {
    clock.advance(s.at - clock.now());
    limit.onSample(s.rtt, s.inFlight, limit.epoch + (s.epochDelta ?? 0));
    const st = limit.state;
    assert.equal(st.limit, s.limit, `at ${s.at} ms (${s.why}): limit`);
    if (s.mode) assert.equal(st.mode, s.mode, `at ${s.at} ms (${s.why}): mode`);
    if (s.minRtt !== undefined) assert.equal(st.minRttMs, s.minRtt, `at ${s.at} ms (${s.why}): minRtt`);
  }
  return { limit, clock };
}

describe('AdaptiveLimit at explicit instants', () => {
  it('probes the minimum RTT at the floor, then moves the limit by the RTT gradient, or toward twice the use when app-limited', () => {
    play([
      { at: 5, rtt: 10, inFlight: 1, limit: 3, mode: 'probe', why: 'probe sample 1 of 3' },
      { at: 6, rtt: 12, inFlight: 2, limit: 3, mode: 'probe', why: 'probe sample 2 of 3' },
      { at: 7, rtt: 11, inFlight: 3, limit: 10, mode: 'track', minRtt: 11, why: 'probe ends: median 11 ms, limit back to initial' },
      { at: 50, rtt: 11, inFlight: 10, limit: 10, why: 'window still open' },
      { at: 107, rtt: 11, inFlight: 10, limit: 15, why: 'RTT at the minimum, limit in use: x 16.5/11' },
      { at: 150, rtt: 33, inFlight: 15, limit: 15, why: 'window open' },
      { at: 207, rtt: 33, inFlight: 15, limit: 7, why: 'RTT 3 x min: cut by at most half (15 x 0.5)' },
      { at: 250, rtt: 22, inFlight: 7, limit: 7, why: 'window open' },
      { at: 307, rtt: 22, inFlight: 7, limit: 5, why: 'cut by 16.5/22 (7.5 x 0.75 = 5.6)' },
      { at: 350, rtt: 11, inFlight: 1, limit: 5, why: 'window open' },
      { at: 407, rtt: 11, inFlight: 1, limit: 5, why: 'fast, but 1 of 5 in use: no growth; 5.6 -> 2 x 1 by 1/10 of a half-life (5.4)' },
      { at: 450, rtt: 11, inFlight: 1, limit: 5, why: 'window open' },
      { at: 1407, rtt: 11, inFlight: 1, limit: 3, why: 'a second of it: halfway to 2 x 1 ((5.4 + 2) / 2 = 3.7)' },
      { at: 1450, rtt: 11, inFlight: 3, limit: 3, why: 'window open' },
      { at: 1507, rtt: 11, inFlight: 3, limit: 5, why: 'fast and in use: 3.7 x 1.5' },
      { at: 1550, rtt: 16.5, inFlight: 5, limit: 5, why: 'window open' },
      { at: 1607, rtt: 16.5, inFlight: 5, limit: 5, why: 'RTT exactly at the target: the limit stays' },
      { at: 1650, rtt: 40, inFlight: 2, limit: 5, why: 'window open' },
      { at: 1707, rtt: 40, inFlight: 2, limit: 5, why: 'slow, but 2 of 5 in use: not our doing (a GC pause): not cut by the gradient' },
    ]);
  });

  it('re-measures the minimum RTT after stuckWindows at the floor; follows a real rise after three probes', () => {
    const steps: Step[] = [
      { at: 1, rtt: 10, inFlight: 1, limit: 3, why: 'probe' },
      { at: 2, rtt: 10, inFlight: 1, limit: 3, why: 'probe' },
      { at: 3, rtt: 10, inFlight: 1, limit: 10, minRtt: 10, why: 'probe ends at 10 ms' },
    ];
    // The dependency became 10x slower: not an overload, yet every window is slow.
    let at = 3;
    const slowWindows = (limits: number[]) =>
      limits.forEach((limit, i) => {
        steps.push({ at: at + 50, rtt: 100, inFlight: 10, limit: steps.at(-1)?.limit ?? 10, why: 'window open' });
        at += 100;
        steps.push({ at, rtt: 100, inFlight: 10, limit, mode: i === limits.length - 1 ? 'probe' : 'track', why: `slow window ${i + 1}` });
      });
    const probe = (minRtt: number, first: boolean) => {
      if (first)
        steps.push({
          at: at + 10,
          rtt: 500,
          inFlight: 10,
          epochDelta: -1,
          limit: 3,
          mode: 'probe',
          why: 'admitted before the probe: ignored',
        });
      steps.push(
        { at: at + 20, rtt: 100, inFlight: 1, limit: 3, why: 'probe' },
        { at: at + 21, rtt: 100, inFlight: 2, limit: 3, why: 'probe' },
        {
          at: at + 22,
          rtt: 100,
          inFlight: 3,
          limit: 3,
          mode: 'track',
          minRtt,
          why: `probe ends: min of the last three probes ${minRtt} ms`,
        },
      );
      at += 22;
    };
    slowWindows([5, 3, 3, 3]); // 5 windows at the floor (3 with stuckWindows 3) start a probe
    probe(10, true); // [10, 100]: one slow probe could be noise
    slowWindows([3, 3, 3]);
    probe(10, false); // [10, 100, 100]
    slowWindows([3, 3, 3]);
    probe(100, false); // [100, 100, 100]: the baseline did move
    steps.push(
      { at: at + 80, rtt: 100, inFlight: 3, limit: 3, why: 'window open' },
      { at: at + 122, rtt: 100, inFlight: 3, limit: 4, why: 'at the new baseline: grows again' },
    );
    play(steps);
  });

  it('counts event-loop delay in the window RTT: a synchronous handler that queues in the loop is cut', () => {
    for (const [loopMs, expected] of [
      [0, 15],
      [10, 5],
    ] as const) {
      const loop = { ms: 0 };
      const { limit, clock } = play(
        [
          { at: 1, rtt: 5, inFlight: 1, limit: 3, why: 'probe' },
          { at: 2, rtt: 5, inFlight: 1, limit: 3, why: 'probe' },
          { at: 3, rtt: 5, inFlight: 1, limit: 10, minRtt: 5, why: 'probe ends with an idle loop' },
        ],
        tableSettings,
        loop,
      );
      // The handler takes 5 ms once it runs either way; with loopMs > 0 requests first wait in the loop.
      loop.ms = loopMs;
      clock.advance(50);
      limit.onSample(5, 10);
      clock.advance(50);
      limit.onSample(5, 10);
      assert.equal(limit.limit, expected, `loop delay ${loopMs} ms`);
      assert.equal(limit.state.eventLoopDelayMs, loopMs);
      assert.equal(limit.state.sampleRttMs, 5 + loopMs);
    }
  });

  it('an event loop late past the tolerance cuts the limit from what was in flight, even when little of it was used', () => {
    const loop = { ms: 0 };
    const { limit, clock } = play(
      [
        { at: 1, rtt: 10, inFlight: 1, limit: 3, why: 'probe' },
        { at: 2, rtt: 10, inFlight: 1, limit: 3, why: 'probe' },
        { at: 3, rtt: 10, inFlight: 1, limit: 10, minRtt: 10, why: 'probe ends' },
      ],
      tableSettings,
      loop,
    );
    // A synchronous handler: each request takes 10 ms once it runs and 4 are in flight, but
    // the loop is 20 ms late — past the 5 ms the tolerance allows on a 10 ms minimum.
    loop.ms = 20;
    clock.advance(50);
    limit.onSample(10, 4);
    clock.advance(50);
    limit.onSample(10, 4);
    assert.equal(limit.state.sampleRttMs, 30);
    assert.equal(limit.limit, 3, 'min(10, 4 in flight x 0.5) = 2, held at the floor of 3');
  });

  it('a limit not used moves halfway to twice the peak in flight each second, down to the floor', () => {
    // Before: held at 40 however little was used, so a spike after a quiet spell was let in 40 at once.
    const steps: Step[] = [
      { at: 1, rtt: 10, inFlight: 1, limit: 3, why: 'probe' },
      { at: 2, rtt: 10, inFlight: 1, limit: 3, why: 'probe' },
      { at: 3, rtt: 10, inFlight: 1, limit: 40, minRtt: 10, why: 'probe ends, limit back to initial' },
    ];
    const rows: [inFlight: number, limit: number, why: string][] = [
      [2, 22, '2 of 40 in use: (40 + 4) / 2'],
      [2, 13, '(22 + 4) / 2'],
      [2, 8, '(13 + 4) / 2 = 8.5'],
      [2, 6, '6.25'],
      [2, 5, '5.1'],
      [3, 7, '3 of 5 in use is over half: grown by the gradient, 5.1 x 1.5'],
      [1, 4, '(7.7 + 2) / 2 = 4.8'],
      [1, 3, '(4.8 + 2) / 2 = 3.4'],
      [1, 3, '2.7: held at the floor'],
    ];
    let at = 3;
    for (const [inFlight, limit, why] of rows) {
      // One-second windows: each halves the distance (UNUSED_HALF_LIFE_MS).
      steps.push({ at: at + 500, rtt: 10, inFlight, limit: steps.at(-1)?.limit ?? 40, why: 'window open' });
      at += 1000;
      steps.push({ at, rtt: 10, inFlight, limit, why });
    }
    play(steps, { ...tableSettings, initialLimit: 40 });
  });

  it('a probe while the event loop is busy may lower the minimum RTT, never raise it', () => {
    // A CPU-bound handler saturates the loop even at the floor: such a probe measures the
    // queue in the loop. Before: three such probes made their RTT the baseline (10 -> 30 ms).
    const clock = new ManualClock(0);
    const loop = { utilization: 1 };
    const reads: number[] = [];
    const limit = new AdaptiveLimit({
      ...tableSettings,
      probeIntervalMs: 1000,
      clock,
      eventLoopUtilization: () => {
        reads.push(clock.now());
        return loop.utilization;
      },
    });
    const rows: [utilization: number, probeRtt: number, minRtt: number, busyProbes: number, why: string][] = [
      [1, 10, 10, 0, 'the first probe counts, busy or not'],
      [0.95, 30, 10, 1, 'busy and slower: not counted'],
      [0.95, 30, 10, 2, 'busy and slower: not counted'],
      [0.95, 30, 10, 3, 'three busy probes in an overload: the baseline stays'],
      [0.95, 8, 8, 3, 'busy but faster: counted'],
      [0.5, 30, 8, 3, 'loop not busy: counted, the least of [10, 8, 30]'],
      [0.5, 30, 8, 3, 'the least of [8, 30, 30]'],
      [0.5, 30, 30, 3, 'the least of [30, 30, 30]: a dependency that really slowed down is followed'],
      [0.91, 60, 30, 4, 'busy and slower: not counted'],
    ];
    for (const [i, [utilization, probeRtt, minRtt, busyProbes, why]] of rows.entries()) {
      if (i > 0) {
        // A window after the probe interval starts the next probe.
        clock.advance(1100);
        limit.onSample(limit.state.minRttMs, limit.limit);
        limit.onSample(limit.state.minRttMs, limit.limit);
        assert.equal(limit.state.mode, 'probe', `row ${i}: a probe started`);
      }
      loop.utilization = utilization;
      for (let k = 0; k < 3; k++) limit.onSample(probeRtt, 1);
      assert.equal(limit.state.mode, 'track', `row ${i} (${why}): probe ended`);
      assert.equal(limit.state.minRttMs, minRtt, `row ${i} (${why}): minRtt`);
      assert.equal(limit.state.busyProbes, busyProbes, `row ${i} (${why}): busyProbes`);
    }
    assert.ok(reads.length >= rows.length, 'the utilization is read at least once per probe');
  });

  it('keeps to the ceiling and the floor', () => {
    const clock = new ManualClock(0);
    const limit = new AdaptiveLimit({ ...tableSettings, clock });
    for (let i = 0; i < 3; i++) limit.onSample(10, 1);
    // 80 windows: 8 s, before the periodic probe at 10 s.
    for (let w = 0; w < 80; w++) {
      clock.advance(100);
      limit.onSample(10, limit.limit);
      limit.onSample(10, limit.limit);
      assert.ok(limit.limit <= 50, `ceiling, window ${w}: ${limit.limit}`);
    }
    assert.equal(limit.limit, 50);
    for (let w = 0; w < 100; w++) {
      clock.advance(100);
      limit.onSample(1000, limit.limit);
      limit.onSample(1000, limit.limit);
      assert.ok(limit.limit >= 3, `floor, window ${w}: ${limit.limit}`);
    }
  });

  it('refuses settings out of bounds, naming the setting', () => {
    assert.throws(() => new AdaptiveLimit({ minLimit: 0 }), /minLimit/);
    assert.throws(() => new AdaptiveLimit({ minLimit: 10, maxLimit: 5 }), /maxLimit/);
    assert.throws(() => new AdaptiveLimit({ initialLimit: 2000 }), /initialLimit/);
    assert.throws(() => new AdaptiveLimit({ tolerance: 0.5 }), /tolerance/);
    assert.throws(() => new AdaptiveLimit({ quantile: 2 }), /quantile/);
  });
});

describe('AdaptiveLimit on a simulated service (ManualClock)', () => {
  // 20 ms a request, 8 at full speed: the best limit is 8-12 (12 keeps the RTT at 1.5 x 20 ms).
  const service = { baseMs: 20, parallel: 8 };

  it('converges after a load change, recovers when load drops, converges again', () => {
    const sim = new Simulation({ ...service });
    const light = sim.run({ clients: 4, ms: 3000 });
    // The first probe pins the limit at 3 for 25 samples (~170 ms): the 4th client is refused each ms.
    assert.ok(light.refused <= 200, `light load: refused only while probing (${light.refused})`);
    assert.equal(sim.run({ clients: 4, ms: 1000 }).refused, 0, 'light load after the probe: nothing refused');
    assert.ok(quantile(light.rtts, 0.99) <= 20, 'light load runs at full speed');

    const spike = sim.run({ clients: 48, ms: 5000 });
    const settled = spike.settledFrom(6, 16);
    assert.ok(settled >= 0 && settled <= 1000, `6x overload: limit within [6, 16] from ${settled} ms on (limits ${spike.limits})`);
    const settledRtts = sim.run({ clients: 48, ms: 2000 }).rtts;
    assert.ok(quantile(settledRtts, 0.5) <= 30, `admitted median ${quantile(settledRtts, 0.5)} ms <= 1.5 x 20 ms`);
    assert.ok(quantile(settledRtts, 0.99) <= 40, `admitted p99 ${quantile(settledRtts, 0.99)} ms <= 2 x 20 ms`);

    const calm = sim.run({ clients: 6, ms: 2000 });
    assert.equal(calm.refused, 0, 'load below the limit: nothing refused');
    assert.ok(quantile(calm.rtts, 0.9) <= 20, 'back at full speed (the requests admitted before the drop finish slower)');

    const again = sim.run({ clients: 100, ms: 3000 });
    const settledAgain = again.settledFrom(6, 16);
    assert.ok(settledAgain >= 0 && settledAgain <= 1000, `12x overload: settled from ${settledAgain} ms (limits ${again.limits})`);
  });

  it('grows to the capacity when load rises without overload, and stays under the ceiling', () => {
    // 200 may run at full speed: the limit climbs from 20 while the RTT stays at the minimum.
    const sim = new Simulation({ baseMs: 20, parallel: 200 }, { maxLimit: 150 });
    const r = sim.run({ clients: 400, ms: 4000 });
    assert.ok(Math.max(...r.limits) <= 150, 'ceiling');
    const from = r.settledFrom(150, 150);
    assert.ok(from >= 0 && from <= 2000, `reaches the ceiling of 150 by 2 s (from ${from} ms; limits ${r.limits})`);
  });

  it('never goes under the floor, however slow the service', () => {
    const sim = new Simulation({ baseMs: 20, parallel: 1 }, { minLimit: 5 });
    const r = sim.run({ clients: 200, ms: 5000 });
    assert.ok(Math.min(...r.limits) >= 5, `floor (limits ${r.limits})`);
  });
});
