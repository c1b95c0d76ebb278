// What the limiter suites share: a section from rules, a request from tags, a sync decision.
import assert from 'node:assert/strict';
import { type Decision, type LimitedRequest, parseRateLimitSection } from '../src/index.js';

export const section = (rules: unknown[]) => parseRateLimitSection({ rules }, 'ratelimit');

export const req = (method: string, path: string, tags: Record<string, string> = {}): LimitedRequest => ({
  method,
  path,
  tag: (k) => tags[k],
});

/** A decision that must not have waited on Redis. */
export function sync(d: Decision | Promise<Decision>): Decision {
  assert.ok(!(d instanceof Promise), 'a local decision is synchronous');
  return d;
}
