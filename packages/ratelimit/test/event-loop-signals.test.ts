// The event-loop signals the adaptive limit reads: utilization since the previous read (a
// synchronous spin is all active time, whatever else the machine runs), and the delay
// monitor's contract (never negative, stops on close).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { eventLoopDelayMonitor, eventLoopUtilizationSampler } from '../src/index.js';

function spin(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    // the loop is busy: active time for eventLoopUtilization
  }
}

describe('event-loop signals', () => {
  it('utilization is a fraction of the time since the previous read: a spin reads as busy', async () => {
    // Before the event loop's first turn Node reports no utilization at all: let it start.
    await new Promise((resolve) => setImmediate(resolve));
    const read = eventLoopUtilizationSampler();
    spin(30);
    const busy = read();
    assert.ok(busy > 0.5 && busy <= 1, `a 30 ms spin right after the previous read: ${busy}`);
    const again = read();
    assert.ok(again >= 0 && again <= 1, `a fraction: ${again}`);
  });

  it('the delay monitor reads a delay of at least 0 ms and stops on close', () => {
    const monitor = eventLoopDelayMonitor();
    spin(5);
    const ms = monitor();
    assert.ok(Number.isFinite(ms) && ms >= 0, `${ms}`);
    monitor.close();
  });
});
