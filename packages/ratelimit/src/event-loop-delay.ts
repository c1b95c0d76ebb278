import { monitorEventLoopDelay, performance } from 'node:perf_hooks';

/** A sampler of event-loop delay, for `AdaptiveLimit`'s `eventLoopDelay`; `close()` stops it. */
export interface EventLoopDelaySampler {
  /** Mean event-loop delay, in ms, since the previous read (or since start). */
  (): number;
  close(): void;
}

/**
 * Event-loop delay from `perf_hooks.monitorEventLoopDelay`. Its histogram records the time
 * between ticks of a `resolutionMs` timer, so an idle loop reads `resolutionMs`: that is
 * taken off, leaving how late the loop ran callbacks on average — about how long a request
 * that arrived in the interval waited before the loop read it. Each read resets the
 * histogram. The monitor's timer does not keep the process alive.
 */
export function eventLoopDelayMonitor(resolutionMs = 10): EventLoopDelaySampler {
  const histogram = monitorEventLoopDelay({ resolution: resolutionMs });
  histogram.enable();
  const read = (): number => {
    const meanMs = histogram.count > 0 ? histogram.mean / 1e6 : resolutionMs;
    histogram.reset();
    return Math.max(0, meanMs - resolutionMs);
  };
  return Object.assign(read, { close: () => histogram.disable() });
}

/**
 * Event-loop utilization from `perf_hooks.performance.eventLoopUtilization`: the fraction
 * of time the loop was running callbacks, rather than waiting for I/O, since the previous
 * read (or since the sampler was made), for `AdaptiveLimit`'s `eventLoopUtilization`. No
 * timer: each read is a difference of two counters Node keeps anyway.
 */
export function eventLoopUtilizationSampler(): () => number {
  let last = performance.eventLoopUtilization();
  return () => {
    const now = performance.eventLoopUtilization();
    const delta = performance.eventLoopUtilization(now, last);
    last = now;
    return delta.utilization;
  };
}
