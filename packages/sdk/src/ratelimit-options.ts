import { badOption, onlyOptionKeys, optionObject, serviceNameProblem, shownValue, wholeNumber } from '@meshlet/core';
import {
  ADAPTIVE_BOUNDS,
  type BulkheadOptions,
  MAX_OUTBOUND_LIMITS,
  type OutboundAdaptiveOptions,
  parseOutboundAdaptive,
  parseSentinelUrl,
} from '@meshlet/ratelimit';

/**
 * The bounds of `ratelimit.bulkheads` (README, "Safe defaults"): a slot count as high as
 * the adaptive limit's ceiling, a queue that holds at most this many waiting calls per
 * destination (each a pending promise), and as many destinations with their own numbers
 * as the outbound adaptive limits follow.
 */
export const BULKHEAD_BOUNDS = Object.freeze({ maxConcurrent: ADAPTIVE_BOUNDS.maxLimit, maxQueue: 10_000, services: MAX_OUTBOUND_LIMITS });

/** The longest `ratelimit.redisTimeoutMs`: a call waits this long at most for Redis before its local share. */
export const MAX_REDIS_TIMEOUT_MS = 60_000;

/** The `ratelimit.bulkheads` option as the Bulkheads take it. */
export interface BulkheadsOption {
  readonly defaults?: BulkheadOptions;
  readonly services?: Readonly<Record<string, BulkheadOptions>>;
}

/** The outbound parts of the `ratelimit` option, checked (copies: a later change to the caller's object changes nothing). */
export interface OutboundLimitSettings {
  readonly bulkheads: BulkheadsOption | undefined;
  readonly outboundAdaptive: Omit<OutboundAdaptiveOptions, 'clock' | 'random'> | undefined;
}

const RATELIMIT_KEYS = ['redisUrl', 'redisTimeoutMs', 'adaptive', 'bulkheads', 'outboundAdaptive'] as const;
const BULKHEADS_KEYS = ['defaults', 'services'] as const;
const BULKHEAD_KEYS = ['maxConcurrent', 'maxQueue'] as const;
const REDIS_PROTOCOLS = ['redis:', 'rediss:'];

/**
 * Checks createMesh's `ratelimit` option before anything starts: MeshletError
 * `MESHLET_BAD_OPTION` naming the field (`ratelimit.bulkheads.services.orders.maxConcurrent`),
 * unknown keys refused so that a misspelt limit is not silently off. `ratelimit.adaptive`
 * is checked by adaptiveProtection, and `outboundAdaptive` by its parser, each a
 * RuleValidationError naming the field (the names and bounds of the rule section).
 */
export function outboundLimitSettings(option: unknown): OutboundLimitSettings {
  if (option === undefined) return { bulkheads: undefined, outboundAdaptive: undefined };
  const ratelimit = optionObject(option, 'ratelimit');
  onlyOptionKeys(ratelimit, 'ratelimit', RATELIMIT_KEYS);
  checkRedisUrl(ratelimit.redisUrl);
  checkRedisTimeout(ratelimit.redisTimeoutMs);
  return {
    bulkheads: ratelimit.bulkheads === undefined ? undefined : bulkheadsOption(ratelimit.bulkheads),
    outboundAdaptive:
      ratelimit.outboundAdaptive === undefined
        ? undefined
        : parseOutboundAdaptive(ratelimit.outboundAdaptive, 'ratelimit.outboundAdaptive'),
  };
}

