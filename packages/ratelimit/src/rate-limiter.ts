import {
  type Clock,
  compileConditions,
  DEFAULT_LOG_INTERVAL_MS,
  type LogFields,
  type Logger,
  type Matcher,
  type RuleFeed,
  silentLogger,
  systemClock,
  TagLimits,
  type TagLookup,
  type Unsubscribe,
  wholeNumberOption,
} from '@meshlet/core';
import { AdaptiveConcurrency, type AdaptiveStats } from './adaptive-concurrency.js';
import type { AdaptiveSection, OverloadStatus } from './adaptive-rule.js';
import type { Release } from './bulkhead.js';
import { ConcurrencySlots } from './concurrency-slots.js';
import { type PathMatcher, parsePathTemplate } from './path-matcher.js';
import {
  type ConcurrencyRule,
  isConcurrencyRule,
  type RateLimitMode,
  type RateLimitRule,
  type RateLimitSection,
  type RuleScope,
  ratelimitRuleKind,
  scopeOf,
  type TokenBucketRule,
  tokensPerMs,
} from './ratelimit-rule.js';
import { RedisKeys, redisKeyPart } from './redis-keys.js';
import { bucketTtlMs, type RedisBucketSpec, type RedisTokenBuckets } from './redis-token-buckets.js';
import { TokenBuckets } from './token-bucket.js';

/** The inbound request a decision is about. */
export interface LimitedRequest {
  readonly method: string;
  /** The request path without the query string. */
  readonly path: string;
  /** Reads the request's tags (system and custom), e.g. `(k) => getTag(k, ctx)`. */
  readonly tag: TagLookup;
}

/** A token bucket rule that refused a request, as a 429 body and a log line name it. */
export interface RefusingBucketRule {
  readonly name: string;
  readonly scope: RuleScope;
  readonly rate: number;
  readonly perMs: number;
  readonly burst: number;
  readonly mode: RateLimitMode;
}

/**
 * A concurrency rule that refused a request: all its slots were held. The adaptive limit
 * refuses as a concurrency rule named `adaptive`, with its status and the request's class.
 */
export interface RefusingConcurrencyRule {
  readonly name: string;
  readonly scope: RuleScope;
  readonly concurrency: number;
  readonly mode: 'local';
  /** Only for the adaptive limit: the refusal's status (429 or 503). */
  readonly status?: OverloadStatus;
  /** Only for the adaptive limit: the traffic class of the refused request. */
  readonly class?: string;
}

/** The name an adaptive-limit refusal carries where a rule's name goes. */
export const ADAPTIVE_RULE_NAME = 'adaptive';

/** The rule that refused a request, as a 429 body and a log line name it. */
export type RefusingRule = RefusingBucketRule | RefusingConcurrencyRule;

/**
 * What `decide` answered. An allowed decision may hold slots of concurrency rules: the
 * caller calls `release()` when the request has finished, however it finished (response
 * sent, connection closed, handler threw). `release` is always there (a no-op when no
 * slot is held), so the one call site cannot forget a case, and it gives the slots back
 * once however often it is called.
 */
export type Decision =
  | {
      readonly allowed: true;
      readonly rule: undefined;
      readonly retryAfterSeconds: 0;
      readonly release: Release;
      /** In shadow mode (`ratelimit.mode: "shadow"`): the rule that would have refused this request. */
      readonly shadow?: RefusingRule;
    }
  | {
      readonly allowed: false;
      readonly rule: RefusingRule;
      readonly retryAfterSeconds: number;
      /**
       * `shared`: the rule's one bucket for every request without a usable value of its `by`
       * tags (absent, over 512 bytes; for a distributed rule also a new value past
       * maxKeysPerRule) refused it, not a bucket of the request's own. Absent otherwise.
       */
      readonly bucket?: 'shared';
    };

const noRelease: Release = () => undefined;

/** An allowed decision that holds no slot. */
export const ALLOWED: Decision = Object.freeze({ allowed: true, rule: undefined, retryAfterSeconds: 0, release: noRelease });

/**
 * Retry-After of a concurrency refusal. Nobody can know when a request in flight ends;
 * one second is the smallest value the header can say and short next to a refused
 * client's backoff, yet long enough not to invite a tight retry loop.
 */
export const CONCURRENCY_RETRY_AFTER_MS = 1000;

/** Refusals by the adaptive limit are logged at most once per this interval, with their count. */
export const OVERLOAD_LOG_INTERVAL_MS = 10_000;

/**
 * At most one MESHLET_RATELIMIT_DEGRADED line (and its RECOVERED) per this interval: a
 * Redis that keeps failing and answering again is told as a count of its outages. The
 * mesh's interval for per-request codes, so a flapping store costs the log what a flood does.
 */
