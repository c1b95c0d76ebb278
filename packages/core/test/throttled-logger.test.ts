import assert from 'node:assert/strict';
import { it } from 'node:test';
import { ManualClock, MemoryLogger, throttledLogger } from '../src/index.js';

it('writes a per-request code at most once per interval, with the count since the last line', () => {
  const clock = new ManualClock(0);
  const sink = new MemoryLogger();
  const log = throttledLogger(sink, { clock, intervalMs: 1_000 });
  for (let i = 0; i < 500; i++) log.warn('tag dropped', { code: 'MESHLET_TAG_DROPPED', key: `k${i}` });
  assert.equal(sink.entries.length, 1);
  assert.deepEqual(sink.entries[0]?.fields, { code: 'MESHLET_TAG_DROPPED', key: 'k0', count: 1, intervalMs: 1_000 });
  clock.advance(999);
  log.warn('tag dropped', { code: 'MESHLET_TAG_DROPPED', key: 'late' });
  assert.equal(sink.entries.length, 1);
  clock.advance(1);
  log.warn('tag dropped', { code: 'MESHLET_TAG_DROPPED', key: 'next' });
  assert.equal(sink.entries.length, 2);
  assert.equal(sink.entries[1]?.fields?.count, 501, 'the 499 + 1 skipped, and this one');
  assert.equal(log.counts.get('MESHLET_TAG_DROPPED'), 502);
  assert.equal(log.suppressed, 500);
});

it('each code has its own interval; other codes and uncoded entries are written as they come, coded ones counted', () => {
  const sink = new MemoryLogger();
  const log = throttledLogger(sink, { clock: new ManualClock(0) });
  for (let i = 0; i < 3; i++) {
    log.warn('bad tag header', { code: 'MESHLET_BAD_TAG_HEADER' });
    log.warn('dropped', { code: 'MESHLET_TAG_DROPPED' });
    log.error('rules rejected', { code: 'MESHLET_BAD_RULE', service: `s${i}` });
    log.info('plain');
  }
  assert.equal(sink.entries.filter((e) => e.fields?.code === 'MESHLET_BAD_TAG_HEADER').length, 1);
  assert.equal(sink.entries.filter((e) => e.fields?.code === 'MESHLET_TAG_DROPPED').length, 1);
  assert.equal(sink.entries.filter((e) => e.fields?.code === 'MESHLET_BAD_RULE').length, 3);
  assert.equal(sink.entries.filter((e) => e.message === 'plain').length, 3);
  assert.deepEqual(Object.fromEntries(log.counts), { MESHLET_BAD_TAG_HEADER: 3, MESHLET_TAG_DROPPED: 3, MESHLET_BAD_RULE: 3 });
});

it('counts at most 256 distinct codes; the rest under "other"', () => {
  const log = throttledLogger(new MemoryLogger(), { clock: new ManualClock(0) });
  for (let i = 0; i < 300; i++) log.warn('x', { code: `C${i}` });
  assert.equal(log.counts.size, 257);
  assert.equal(log.counts.get('other'), 44);
});

it('writingTo: another sink, throttled on its own with the same interval, its entries counted in the first one', () => {
  const clock = new ManualClock(0);
  const first = new MemoryLogger();
  const second = new MemoryLogger();
  const log = throttledLogger(first, { clock, intervalMs: 1_000 });
  const other = log.writingTo(second);
  log.warn('dropped', { code: 'MESHLET_TAG_DROPPED' });
  for (let i = 0; i < 3; i++) other.warn('dropped', { code: 'MESHLET_TAG_DROPPED' });
  assert.equal(first.entries.length, 1);
  assert.equal(second.entries.length, 1, 'its own line, not throttled behind the first sink');
  assert.equal(second.entries[0]?.fields?.intervalMs, 1_000);
  assert.equal(log.counts.get('MESHLET_TAG_DROPPED'), 4);
  assert.equal(other.counts, log.counts);
  assert.deepEqual([log.suppressed, other.suppressed], [0, 2]);
});