function bulkheadsOption(raw: unknown): BulkheadsOption {
  const path = 'ratelimit.bulkheads';
  const obj = optionObject(raw, path);
  onlyOptionKeys(obj, path, BULKHEADS_KEYS);
  const defaults = obj.defaults === undefined ? undefined : bulkhead(obj.defaults, `${path}.defaults`);
  let services: Record<string, BulkheadOptions> | undefined;
  if (obj.services !== undefined) {
    const entries = Object.entries(optionObject(obj.services, `${path}.services`));
    if (entries.length > BULKHEAD_BOUNDS.services)
      throw badOption(`${path}.services`, `${entries.length} services; at most ${BULKHEAD_BOUNDS.services} have their own numbers`);
    // A null prototype: a service named like an Object method reads its own entry or none.
    services = Object.create(null) as Record<string, BulkheadOptions>;
    for (const [name, entry] of entries) {
      const problem = serviceNameProblem(name);
      // The name in the field's path bounded as the problem shows it (a valid one is at most 63).
      if (problem !== undefined) throw badOption(`${path}.services.${name.slice(0, 80)}`, problem);
      const at = `${path}.services.${name}`;
      services[name] = bulkhead(entry, at);
    }
  }
  return { ...(defaults ? { defaults } : {}), ...(services ? { services } : {}) };
}

function bulkhead(raw: unknown, path: string): BulkheadOptions {
  const obj = optionObject(raw, path);
  onlyOptionKeys(obj, path, BULKHEAD_KEYS);
  const { maxConcurrent, maxQueue } = obj;
  if (maxConcurrent !== undefined && !wholeNumber(maxConcurrent, 1, BULKHEAD_BOUNDS.maxConcurrent))
    throw badOption(
      `${path}.maxConcurrent`,
      `${shownValue(maxConcurrent)} must be a whole number from 1 to ${BULKHEAD_BOUNDS.maxConcurrent}`,
    );
  if (maxQueue !== undefined && !wholeNumber(maxQueue, 0, BULKHEAD_BOUNDS.maxQueue))
    throw badOption(`${path}.maxQueue`, `${shownValue(maxQueue)} must be a whole number from 0 to ${BULKHEAD_BOUNDS.maxQueue}`);
  return {
    ...(maxConcurrent !== undefined ? { maxConcurrent: maxConcurrent as number } : {}),
    ...(maxQueue !== undefined ? { maxQueue: maxQueue as number } : {}),
  };
}

function checkRedisUrl(url: unknown): void {
  const problem = redisUrlProblem(url);
  if (problem !== undefined) throw badOption('ratelimit.redisUrl', problem);
}

/**
 * What is wrong with a Redis URL (`ratelimit.redisUrl`), or undefined when the connection
 * takes it. An empty string is no Redis, as an empty configured value is (code such as
 * `redisUrl: process.env.REDIS_URL ?? ''` means that). The URL itself is not shown: it
 * may hold a password.
 */
function redisUrlProblem(url: unknown): string | undefined {
  if (url === undefined || url === '') return undefined;
  if (typeof url !== 'string') return `${shownValue(url)} must be a redis://, rediss:// or redis+sentinel:// URL`;
  if (url.startsWith('redis+sentinel:')) {
    // Several Sentinel hosts are no WHATWG URL: the connection's own parser reads them.
    try {
      parseSentinelUrl(url);
    } catch {
      return 'is not redis+sentinel://host:port[,host:port…]/<primary name>';
    }
    return undefined;
  }
  let protocol: string;
  try {
    protocol = new URL(url).protocol;
  } catch {
    return 'is not a URL (redis://host:port, rediss://…, redis+sentinel://…)';
  }
  // The scheme shown bounded: it is the caller's text.
  return REDIS_PROTOCOLS.includes(protocol) ? undefined : `${shownValue(protocol)} is not redis:, rediss: or redis+sentinel:`;
}

function checkRedisTimeout(timeoutMs: unknown): void {
  if (
    timeoutMs !== undefined &&
    !(typeof timeoutMs === 'number' && Number.isFinite(timeoutMs) && timeoutMs > 0 && timeoutMs <= MAX_REDIS_TIMEOUT_MS)
  )
    throw badOption('ratelimit.redisTimeoutMs', `${shownValue(timeoutMs)} must be milliseconds above 0, at most ${MAX_REDIS_TIMEOUT_MS}`);
}