export const REDIS_STATE_LOG_INTERVAL_MS = DEFAULT_LOG_INTERVAL_MS;

/**
 * One rule's counts since it was first applied under its name (a reload that keeps the
 * name keeps them): requests it matched that were admitted, requests it refused, and, in
 * shadow mode, requests it would have refused (counted in `allowed` too, as they were
 * admitted). The adaptive limit, when on, is a row named `(adaptive)` (its own admissions
 * and refusals; no rule can have that name).
 */
export interface RuleLimitStats {
  readonly name: string;
  readonly allowed: number;
  readonly refused: number;
  readonly shadowRefused: number;
}

/** The row of the adaptive limit in RateLimiterStats.rules: parentheses, so no rule's name can be it. */
export const ADAPTIVE_STATS_ROW = '(adaptive)';

/** The mutable counts behind a RuleLimitStats row, kept on the compiled rule. */
interface RuleCounts {
  allowed: number;
  refused: number;
  shadowRefused: number;
}

export interface RateLimiterStats {
  /** True while distributed rules are enforced from local shares because Redis does not answer. */
  readonly degraded: boolean;
  /** Degraded periods: times Redis stopped answering after it had answered for `recoverAfterMs` (or since start). */
  readonly outages: number;
  /** Decisions on distributed rules made from local shares. */
  readonly degradedDecisions: number;
  readonly allowed: number;
  readonly refused: number;
  /** Local buckets held, over every rule (bounded by rules x maxKeysPerRule). */
  readonly buckets: number;
  /**
   * Redis keys of distributed rules this instance has written and Redis still holds, over
   * every rule (bounded by rules x maxKeysPerRule, plus each rule's overflow key).
   */
  readonly redisKeys: number;
  /** Requests of distributed rules sent to their rule's overflow key: a new `by` value while maxKeysPerRule keys were alive. */
  readonly redisKeysOverflowed: number;
  /** Slots of concurrency rules held now by requests in flight, over every rule. */
  readonly inFlight: number;
  /** Requests admitted that a rule in shadow mode would have refused (counted in `allowed` too). */
  readonly shadowRefused: number;
  /** The adaptive concurrency limit, when one is on. */
  readonly adaptive?: AdaptiveStats;
  /** Per rule in force, in the section's order (bounded by the rules of one document), then `(adaptive)` when on. */
  readonly rules: readonly RuleLimitStats[];
}

export interface RateLimiterOptions {
  /** This service: part of the Redis keys, so that services never share buckets by accident. */
  readonly service: string;
  readonly clock?: Clock;
  readonly logger?: Logger;
  /** Where `distributed` rules keep their buckets. Without it they are enforced locally at full rate. */
  readonly redis?: RedisTokenBuckets;
  /** Healthy instances of this service, for the local share when Redis is down. Default 1. */
  readonly instances?: () => number;
  /**
   * Most buckets per rule (one per distinct `by` value). Default 10 000. Local buckets past
   * it are evicted (full ones first); a distributed rule's Redis keys are never evicted
   * (Redis keeps them until their TTL), so a new value while this many are alive counts
   * against the rule's one overflow key.
   */
  readonly maxKeysPerRule?: number;
  /**
   * While degraded, how often one decision tries Redis again. Default 200 ms: until every
   * instance has probed, some admit from Redis and some from their shares, so the fleet can
   * admit up to twice its limit for that long. A probe while Redis is down costs nothing
   * (the connection fails fast without queueing).
   */
  readonly probeIntervalMs?: number;
  /**
   * While degraded, how long probes must find Redis answering, without a failure between,
   * before distributed rules go back to it (from the first probe it admitted: a refusal
   * writes nothing, so it shows nothing of a Redis that fails writes). Default 1 000 ms (6 probes at 200 ms): a Redis
   * that fails every other command (out of memory on writes, replies around the timeout)
   * stays one outage rather than flipping on every probe.
   */
  readonly recoverAfterMs?: number;
  /** Redis key prefix. Default `meshlet:rl:`. */
  readonly keyPrefix?: string;
  /**
   * An adaptive concurrency limit for every inbound request, on until a rule's
   * `ratelimit.adaptive` replaces it (or turns it off with `enabled: false`).
   */
  readonly adaptive?: AdaptiveSection;
  /** Event-loop delay in ms since the last read, for the adaptive limit (`eventLoopDelayMonitor()`). */
  readonly eventLoopDelay?: () => number;
  /** Event-loop utilization since the last read, for the adaptive limit (`eventLoopUtilizationSampler()`). */
  readonly eventLoopUtilization?: () => number;
  /** [0, 1) for the adaptive limit's probe jitter; seed it in tests. */
  readonly random?: () => number;
}

interface CompiledTarget {
  readonly path: PathMatcher | undefined;
  readonly when: Matcher | undefined;
  readonly by: readonly string[];
  /** The fields of its MESHLET_RATELIMIT_TAG_ABSENT line, made once: that code can come with every request. */
  readonly tagAbsent: LogFields;
  /** This rule's counts, carried over a reload that keeps its name. */
  readonly counts: RuleCounts;
}

interface CompiledBucketRule extends CompiledTarget {
  readonly rule: TokenBucketRule;
  readonly refusing: RefusingBucketRule;
  readonly local: TokenBuckets;
  readonly slots: undefined;
  readonly distributed: boolean;
  readonly redisPrefix: string;
  /** For distributed rules: the keys this instance has written to Redis, bounded by maxKeysPerRule. */
  readonly redisKeys: RedisKeys;
  /** For distributed rules while Redis is down: this instance's share of the limit. */
  share: { instances: number; buckets: TokenBuckets } | undefined;
}

interface CompiledConcurrencyRule extends CompiledTarget {
  readonly rule: ConcurrencyRule;
  readonly refusing: RefusingConcurrencyRule;
  readonly local: undefined;
  readonly slots: ConcurrencySlots;
  readonly distributed: false;
}

type CompiledRule = CompiledBucketRule | CompiledConcurrencyRule;

interface Match {
  readonly c: CompiledRule;
  readonly key: string;
}

/** Key of the one bucket that requests without a usable `by` value share. */
const OTHER = '\u0000other';
const SEP = '\u0000';
const METHODS_PRECOMPILED = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'];

/**
 * Decides whether an inbound request is within the rate limits in force. Rules are
 * compiled once when they change (per method, path matchers, condition matchers), so a
 * decision is a few map reads and one bucket update per matching rule. A request must fit
 * every rule that matches it; tokens are taken only when it fits all of them.
 *
 * A concurrency rule admits a request while fewer than `concurrency` matching requests
 * hold a slot; the allowed Decision's `release()` gives the slot back. Slots are taken,
 * like tokens, only when the request fits every rule.
 *
 * Local rules decide synchronously. Distributed rules ask Redis (one round trip for all
 * of them); when Redis fails or is slow, they fall back to this instance's share of the
 * limit (rate and burst divided by `instances()`), say so once in the log, count it in
 * `stats`, and try Redis again every `probeIntervalMs`; they go back to Redis once probes
 * have found it answering for `recoverAfterMs`.
 */
export class RateLimiter {
  readonly #service: string;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #redis: RedisTokenBuckets | undefined;
  readonly #instances: () => number;
  readonly #maxKeys: number;
  readonly #probeMs: number;
  readonly #recoverAfterMs: number;
  readonly #keyPrefix: string;
  #rules: CompiledRule[] = [];
  #revision = 0;
  /** The counts of the rule a refusal names (its `refusing` object), for #count. */
  #countsOf = new Map<RefusingRule, RuleCounts>();
  #byMethod = new Map<string, CompiledRule[]>();
  #anyMethod: CompiledRule[] = [];
  #degraded = false;
  #nextProbeAt = 0;
  /** While degraded: when probes started finding Redis answering, with no failure since. */
  #healthySince: number | undefined;
  #degradedSince = 0;
  /** A DEGRADED line was written and its RECOVERED line is still due. */
  #degradedLogged = false;
  #nextDegradedLogAt = Number.NEGATIVE_INFINITY;
  /** Outages since the last DEGRADED line, told in the next one. */
  #unloggedOutages = 0;
  #outages = 0;
  #degradedDecisions = 0;
  #allowed = 0;
  #refused = 0;
  #shadow = false;
  #shadowRefused = 0;
  #adaptive: AdaptiveConcurrency | undefined;
  readonly #adaptiveDefault: AdaptiveSection | undefined;
  readonly #eventLoopDelay: (() => number) | undefined;
  readonly #eventLoopUtilization: (() => number) | undefined;
  readonly #random: (() => number) | undefined;
  #overloadRefusals = 0;
  #nextOverloadLogAt = Number.NEGATIVE_INFINITY;

  constructor(options: RateLimiterOptions) {
    this.#service = options.service;
    this.#clock = options.clock ?? systemClock;
    this.#logger = options.logger ?? silentLogger;
    this.#redis = options.redis;
    this.#instances = options.instances ?? (() => 1);
    this.#maxKeys = wholeNumberOption(options.maxKeysPerRule, 'maxKeysPerRule', 1, 1_000_000, 10_000);
    this.#probeMs = wholeNumberOption(options.probeIntervalMs, 'probeIntervalMs', 0, 60_000, 200);
    this.#recoverAfterMs = wholeNumberOption(options.recoverAfterMs, 'recoverAfterMs', 0, 600_000, 1000);
    this.#keyPrefix = options.keyPrefix ?? 'meshlet:rl:';
    this.#adaptiveDefault = options.adaptive;
    this.#eventLoopDelay = options.eventLoopDelay;
    this.#eventLoopUtilization = options.eventLoopUtilization;
    this.#random = options.random;
    this.#setAdaptive(undefined);
  }

  /**
   * Replaces the rules in force. A rule that keeps its name and numbers keeps its buckets,
   * so a reload does not hand every client a fresh burst; a changed rule starts from the
   * old levels, capped at its new burst. A concurrency rule that keeps its name keeps its
   * slots: requests in flight still hold them, and a new number applies at once.
   */
  setRules(section: RateLimitSection | undefined): void {
    this.#setAdaptive(section?.adaptive);
    const old = new Map(this.#rules.map((c) => [c.rule.name, c]));
    this.#rules = (section?.rules ?? []).map((rule) => this.#compile(rule, old.get(rule.name)));
    this.#countsOf = new Map(this.#rules.map((c) => [c.refusing as RefusingRule, c.counts]));
    this.#shadow = section?.mode === 'shadow';
    if (this.#redis === undefined) {
      for (const c of this.#rules) {
        if (c.rule.mode === 'distributed' && !old.has(c.rule.name)) {
          this.#logger.warn('distributed rate limit enforced per instance: no Redis configured', {
            code: 'MESHLET_RATELIMIT_NO_REDIS',
            service: this.#service,
            rule: c.rule.name,
          });
        }
      }
    }
    this.#anyMethod = this.#rules.filter((c) => c.rule.api === undefined || c.rule.api.method === '*');
    this.#byMethod = new Map(
      METHODS_PRECOMPILED.map((m) => [
        m,
        this.#rules.filter((c) => c.rule.api === undefined || c.rule.api.method === '*' || c.rule.api.method === m),
      ]),
    );
  }

  /** The rule's adaptive section, else the options' one; on, kept (its state) or off. */
  #setAdaptive(fromRule: AdaptiveSection | undefined): void {
    const section = fromRule ?? this.#adaptiveDefault;
    if (section === undefined || !section.enabled) {
      this.#adaptive = undefined;
      return;
    }
    if (this.#adaptive) this.#adaptive.reconfigure(section);
    else
      this.#adaptive = new AdaptiveConcurrency(section, {
        clock: this.#clock,
        ...(this.#random ? { random: this.#random } : {}),
        ...(this.#eventLoopDelay ? { eventLoopDelay: this.#eventLoopDelay } : {}),
        ...(this.#eventLoopUtilization ? { eventLoopUtilization: this.#eventLoopUtilization } : {}),
      });
  }

  /** The adaptive concurrency limit in force, if any. */
  get adaptive(): AdaptiveConcurrency | undefined {
    return this.#adaptive;
  }

  /** Follows the `ratelimit` section of this service's rules (core's RuleWatcher), now and on change. */
  follow(rules: RuleFeed): Unsubscribe {
    return rules.follow(ratelimitRuleKind, (section, revision) => {
      this.setRules(section);
      this.#revision = revision;
    });
  }

  /** Store revision of the rule document whose `ratelimit` section is in force (0: none, or set directly); for spans. */
  get revision(): number {
    return this.#revision;
  }

  /** The rules in force. */
  get rules(): readonly RateLimitRule[] {
    return this.#rules.map((c) => c.rule);
  }

  get stats(): RateLimiterStats {
    return {
      degraded: this.#degraded,
      outages: this.#outages,
      degradedDecisions: this.#degradedDecisions,
      allowed: this.#allowed,
      refused: this.#refused,
      buckets: this.#rules.reduce((sum, c) => (c.slots === undefined ? sum + c.local.size + (c.share?.buckets.size ?? 0) : sum), 0),
      redisKeys: this.#rules.reduce((sum, c) => (c.slots === undefined ? sum + c.redisKeys.size : sum), 0),
      redisKeysOverflowed: this.#rules.reduce((sum, c) => (c.slots === undefined ? sum + c.redisKeys.overflowed : sum), 0),
      inFlight: this.#rules.reduce((sum, c) => (c.slots === undefined ? sum : sum + c.slots.total), 0),
      shadowRefused: this.#shadowRefused,
      ...(this.#adaptive ? { adaptive: this.#adaptive.stats } : {}),
      rules: this.ruleStats(),
    };
  }

  /** Admitted, refused and would-have-refused per rule in force (and `(adaptive)` when on). */
  ruleStats(): RuleLimitStats[] {
    const out: RuleLimitStats[] = this.#rules.map((c) => ({ name: c.rule.name, ...c.counts }));
    const a = this.#adaptive?.stats;
    if (a) out.push({ name: ADAPTIVE_STATS_ROW, allowed: a.admitted, refused: a.refused, shadowRefused: 0 });
    return out;
  }

  /**
   * Decides `request`, taking `n` tokens from every matching bucket rule and one slot of
   * every matching concurrency rule when it is allowed; call the allowed decision's
   * `release()` when the request finishes. Synchronous (a Decision) unless a distributed rule matches and Redis must be asked
   * (a Promise). Never rejects: Redis trouble means local shares, not an error.
   *
   * With an adaptive limit on, it decides first: a request it refuses spends no token
   * (overload is not the client's fault), and a request the rules then refuse gives its
   * adaptive slot back without a sample.
   */
  decide(request: LimitedRequest, n = 1): Decision | Promise<Decision> {
    const adaptive = this.#adaptive;
    if (adaptive === undefined) return this.#decide(request, n);
    const a = adaptive.tryAcquire(request.tag);
    if (!a.admitted) {
      this.#refused++;
      this.#logOverload(a);
      return {
        allowed: false,
        rule: { name: ADAPTIVE_RULE_NAME, scope: 'service', concurrency: a.limit, mode: 'local', status: a.status, class: a.className },
        retryAfterSeconds: CONCURRENCY_RETRY_AFTER_MS / 1000,
      };
    }
    const d = this.#decide(request, n);
    if (d instanceof Promise)
      return d.then(
        (x) => withAdaptive(x, a),
        (err: unknown) => {
          a.cancel();
          throw err;
        },
      );
    return withAdaptive(d, a);
  }

  /** Logs refusals by the adaptive limit at most once per OVERLOAD_LOG_INTERVAL_MS, with the count since the last line. */
  #logOverload(a: { readonly limit: number; readonly inFlight: number; readonly className: string }): void {
    this.#overloadRefusals++;
    const now = this.#clock.now();
    if (now < this.#nextOverloadLogAt) return;
    this.#nextOverloadLogAt = now + OVERLOAD_LOG_INTERVAL_MS;
    this.#logger.warn('inbound requests refused: over the adaptive concurrency limit', {
      code: 'MESHLET_OVERLOADED',
      service: this.#service,
      limit: a.limit,
      inFlight: a.inFlight,
      class: a.className,
      refused: this.#overloadRefusals,
    });
    this.#overloadRefusals = 0;
  }

  #decide(request: LimitedRequest, n: number): Decision | Promise<Decision> {
    const candidates = this.#byMethod.get(request.method) ?? this.#anyMethod;
    if (candidates.length === 0) return this.#count(ALLOWED);
    let matches: Match[] | undefined;
    let remote = false;
    for (const c of candidates) {
      if (c.path !== undefined && !c.path(request.path)) continue;
      if (c.when !== undefined && !c.when(request.tag)) continue;
      const m: Match = { c, key: bucketKey(c.by, request.tag) };
      if (m.key === OTHER) this.#tagAbsent(c);
      if (matches === undefined) matches = [m];
      else matches.push(m);
      if (c.distributed) remote = true;
    }
    if (matches === undefined) return this.#count(ALLOWED);
    if (!remote) {
      if (matches.length === 1) {
        // The common case: one rule, so check-and-take is one bucket operation.
        const only = matches[0] as Match;
        const { c, key } = only;
        if (c.slots !== undefined)
          return this.#count(c.slots.hasFree(key) ? hold(only.key, c.slots) : refuse(c, CONCURRENCY_RETRY_AFTER_MS, key), only);
        const got = c.local.tryAcquire(key, n);
        return this.#count(got.admitted ? ALLOWED : refuse(c, got.retryAfterMs, key), only);
      }
      return this.#count(this.#local(matches, n, false), matches);
    }
    if (this.#degraded && this.#clock.now() < this.#nextProbeAt) return this.#count(this.#local(matches, n, true), matches);
    if (this.#degraded) this.#nextProbeAt = this.#clock.now() + this.#probeMs; // this decision probes; the rest stay local
    return this.#remote(matches, n);
  }

  async #remote(matches: Match[], n: number): Promise<Decision> {
    // Local rules first: a request they refuse must not spend shared tokens.
    const localOnly = matches.filter((m) => !m.c.distributed);
    const localRefusal = this.#refusal(localOnly, n, false);
    if (localRefusal) return this.#count(localRefusal, matches);
    // Each rule writes at most maxKeysPerRule keys alive in Redis from this instance: a
    // new `by` value past them counts against the rule's overflow key.
    const distributed: { readonly c: CompiledBucketRule; readonly key: string }[] = [];
    const sent = this.#clock.now();
    for (const m of matches) {
      if (m.c.slots !== undefined || !m.c.distributed) continue;
      const part = redisKeyPart(m.key);
      distributed.push({ c: m.c, key: part === OTHER || m.c.redisKeys.admit(part, sent) ? part : OTHER });
    }
    const specs: RedisBucketSpec[] = distributed.map((m) => ({
      key: `${m.c.redisPrefix}${m.key}`,
      ratePerMs: tokensPerMs(m.c.rule),
      burst: m.c.rule.burst,
    }));
    // A probe: this instance is on its local share until Redis has answered for recoverAfterMs.
    const probing = this.#degraded;
    let answer: Awaited<ReturnType<RedisTokenBuckets['tryAcquire']>>;
    try {
      answer = await (this.#redis as RedisTokenBuckets).tryAcquire(specs, n);
    } catch (err) {
      this.#touch(distributed);
      this.#markDown(err);
      return this.#count(this.#local(matches, n, true), matches);
    }
    this.#touch(distributed);
    this.#markUp(answer.admitted);
    if (!answer.admitted) {
      const refusing = (distributed[answer.bucket] ?? distributed[0]) as (typeof distributed)[number];
      return this.#count(refuse(refusing.c, answer.retryAfterMs, refusing.key), matches);
    }
    // Admitted by Redis while still degraded: the local share decides too, so that the probes
    // of a recovery add nothing to what a degraded instance admits (the fleet's bound holds).
    if (probing && this.#degraded) return this.#count(this.#local(matches, n, true), matches);
    // Local levels may have moved during the round trip; take what fits now.
    return this.#count(this.#local(localOnly, n, false), matches);
  }

  /** After a round trip, failed or not (Redis may have run the script): each key lives a TTL from now. */
  #touch(sent: readonly { readonly c: CompiledBucketRule; readonly key: string }[]): void {
    const now = this.#clock.now();
    for (const m of sent) m.c.redisKeys.touch(m.key, now);
  }

  /** Checks every match, then takes from all of them or from none. */
  #local(matches: readonly Match[], n: number, degraded: boolean): Decision {
    if (degraded) this.#degradedDecisions++;
    const refusal = this.#refusal(matches, n, degraded);
    if (refusal) return refusal;
    const held: Held[] = [];
    for (const m of matches) {
      if (m.c.slots === undefined) this.#buckets(m.c, degraded).take(m.key, n);
      else {
        m.c.slots.take(m.key);
        held.push({ slots: m.c.slots, key: m.key });
      }
    }
    return held.length === 0 ? ALLOWED : releasing(held);
  }

  #refusal(matches: readonly Match[], n: number, degraded: boolean): Decision | undefined {
    let worst: Match | undefined;
    let wait = 0;
    for (const m of matches) {
      const w =
        m.c.slots === undefined
          ? this.#buckets(m.c, degraded).wouldWait(m.key, n)
          : m.c.slots.hasFree(m.key)
            ? 0
            : CONCURRENCY_RETRY_AFTER_MS;
      if (w > wait) {
        wait = w;
        worst = m;
      }
    }
    return worst ? refuse(worst.c, wait, worst.key) : undefined;
  }

  #buckets(c: CompiledBucketRule, degraded: boolean): TokenBuckets {
    if (!degraded || !c.distributed) return c.local;
    const instances = Math.max(1, Math.floor(this.#instances()) || 1);
    if (c.share?.instances !== instances) {
      const buckets = new TokenBuckets({
        rate: c.rule.rate / instances,
        perMs: c.rule.perMs,
        burst: Math.max(1, Math.floor(c.rule.burst / instances)),
        clock: this.#clock,
        maxKeys: this.#maxKeys,
      });
      if (c.share) buckets.adopt(c.share.buckets);
      c.share = { instances, buckets };
    }
    return c.share.buckets;
  }

  #markDown(err: unknown): void {
    const now = this.#clock.now();
    this.#nextProbeAt = now + this.#probeMs;
    this.#healthySince = undefined;
    if (!this.#degraded) {
      this.#degraded = true;
      this.#outages++;
      this.#unloggedOutages++;
      this.#degradedSince = now;
    }
    // One DEGRADED line per interval; an outage that outlasts it is told by the next failed probe.
    if (this.#degradedLogged || now < this.#nextDegradedLogAt) return;
    this.#degradedLogged = true;
    this.#nextDegradedLogAt = now + REDIS_STATE_LOG_INTERVAL_MS;
    this.#logger.warn("rate limit Redis unavailable: distributed rules fall back to this instance's share of the limit", {
      code: 'MESHLET_RATELIMIT_DEGRADED',
      service: this.#service,
      instances: this.#instances(),
      // Outages since the previous DEGRADED line, this one included.
      outages: this.#unloggedOutages,
      intervalMs: REDIS_STATE_LOG_INTERVAL_MS,
      reason: err instanceof Error ? err.message : String(err),
    });
    this.#unloggedOutages = 0;
  }

  /**
   * Redis answered. While degraded, only an admission counts towards recovery: a refusal
   * writes nothing, and a Redis out of memory answers refusals while it fails every write.
   */
  #markUp(wrote: boolean): void {
    if (!this.#degraded || !wrote) return;
    const now = this.#clock.now();
    this.#healthySince ??= now;
    if (now - this.#healthySince < this.#recoverAfterMs) return;
    this.#degraded = false;
    this.#healthySince = undefined;
    // Only the end of a period whose start was logged: the lines come in pairs.
    if (!this.#degradedLogged) return;
    this.#degradedLogged = false;
    this.#logger.info('rate limit Redis answers again: distributed rules are shared again', {
      code: 'MESHLET_RATELIMIT_RECOVERED',
      service: this.#service,
      degradedMs: now - this.#degradedSince,
    });
  }

  /**
   * A request without a usable value of `c`'s `by` tags: it counts against the rule's one
   * shared bucket, with every other such request. A per-request code (the mesh's logger
   * keeps it to a line per interval, counted): a misnamed tag turns a per-user limit into
   * one for everybody, and this is where it shows.
   */
  #tagAbsent(c: CompiledRule): void {
    this.#logger.info("request without a usable value of a rate limit rule's `by` tags: counted against its shared bucket", c.tagAbsent);
  }

  /** Counts `d` for the service and for each rule: `matched` admitted it, or its `rule` refused it. */
  #count(d: Decision, matched?: Match | readonly Match[]): Decision {
    if (!d.allowed && this.#shadow) {
      // Shadow mode: evaluated and counted, logged (the mesh's logger throttles this
      // per-request code to one line per interval), put on the span by the caller, not enforced.
      this.#shadowRefused++;
      this.#allowed++;
      const counts = this.#countsOf.get(d.rule);
      if (counts) counts.shadowRefused++;
      admitted(matched);
      this.#logger.info('rate limit in shadow mode would have refused a request', {
        code: 'MESHLET_RATELIMIT_SHADOW',
        service: this.#service,
        rule: d.rule.name,
        ...(d.bucket ? { bucket: d.bucket } : {}),
      });
      return { allowed: true, rule: undefined, retryAfterSeconds: 0, release: noRelease, shadow: d.rule };
    }
    if (d.allowed) {
      this.#allowed++;
      admitted(matched);
    } else {
      this.#refused++;
      const counts = this.#countsOf.get(d.rule);
      if (counts) counts.refused++;
      // The operator's first look is the log: the rule that refused, as the 429 body names
      // it. Warn, as the adaptive limit's MESHLET_OVERLOADED, so the default level shows it;
      // a per-request code: the mesh's logger keeps it to a line per interval, counted.
      this.#logger.warn('rate limit rule refused a request', {
        code: 'MESHLET_RATE_LIMITED',
        service: this.#service,
        rule: d.rule.name,
        scope: d.rule.scope,
        // The shared bucket of requests without the rule's `by` tags refused it, not the request's own.
        ...(d.bucket ? { bucket: d.bucket } : {}),
      });
    }
    return d;
  }

  #compile(rule: RateLimitRule, old: CompiledRule | undefined): CompiledRule {
    const target: CompiledTarget = {
      path: rule.api ? parsePathTemplate(rule.api.path, 'api.path') : undefined,
      when: rule.when.length > 0 ? compileConditions(rule.when) : undefined,
      by: rule.by,
      tagAbsent: Object.freeze({ code: 'MESHLET_RATELIMIT_TAG_ABSENT', service: this.#service, rule: rule.name, by: rule.by.join(',') }),
      counts: old?.counts ?? { allowed: 0, refused: 0, shadowRefused: 0 },
    };
    if (isConcurrencyRule(rule)) {
      // Requests in flight hold slots of the old rule and give them back to the same
      // counter, so the counter survives the reload whatever the new number is.
      const slots = old?.slots ?? new ConcurrencySlots(rule.concurrency);
      slots.limit = rule.concurrency;
      return {
        ...target,
        rule,
        refusing: { name: rule.name, scope: scopeOf(rule), concurrency: rule.concurrency, mode: 'local' },
        local: undefined,
        slots,
        distributed: false,
      };
    }
    const previous = old?.slots === undefined ? old : undefined;
    const same = previous && previous.rule.rate === rule.rate && previous.rule.perMs === rule.perMs && previous.rule.burst === rule.burst;
    let local: TokenBuckets;
    if (same) local = previous.local;
    else {
      local = new TokenBuckets({ rate: rule.rate, perMs: rule.perMs, burst: rule.burst, clock: this.#clock, maxKeys: this.#maxKeys });
      if (previous) local.adopt(previous.local);
    }
    return {
      ...target,
      rule,
      refusing: { name: rule.name, scope: scopeOf(rule), rate: rule.rate, perMs: rule.perMs, burst: rule.burst, mode: rule.mode },
      local,
      slots: undefined,
      distributed: rule.mode === 'distributed' && this.#redis !== undefined,
      // The hash tag keeps one service's buckets in one cluster slot, so a multi-rule script is legal there.
      redisPrefix: `${this.#keyPrefix}{${this.#service}}:${rule.name}:${rule.rate}/${rule.perMs}/${rule.burst}:`,
      // Same numbers, same keys in Redis: they stay counted. New numbers write new keys.
      redisKeys: same ? previous.redisKeys : new RedisKeys(this.#maxKeys, bucketTtlMs(tokensPerMs(rule), rule.burst)),
      share: same ? previous.share : undefined,
    };
  }
}

/** Counts an admitted request for every rule that matched it. */
function admitted(matched: Match | readonly Match[] | undefined): void {
  if (matched === undefined) return;
  if (!Array.isArray(matched)) (matched as Match).c.counts.allowed++;
  else for (const m of matched as readonly Match[]) m.c.counts.allowed++;
}

/** `d`, holding the adaptive slot too: an allowed decision releases both, a refusal gives the slot back. */
function withAdaptive(d: Decision, a: { readonly release: () => void; readonly cancel: () => void }): Decision {
  if (!d.allowed) {
    a.cancel();
    return d;
  }
  const inner = d.release;
  return {
    allowed: true,
    rule: undefined,
    retryAfterSeconds: 0,
    release: () => {
      inner();
      a.release();
    },
    // A shadow decision stays one under the adaptive limit.
    ...(d.shadow ? { shadow: d.shadow } : {}),
  };
}

/** A slot a decision holds: the counter it was taken from (which outlives reloads) and its key. */
interface Held {
  readonly slots: ConcurrencySlots;
  readonly key: string;
}

/** The allowed decision of a request that took one slot (the common case: one concurrency rule). */
function hold(key: string, slots: ConcurrencySlots): Decision {
  slots.take(key);
  return releasing([{ slots, key }]);
}

/** An allowed decision whose `release()` gives `held` back, the first time only. */
function releasing(held: readonly Held[]): Decision {
  let released = false;
  return {
    allowed: true,
    rule: undefined,
    retryAfterSeconds: 0,
    release: () => {
      if (released) return;
      released = true;
      for (const h of held) h.slots.give(h.key);
    },
  };
}

/** The refusal by `c`'s bucket `key` (OTHER: the shared one). */
function refuse(c: CompiledRule, waitMs: number, key: string): Decision {
  const retryAfterSeconds = Number.isFinite(waitMs) ? Math.max(1, Math.ceil(waitMs / 1000)) : 3600;
  return key === OTHER
    ? { allowed: false, rule: c.refusing, retryAfterSeconds, bucket: 'shared' }
    : { allowed: false, rule: c.refusing, retryAfterSeconds };
}

/**
 * The bucket of a request under a rule split `by` tags. A request without the tag, or
 * with a value over the tag bound, counts against one shared bucket: it is limited, and
 * a flood of huge or absent values cannot mint a bucket each.
 */
function bucketKey(by: readonly string[], tag: TagLookup): string {
  if (by.length === 0) return '';
  let key = '';
  for (let i = 0; i < by.length; i++) {
    const v = tag(by[i] as string);
    if (v === undefined || overBound(v)) return OTHER;
    key = i === 0 ? v : `${key}${SEP}${v}`;
  }
  return key;
}

function overBound(v: string): boolean {
  if (v.length > TagLimits.maxValueBytes) return true;
  return v.length * 3 > TagLimits.maxValueBytes && Buffer.byteLength(v, 'utf8') > TagLimits.maxValueBytes;
}
