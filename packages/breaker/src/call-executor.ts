import {
  ApiMatcher,
  type AttemptFields,
  apiKey,
  type BreakerStateName,
  type Clock,
  type Logger,
  NoInstanceError,
  noteAttempt,
  type RuleFeed,
  refusedInstanceAttributes,
  silentLogger,
  sleep,
  systemClock,
  type Unsubscribe,
} from '@meshlet/core';
import { tellSettled } from './attempt-settled.js';
import { AttemptAbort, breakerVerdict, callVerdict, DeadlineSweep, runTimed, TimedAbort, timedOutByLoop } from './attempt-signal.js';
import { backoffDelay } from './backoff.js';
import { BodyVerdict } from './body-verdict.js';
import { Breaker, type BreakerSnapshot, REJECTED } from './breaker.js';
import { BreakerEvents, type BreakerId, type BreakerLevel } from './breaker-events.js';
import {
  type ApiRule,
  type BreakerRules,
  breakerRuleKind,
  defaultRetryPolicy,
  type RetryPolicy,
  type StaticFallback,
} from './breaker-rule.js';
import { type CallDefaults, defaultCallDefaults } from './call-defaults.js';
import { CircuitOpenError } from './circuit-open-error.js';
import { defaultClassifier, type FailureClassifier } from './failure-classifier.js';
import { type HedgedAttempt, Hedger, type HedgeStats } from './hedge.js';
import { InstanceBreakers, type ServiceInstanceBreakers } from './instance-breakers.js';
import { RetryBudget } from './retry-budget.js';
import { RetryCounts, type RetryCountsSnapshot, type RetryReason, retryReasonOfStatus, retrySpanAttributes } from './retry-counts.js';
import { sendFailureOf, staleRepeated } from './send-failure.js';
import { TrackedCall } from './tracked-call.js';

/** Methods that may be sent twice without harm (RFC 9110 §9.2.2). */
export const IDEMPOTENT_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);

export type Fallback = (error: CircuitOpenError) => Response | Promise<Response>;

/** What an attempt resolves with: a WHATWG Response, or any client's result with a status. */
export interface CallResult {
  readonly status: number;
}

/**
 * The record of one attempt the executor hands down to `send` (core's `Attempt` when the
 * call is an `OutboundCall` and the instance an `AttemptTarget`): the call, where it goes,
 * its number, its signal and the service breaker's state, so that nothing below asks the
 * executor back. `notes`, `attributes` and `injected` are filled on the way down.
 */
export interface AttemptRecord<I> extends AttemptFields {
  readonly call: unknown;
  readonly target: I;
  /**
   * The attempt's abort when the executor times it (its timeout, the caller's signal): a
   * transport that can cancel by itself hooks it here (`abort.onAbort`) rather than reading
   * `signal`, which makes an AbortSignal on first read. Undefined without a timeout.
   */
  readonly abort?: AttemptAbort | undefined;
  /**
   * True for the one attempt of a call that goes again to an instance already tried because
   * its kept-alive connection went stale (SendFailure `stale`): the transport should send it
   * on a new connection, not on another kept-alive one that may have gone stale too (the
   * mesh's own transports do).
   */
  readonly freshConnection?: boolean;
}

/**
 * One governed call, as the SDK's fetch describes it. `R` is what an attempt resolves with
 * (a Response by default); a fallback always gives a Response.
 */
export interface GovernedCall<I extends { readonly id: string }, R extends CallResult = Response> {
  readonly service: string;
  readonly method: string;
  /** The request path without its query; finds the API rule. Ignored when `api` is given. */
  readonly path?: string;
  /** The API key (`GET /users/{id}`) when the caller knows it. */
  readonly api?: string;
  /** The caller's signal: aborting it ends the call, and the outcome does not count against the upstream. */
  readonly signal?: AbortSignal;
  /**
   * An instance not in `tried`, or undefined when none is left. Routing leaves out what
   * the InstanceExclusion excludes; `tried` holds the instances this call already used.
   * The first attempt's pick is given an empty set; a later one may be too (an attempt
   * that goes again to the only instance after its connection went stale: SendFailure).
   */
  pick(tried: ReadonlySet<string>): I | undefined;
  /**
   * Sends one attempt. `signal` aborts at the attempt's timeout or when the caller's signal
   * aborts; `attempt` is the record of it (the same signal, its number, the breaker state,
   * where shadow notes and the injected mark go).
   */
  send(instance: I, signal: AbortSignal | undefined, attempt: AttemptRecord<I>): Promise<R>;
  /**
   * Frees a result dropped for a retry (its connection). Default: cancels a Response's body;
   * give it when `R` is not a Response.
   */
  discard?(result: R): void;
  /**
   * True when `result` was made by the mesh (an injected fault), not by the instance: it
   * does not count for or against the instance, as Envoy's fault filter runs before its
   * router. Service and API breakers still see it.
   */
  injected?(result: R): boolean;
  /**
   * Told when an attempt's connection was refused (nothing was sent): routing's
   * `reportUnreachable`. The executor classifies the error once, for this and its retries.
   */
  unreachable?(instance: I): void;
  /** Used when a breaker rejects, before the rule's fallback. */
  readonly fallback?: Fallback;
  /**
   * Told once for every attempt `send` was called for (the record it was given), when the
   * promise `send` returned settled: its result, or `result` undefined and the error. The
   * executor tells it right after its own await of the attempt, before it reads the
   * outcome (a raced timed attempt: when the attempt's own promise settles; a hedge's
   * attempts: when each settles), so the front end's per-attempt observers (the span, the
   * in-flight count) end there without a promise of their own (core's `AttemptChain.settle`).
   * It must not throw: a throw from it is dropped.
   */
  settled?(attempt: AttemptRecord<I>, result: R | undefined, error: unknown): void;
  /**
   * Asked for the call's answer when it is a success (a hedged call's: the winner's): true when
   * the front end will tell `verdict` how the answer's body ends (`whole`, `broken`), so
   * that a body broken after the headers counts against the instance and the call's
   * breakers as a failed answer would. False (or absent): the answer is settled at its
   * headers, as before. It must not throw.
   */
  watchBody?(result: R, verdict: BodyVerdict): boolean;
  /**
   * Told when the call fails without an answer (a breaker's refusal without a fallback, no
   * instance, the error of its last attempt), just before its promise rejects: a front end
   * that reports refusals (a span for the logical call) needs no step on the call's promise.
   */
  rejected?(error: unknown): void;
  /**
   * Told when a breaker's refusal was answered by its fallback (nothing was sent), with the
   * refusal and the fallback's answer: a front end that reports refusals makes the span of
   * the logical call from them. A fallback that throws is told as `rejected`.
   */
  fellBack?(refusal: CircuitOpenError, response: Response): void;
  /**
   * A fallback's Response as the call's result type (the front end's): when given, the
   * call resolves with `R` only, and its caller needs no step to convert.
   */
  fromResponse?(response: Response): R;
  /**
   * True when `send` reads the attempt's abort from its record (`abort`, or `signal`), not
   * from its `signal` argument: the executor then passes no signal and makes none unless
   * the record's is read.
   */
  readonly abortsOnRecord?: boolean;
  /**
   * A promise, for a timed attempt: the promise `send` returns settles by itself once the
   * record's abort (`rec.abort`) aborts — at the attempt's deadline, or when the caller's
   * `signal` aborts — rejecting with the abort's `reason` (the TimeoutError, or the
   * caller's reason), and every layer between the executor and the transport (the attempt
   * chain's interceptors: a fault's delay) honours the record's abort too. The mesh's own
   * transports keep it: undici's dispatch and the gRPC unary call hook their cancel on the
   * abort.
   *
   * What the executor does with it: with `abortsOnRecord` and no hedge for the call, a
   * timed attempt is awaited as it is — its abort is its deadline entry and its listener
   * on the caller's signal — without runTimed's racing promise; the attempt's outcome is
   * whatever that promise settles with, and it is settled (`settled`) once, then. Without
   * `abortsOnRecord`, or for a hedged call, the flag is ignored and the race runs.
   *
   * A call that says so and does not keep it is trusted all the same: the abort still fires
   * (its hook runs, its signal aborts), but nothing races the transport, so the call waits
   * for it past its deadline and past the caller's abort — forever, if it never settles —
   * and a late answer is the attempt's result (a success, not a TimeoutError). Leave it
   * unset unless the transport rejects on the abort: the race then guarantees the timeout
   * even if `send` ignores its abort. Tests: `test/settles-on-abort.test.ts`.
   */
  readonly settlesOnAbort?: boolean;
  /** False when the request cannot be sent twice (a streamed body): no retries whatever the rule says. */
  readonly retryable?: boolean;
  /**
   * Asked of an answer the classifier does not call a failure, when the retry rule allows
   * another attempt: true when it is worth another instance all the same (a gRPC call a
   * peer's Meshlet limiter refused at its door, RESOURCE_EXHAUSTED with `x-meshlet-limited`:
   * the handler never ran). Such an answer is retried as a failed one is — within the rule's
   * count, paid from the retry budget, on an instance not tried yet, after the backoff — but
   * counts as the answer it is, not against the instance's breaker: a limiter refusing is
   * not its instance failing. A hedged call asks it of every answer: such an answer does
   * not win the race (the other attempt is waited for). It must not throw.
   */
  retryableAnswer?(result: R): boolean;
  /**
   * Told when a `breaker` section in shadow mode would have decided otherwise
   * (`breaker:<service|api|instance|timeout>:<would-reject|would-open|would-exclude|would-time-out>`);
   * the call goes on as if the section were absent. For the CLIENT span's io.meshlet.shadow.
   */
  shadow?(note: string): void;
}

/** What a `breaker` section in shadow mode would have done, per service, since it was applied. */
export interface BreakerShadowStats {
  /** Calls a service or API breaker would have rejected. */
  wouldReject: number;
  /** Service, API or instance breakers that would have opened (an instance one: ejected). */
  wouldOpen: number;
  /** Attempts sent to an instance its breaker would have kept out of routing. */
  wouldExclude: number;
  /** Attempts that outlived the section's timeoutMs. */
  wouldTimeOut: number;
}

export interface CallExecutorOptions {
  readonly clock?: Clock;
  /** Jitter source, [0, 1); seed it in tests. */
  readonly random?: () => number;
  /** Transitions of service and API breakers; instance breakers announce on `instanceBreakers.events`. */
  readonly events?: BreakerEvents;
  readonly instanceBreakers?: InstanceBreakers;
  readonly logger?: Logger;
  /**
   * Protection for services without rules (and the parts a `breaker` section leaves out):
   * retries when nothing was sent, passive outlier ejection. Default: `defaultCallDefaults`;
   * false: a service without rules is passed straight to `send`.
   */
  readonly defaults?: Partial<CallDefaults> | false;
}

interface ApiEntry {
  readonly breaker: Breaker;
  readonly fallback: Fallback | undefined;
  readonly key: string;
}

/** Everything a call to one service needs, computed when its rules change. */
interface Governance {
  readonly rules: BreakerRules;
  readonly classifier: FailureClassifier;
  readonly serviceBreaker: Breaker | undefined;
  readonly serviceFallback: Fallback | undefined;
  readonly matcher: ApiMatcher;
  readonly apis: ReadonlyMap<string, ApiEntry>;
  readonly instances: ServiceInstanceBreakers | undefined;
  readonly timeoutMs: number;
  readonly retry: RetryPolicy | undefined;
  /** Retries of an attempt that sent nothing (any method) when the rules have no `retry`. */
  readonly defaultRetries: number;
  readonly budget: RetryBudget | undefined;
  readonly hedger: Hedger | undefined;
  readonly fingerprints: Readonly<Record<string, string>>;
  /** Store revision of the rule document these rules came from (0: none, or not told), for the span of a refused call. */
  readonly revision: number;
}

/** The breakers of a `breaker` section in shadow mode: fed every outcome, obeyed by nothing. */
interface Shadow {
  readonly rules: BreakerRules;
  readonly serviceBreaker: Breaker | undefined;
  readonly matcher: ApiMatcher;
  readonly apis: ReadonlyMap<string, Breaker>;
  readonly instances: ServiceInstanceBreakers | undefined;
  readonly timeoutMs: number;
  readonly stats: BreakerShadowStats;
}

const EMPTY: ReadonlySet<string> = new Set();

/**
 * What a call's `breaker` section in shadow mode noted before its first attempt, for that
 * attempt's record (its span): the notes, and the key of the API breaker that would have
 * refused the call (matched once, when it was asked).
 */
interface ShadowFirst {
  notes: string[] | undefined;
  api: string | undefined;
}

/** The API key a call is governed under: the one it names, else its method and path matched once against the rules' templates. */
function apiOf(call: { readonly api?: string; readonly method: string; readonly path?: string }, matcher: ApiMatcher): string | undefined {
  return call.api ?? (call.path === undefined ? undefined : matcher.match(call.method, call.path)?.key);
}
/** The rules of a service without a `breaker` section: the defaults alone. */
const NO_RULES: BreakerRules = { apis: [], failureStatuses: ['5xx'], classifier: defaultClassifier };

/**
 * Governance around one outbound call: service breaker, then API breaker, then attempts —
 * each to an instance routing picks, through its instance breaker, under a timeout — and
 * retries with backoff and a budget. Outcomes are recorded at all three levels: instance
 * per attempt, service and API once per call. Services without a `breaker` section (and
 * sections without an `instance` rule or `retry`) get the CallDefaults: outlier ejection,
 * and retries on another instance when nothing was sent.
 */
export class CallExecutor {
  readonly events: BreakerEvents;
  /** The InstanceExclusion routing should use. */
  readonly instanceBreakers: InstanceBreakers;
  readonly #clock: Clock;
  readonly #random: () => number;
  readonly #logger: Logger;
  readonly #services = new Map<string, Governance>();
  readonly #fallbacks = new Map<string, Fallback>();
  /** The instances of each service as last told, for the ejection cap of breakers made later. */
  readonly #ids = new Map<string, readonly string[]>();
  readonly #defaults: CallDefaults | undefined;
  /** Sections in shadow mode; their breakers announce on #shadowEvents, not on `events`. */
  readonly #shadows = new Map<string, Shadow>();
  readonly #shadowEvents = new BreakerEvents();
  readonly #shadowInstances: InstanceBreakers;
  /** Retries per called service, by reason (sent, refused by the budget): kept across rule changes, dropped with the destination (forget). */
  readonly #retryCounts = new Map<string, RetryCounts>();
  /** The attempts' timeouts: one timer per timeout value, not one per attempt. */
  readonly #sweep: DeadlineSweep;

  constructor(options: CallExecutorOptions = {}) {
    this.#clock = options.clock ?? systemClock;
    this.#sweep = new DeadlineSweep(this.#clock);
    this.#random = options.random ?? Math.random;
    this.#logger = options.logger ?? silentLogger;
    this.events = options.events ?? new BreakerEvents();
    this.instanceBreakers = options.instanceBreakers ?? new InstanceBreakers({ clock: this.#clock });
    this.#defaults = options.defaults === false ? undefined : { ...defaultCallDefaults, ...options.defaults };
    this.#shadowInstances = new InstanceBreakers({ clock: this.#clock, events: this.#shadowEvents });
    // An enforced breaker's opening (an instance's: its ejection) is a degraded state: one
    // coded line, and back to closed another (the logger throttles both: breakers can flap).
    for (const events of [this.events, this.instanceBreakers.events]) {
      events.onOpen.add((e) =>
        this.#logger.warn('breaker opened; calls it covers are rejected until it probes', {
          code: 'MESHLET_BREAKER_OPENED',
          ...breakerFields(e.breaker),
          reason: e.reason,
        }),
      );
      events.onClose.add((e) =>
        this.#logger.info('breaker closed; calls flow again', { code: 'MESHLET_BREAKER_CLOSED', ...breakerFields(e.breaker) }),
      );
    }
    this.#shadowEvents.onOpen.add((e) => {
      const sh = this.#shadows.get(e.breaker.service);
      if (sh === undefined) return;
      sh.stats.wouldOpen++;
      this.#noteShadow(e.breaker.service, `breaker:${e.breaker.level}:would-open`, undefined, {
        reason: e.reason,
        ...(e.breaker.api !== undefined ? { api: e.breaker.api } : {}),
        ...(e.breaker.instance !== undefined ? { instance: e.breaker.instance } : {}),
      });
    });
  }

  /** What the `breaker` section of `service`, in shadow mode, would have done; undefined when it is not in shadow mode. */
  shadowStats(service: string): Readonly<BreakerShadowStats> | undefined {
    return this.#shadows.get(service)?.stats;
  }

  #noteShadow(
    service: string,
    note: string,
    call: { shadow?(note: string): void } | undefined,
    fields?: Record<string, string>,
    attempt?: { notes: string[] | undefined },
  ): void {
    this.#logger.info('breaker rules in shadow mode would have acted on this call', {
      code: 'MESHLET_BREAKER_SHADOW',
      service,
      shadow: note,
      ...fields,
    });
    call?.shadow?.(note);
    if (attempt !== undefined) noteAttempt(attempt, note);
  }

  /**
   * A fallback function for `service` (or one API of it, by key), used when a breaker
   * there rejects; it wins over the rule's static fallback. Takes effect on the next rules.
   */
  setFallback(service: string, fallback: Fallback | undefined, api?: string): void {
    const key = api === undefined ? service : `${service} ${api}`;
    if (fallback) this.#fallbacks.set(key, fallback);
    else this.#fallbacks.delete(key);
    const gov = this.#services.get(service);
    if (gov) this.#services.set(service, this.#compile(service, gov.rules, gov, gov.revision));
  }

  /**
   * Applies the `breaker` section of `service` (undefined: the defaults alone). Breakers whose
   * rule did not change keep their state; the others start closed. `revision`: the store
   * revision of the document the section came from, for the span of a refused call.
   */
  setRules(service: string, rules: BreakerRules | undefined, revision = 0): void {
    if (rules?.mode === 'shadow') {
      this.#shadows.set(service, this.#compileShadow(service, rules, this.#shadows.get(service)));
      // Enforced: the defaults alone, as if the section were absent (with `defaults: false`,
      // nothing: but the attempts still run here, where the shadow instance breakers and timeout watch them).
      rules = NO_RULES;
    } else if (this.#shadows.delete(service)) this.#shadowInstances.configure(service, undefined);
    const old = this.#services.get(service);
    if (rules === undefined && this.#defaults === undefined) {
      this.#services.delete(service);
      if (old?.instances) this.instanceBreakers.configure(service, undefined);
      return;
    }
    this.#services.set(service, this.#compile(service, rules ?? NO_RULES, old, revision));
  }

  /** Follows the `breaker` section of a service's rules (core's RuleWatcher), now and on change. */
  follow(rules: RuleFeed): Unsubscribe {
    const service = rules.service;
    return rules.follow(breakerRuleKind, (section, revision) => this.setRules(service, section, revision));
  }

  /** The instances `service` has now, for the ejection cap; breakers of departed instances are dropped. */
  setInstances(service: string, ids: Iterable<string>): void {
    const list = [...ids];
    this.#ids.set(service, list);
    this.#governance(service)?.instances?.setInstances(list);
    this.#shadows.get(service)?.instances?.setInstances(list);
  }

  /**
   * Drops everything kept for `service`: its breakers (instance ones too, so routing stops
   * excluding them), retry budget, hedger, shadow section and instance list. The mesh
   * calls it when it releases an idle destination, after it stopped following its rules;
   * a call still in flight settles on the state it started with. Fallbacks set with
   * `setFallback` are the application's and stay.
   */
  forget(service: string): void {
    const gov = this.#services.get(service);
    this.#services.delete(service);
    this.#ids.delete(service);
    this.#retryCounts.delete(service);
    if (gov?.instances) this.instanceBreakers.configure(service, undefined);
    if (this.#shadows.delete(service)) this.#shadowInstances.configure(service, undefined);
  }

  /** The rules of `service` compiled, or the defaults alone the first time a service without rules is called. */
  #governance(service: string): Governance | undefined {
    let gov = this.#services.get(service);
    if (gov === undefined && this.#defaults !== undefined) {
      gov = this.#compile(service, NO_RULES, undefined, 0);
      this.#services.set(service, gov);
    }
    return gov;
  }

  /** The breaker of one level, if the rules made one. */
  breaker(level: Exclude<BreakerLevel, 'instance'>, service: string, api?: string): Breaker | undefined {
    const gov = this.#services.get(service);
    if (!gov) return undefined;
    return level === 'service' ? gov.serviceBreaker : api === undefined ? undefined : gov.apis.get(api)?.breaker;
  }

  /**
   * Governance for a call of `service` this executor does not run (a gRPC stream: its
   * messages cannot be replayed once it opened): the call passes its service and API
   * breakers as a unary call does (`call`: its method and path, for the API rules), their
   * permits settled by `outcome`; the instance breakers' permits and outcomes of its tries,
   * and its further tries paid from the retry budget (see TrackedCall). Counts the call in
   * the budget when it `mayRetry`, and turns half-open the instance breakers whose sleep
   * window ended, as the start of every executor call does. Undefined when the service has
   * no governance (no rules, no call defaults). Throws CircuitOpenError when its service or
   * API breaker refuses it (there is no fallback for a stream).
   */
  track(service: string, mayRetry: boolean, call?: { readonly method: string; readonly path: string }): TrackedCall | undefined {
    const gov = this.#governance(service);
    if (gov === undefined) return undefined;
    const levels: { breaker: Breaker; permit: number }[] = [];
    const sb = gov.serviceBreaker;
    if (sb !== undefined) {
      const permit = sb.tryAcquire();
      if (permit === REJECTED) throw this.#refusal(service, gov, sb, undefined);
      levels.push({ breaker: sb, permit });
    }
    const key = call === undefined || gov.apis.size === 0 ? undefined : apiOf(call, gov.matcher);
    const entry = key === undefined ? undefined : gov.apis.get(key);
    if (entry !== undefined) {
      const permit = entry.breaker.tryAcquire();
      if (permit === REJECTED) {
        for (const level of levels) level.breaker.release(level.permit);
        throw this.#refusal(service, gov, entry.breaker, entry.key);
      }
      levels.push({ breaker: entry.breaker, permit });
    }
    const now = this.#clock.now();
    this.instanceBreakers.poll(now);
    if (mayRetry) gov.budget?.recordCall(now);
    return new TrackedCall(service, gov.instances, gov.budget, gov.classifier, this.#clock, levels, this.#retriesOf(service));
  }

  /** Retry budget counters of `service`. */
  retryStats(service: string): { calls: number; retries: number; denied: number } | undefined {
    return this.#services.get(service)?.budget?.stats;
  }

  /** Retries of every called service that had one (sent or refused), by reason, since the destination was last followed. */
  retryCounts(): RetryCountsSnapshot[] {
    // A gRPC stream's tracked call holds its service's counts from the start, retried or not.
    return [...this.#retryCounts.values()].filter((c) => c.any).map((c) => c.snapshot);
  }

  #retriesOf(service: string): RetryCounts {
    let c = this.#retryCounts.get(service);
    if (c === undefined) {
      c = new RetryCounts(service, this.#logger);
      this.#retryCounts.set(service, c);
    }
    return c;
  }

  /** Hedging counters of `service`, when its rules hedge. */
  hedgeStats(service: string): HedgeStats | undefined {
    return this.#services.get(service)?.hedger?.stats;
  }

  /** State and counts of every breaker, for a dashboard. */
  snapshot(): BreakerSnapshot[] {
    const out: BreakerSnapshot[] = [];
    for (const gov of this.#services.values()) {
      if (gov.serviceBreaker) out.push(gov.serviceBreaker.snapshot());
      for (const a of gov.apis.values()) out.push(a.breaker.snapshot());
      if (gov.instances) out.push(...gov.instances.snapshot());
    }
    return out;
  }

  /** Runs one call; resolves with the final result (a 5xx too, once retries are spent) or a fallback's Response. */
  call<I extends { readonly id: string }, R extends CallResult = Response>(call: GovernedCall<I, R>): Promise<R | Response> {
    const sh = this.#shadows.get(call.service);
    // Not async: without a shadow section the call's own promise is returned as it is.
    return sh === undefined ? this.#call(call, undefined, undefined) : this.#callShadowed(call, sh);
  }

  async #callShadowed<I extends { readonly id: string }, R extends CallResult = Response>(
    call: GovernedCall<I, R>,
    sh: Shadow,
  ): Promise<R | Response> {
    // The shadow section's service and API breakers: asked, fed the outcome, not obeyed.
    const sb = sh.serviceBreaker;
    const sPermit = sb === undefined ? REJECTED : sb.tryAcquire();
    // Notes for the first attempt's record (its span), made before there is one.
    const first: ShadowFirst = { notes: undefined, api: undefined };
    if (sb !== undefined && sPermit === REJECTED) this.#wouldReject(sh, call, 'service', first);
    let api: Breaker | undefined;
    let aPermit = REJECTED;
    if (sh.apis.size !== 0) {
      const key = apiOf(call, sh.matcher);
      api = key === undefined ? undefined : sh.apis.get(key);
      if (api !== undefined) {
        aPermit = api.tryAcquire();
        if (aPermit === REJECTED) {
          first.api = key;
          this.#wouldReject(sh, call, 'api', first);
        }
      }
    }
    const start = this.#clock.now();
    const done = (failed: boolean | undefined) => {
      const ms = this.#clock.now() - start;
      for (const [b, p] of [
        [sb, sPermit],
        [api, aPermit],
      ] as const) {
        if (b === undefined || p === REJECTED) continue;
        if (failed === undefined) b.release(p);
        else b.record(p, failed, ms);
      }
    };
    try {
      const res = await this.#call(call, sh, first);
      done(sh.rules.classifier.response(res.status));
      return res;
    } catch (err) {
      done(callVerdict(sh.rules.classifier, err, call.signal?.aborted === true) === 'failure' ? true : undefined);
      throw err;
    }
  }

  #wouldReject(sh: Shadow, call: GovernedCall<{ readonly id: string }, CallResult>, level: 'service' | 'api', first: ShadowFirst): void {
    sh.stats.wouldReject++;
    this.#noteShadow(call.service, `breaker:${level}:would-reject`, call, undefined, first);
  }

  /**
   * The call up to its first attempt, without an await: governance, then the service and
   * API breakers (a refusal returns here), then the attempts and their outcome in one async
   * function. A synchronous throw (routing found no instance) becomes the call's rejection.
   */
  #call<I extends { readonly id: string }, R extends CallResult = Response>(
    call: GovernedCall<I, R>,
    sh: Shadow | undefined,
    first: ShadowFirst | undefined,
  ): Promise<R | Response> {
    try {
      return this.#begin(call, sh, first);
    } catch (err) {
      call.rejected?.(err);
      return Promise.reject(err);
    }
  }

  #begin<I extends { readonly id: string }, R extends CallResult = Response>(
    call: GovernedCall<I, R>,
    sh: Shadow | undefined,
    first: ShadowFirst | undefined,
  ): Promise<R | Response> {
    const gov = this.#governance(call.service);
    if (gov === undefined) {
      const instance = call.pick(EMPTY);
      if (instance === undefined) throw new NoInstanceError(call.service);
      const signal = call.signal;
      const rec = record(call, instance, 0, signal, undefined, first?.notes);
      const sent = this.#send(call, instance, signal, rec);
      if (call.unreachable === undefined && call.rejected === undefined && call.settled === undefined) return sent;
      // No governance, but the attempt is settled and routing still hears of a refused connection.
      return sent.then(
        call.settled === undefined
          ? undefined
          : (res) => {
              tellSettled(call, rec, res, undefined);
              return res;
            },
        (err: unknown) => {
          tellSettled(call, rec, undefined, err);
          if (sendFailureOf(err) === 'not-sent') call.unreachable?.(instance);
          call.rejected?.(err);
          throw err;
        },
      );
    }
    // The clock is read twice for a call answered at once (here, and when its attempt
    // ends, which is when the call ends) and the reading handed on, not read again by
    // every breaker, counter and deadline.
    const start = this.#clock.now();
    this.instanceBreakers.poll(start);
    const sb = gov.serviceBreaker;
    let sPermit = REJECTED;
    if (sb !== undefined) {
      sPermit = sb.tryAcquire();
      if (sPermit === REJECTED) return this.#rejected(call, gov, sb, undefined, call.fallback ?? gov.serviceFallback);
    }
    let entry: ApiEntry | undefined;
    let aPermit = REJECTED;
    if (gov.apis.size !== 0) {
      const key = apiOf(call, gov.matcher);
      entry = key === undefined ? undefined : gov.apis.get(key);
      if (entry !== undefined) {
        aPermit = entry.breaker.tryAcquire();
        if (aPermit === REJECTED) {
          sb?.release(sPermit);
          return this.#rejected(call, gov, entry.breaker, entry.key, call.fallback ?? entry.fallback);
        }
      }
    }
    return this.#attempts(gov, call, sh, first, start, sPermit, entry, aPermit);
  }

  /**
   * The attempts of one call and its outcome at the service and API breakers: the call's
   * one async function. An attempt that needs no retry, hedge or timeout is awaited once,
   * as the transport's own promise; a timed one too when its transport settles on its abort
   * (`settlesOnAbort`), else it runs in runTimed's race.
   */
  async #attempts<I extends { readonly id: string }, R extends CallResult>(
    gov: Governance,
    call: GovernedCall<I, R>,
    sh: Shadow | undefined,
    first: ShadowFirst | undefined,
    start: number,
    sPermit: number,
    entry: ApiEntry | undefined,
    aPermit: number,
  ): Promise<R> {
    const clock = this.#clock;
    const { retry, instances, classifier, timeoutMs } = gov;
    const sb = gov.serviceBreaker;
    let res: R;
    /** When the last attempt's answer was read, if it was (the call's end, read once). */
    let answeredAt: number | undefined;
    /** The answer is the call's, and its body's end will be told (BodyVerdict). */
    let bodyFollows = false;
    try {
      // The state of the service breaker the call passed, for every attempt's record (its span).
      const state = sb === undefined ? undefined : stateName(sb.state);
      const replayable = call.retryable !== false;
      const idempotent = IDEMPOTENT_METHODS.has(call.method);
      // Retries of a request that may have reached the server (a failed answer, a broken
      // connection, a timeout): the rule's, for the methods it allows.
      const retries = retry !== undefined && replayable && (retry.retryNonIdempotent || idempotent) ? retry.maxRetries : 0;
      // Retries of an attempt that sent nothing: safe for any method (the rule's count, else the default).
      const notSentRetries = replayable ? (retry?.maxRetries ?? gov.defaultRetries) : 0;
      // Without a rule, a connection that broke before the answer is retried for idempotent methods.
      const brokenRetries = retry !== undefined ? retries : idempotent ? notSentRetries : 0;
      // Hedging (an idempotent call, a `hedge` rule) races each attempt against a second one; see hedge.ts.
      const hedger = gov.hedger !== undefined && replayable && idempotent ? gov.hedger : undefined;
      // A timed attempt needs no race when the transport settles on its abort (and no hedge races it).
      const direct = hedger === undefined && call.settlesOnAbort === true && call.abortsOnRecord === true;
      if (notSentRetries > 0 || retries > 0 || hedger !== undefined) gov.budget?.recordCall(start);
      let tried: Set<string> | undefined;
      let next = call.pick(EMPTY);
      // An attempt went again to an instance already tried (a stale connection): once a call.
      let wentAgain = false;
      let fresh = false;
      /** Why the next attempt is a retry (undefined: it is the first). */
      let retryReason: RetryReason | undefined;
      for (let attempt = 0; ; attempt++) {
        // Take the instance breaker's permit; an instance whose probe permits are all taken
        // (routing had not yet heard) is skipped for another.
        let instance = next;
        let permit = REJECTED;
        let refused: string[] | undefined;
        while (instance !== undefined && instances !== undefined) {
          permit = instances.acquire(instance.id);
          if (permit !== REJECTED) break;
          if (refused === undefined) refused = [instance.id];
          else refused.push(instance.id);
          tried ??= new Set();
          tried.add(instance.id);
          instance = call.pick(tried);
        }
        if (instance === undefined) {
          const err = new NoInstanceError(call.service, attempt === 0 ? 'no instance to send to' : 'no instance left to retry on');
          throw refused === undefined ? err : Object.assign(err, { spanAttributes: refusedInstanceAttributes('instance', refused) });
        }
        let id = instance.id;
        // The first attempt starts when the call does: nothing between them waits.
        let t0 = attempt === 0 ? start : clock.now();
        // The record of this attempt, handed down; with a timeout, its signal is the timeout's
        // abort's, made only if read (a transport may hook the abort instead).
        let abort: AttemptAbort | undefined;
        if (timeoutMs > 0) {
          if (!direct) abort = new AttemptAbort();
          else {
            call.signal?.throwIfAborted();
            abort = new TimedAbort(this.#sweep, t0, timeoutMs, call.signal, call.service);
          }
        }
        const rec = record(
          call,
          instance,
          attempt,
          abort !== undefined ? undefined : call.signal,
          state,
          first?.notes,
          abort,
          entry?.key,
          t0,
        );
        if (refused !== undefined) rec.attributes = refusedInstanceAttributes(undefined, refused);
        if (retryReason !== undefined) {
          this.#retriesOf(call.service).sent(retryReason);
          // The span says why: a `stale` retry on an instance already tried is why it got two attempts.
          const why = retrySpanAttributes(retryReason);
          rec.attributes = rec.attributes === undefined ? why : { ...rec.attributes, ...why };
        }
        if (fresh) {
          rec.freshConnection = true;
          fresh = false;
        }
        const watch = sh === undefined ? undefined : this.#watchAttempt(sh, call, id, rec, first?.api);
        first = undefined;
        // The attempt's settle (`call.settled`): told here after the await, by runTimed when
        // it races the attempt, by the hedger for the attempts it sends.
        let tell = hedger === undefined && call.settled !== undefined;
        // A hedged attempt: which instance's outcome is recorded here, read once it settled.
        const hedged: HedgedAttempt<I> | undefined = hedger === undefined ? undefined : { instance, permit, start: t0, other: undefined };
        let out: R;
        try {
          try {
            if (abort === undefined || direct) {
              try {
                out = await this.#send(call, instance, abort === undefined ? call.signal : undefined, rec, hedger, gov, instances, hedged);
              } finally {
                if (abort !== undefined) (abort as TimedAbort).end();
              }
            } else {
              const timed = abort;
              const settled = tell ? (res: R | undefined, err: unknown) => tellSettled(call, rec, res, err) : undefined;
              tell = false;
              out = await runTimed(
                this.#sweep,
                clock,
                timeoutMs,
                call.signal,
                timed,
                () =>
                  this.#send(
                    call,
                    rec.target,
                    call.abortsOnRecord === true ? undefined : timed.signal,
                    rec,
                    hedger,
                    gov,
                    instances,
                    hedged,
                  ),
                call.service,
                t0,
                settled,
              );
            }
          } finally {
            // A hedged attempt: the one whose outcome stands is recorded below (see HedgedAttempt),
            // and a retry leaves out the other's instance too.
            if (hedged !== undefined) {
              ({ instance, permit, start: t0 } = hedged);
              id = instance.id;
              if (hedged.other !== undefined) {
                tried ??= new Set();
                tried.add(hedged.other);
              }
            }
          }
        } catch (err) {
          if (tell) tellSettled(call, rec, undefined, err);
          const callerAborted = call.signal?.aborted === true;
          const verdict = classifier.error(err, callerAborted);
          // Classified once: for routing (a refused connection) and for the retry below.
          const failure = verdict === 'failure' || call.unreachable !== undefined ? sendFailureOf(err) : 'other';
          try {
            // Inside the try: the permit is recorded or released whatever this does.
            if (failure === 'not-sent') call.unreachable?.(instance);
            if (verdict !== 'failure') throw err;
            const limit = failure === 'not-sent' ? notSentRetries : failure === 'broken' || failure === 'stale' ? brokenRetries : retries;
            if (attempt >= limit) throw err;
            tried ??= new Set();
            // A stale kept-alive connection says nothing about its instance: with no untried
            // instance left, the attempt may go again to one already tried, on a new connection.
            // Once a call: a new connection cannot meet the idle-close race again, so a second
            // stale failure is an instance closing what it is sent, not a race.
            const again = failure === 'stale' && !wentAgain;
            next = this.#nextForRetry(gov, call, tried, id, failure, again);
            if (next === undefined) throw err;
            retryReason = failure;
            if (again && tried.has(next.id)) {
              wentAgain = true;
              fresh = true;
            }
          } finally {
            // Recorded once the retry is decided: an attempt that goes again to its instance on
            // a new connection leaves the instance's verdict to that attempt (the race was the
            // connection pool's), at the instance breaker as at its shadow. One that goes to
            // another instance or ends the call counts only when its transport marked it
            // repeated: the instance's kept-alive connections broke so before with none
            // answering between, which a race on a healthy instance does not do and an instance
            // that breaks every reused connection always does (markStaleConnection).
            const unsaid = fresh || (failure === 'stale' && !staleRepeated(err));
            if (watch !== undefined && sh !== undefined)
              watch(unsaid ? undefined : breakerVerdict(sh.rules.classifier, err, callerAborted) === 'failure' ? true : undefined);
            if (instances !== undefined) {
              const counted = timedOutByLoop(err) ? 'ignore' : verdict;
              if (counted === 'ignore' || rec.injected === true || unsaid) instances.release(id, permit);
              else {
                const end = clock.now();
                instances.record(id, permit, counted === 'failure', end - t0, end);
              }
            }
          }
          await this.#backoff(retry, attempt, call.signal);
          continue;
        }
        if (tell) tellSettled(call, rec, out, undefined);
        const failed = classifier.response(out.status);
        const injected = rec.injected === true || call.injected?.(out) === true;
        // No failure, but worth another instance (GovernedCall.retryableAnswer); asked only while the rule allows one more.
        const another = !failed && !injected && attempt < retries && call.retryableAnswer?.(out) === true;
        watch?.(injected ? undefined : sh?.rules.classifier.response(out.status));
        // A success whose body's end the front end will tell: settled then (BodyVerdict).
        if (!failed && !another && !injected && call.watchBody !== undefined) {
          const v = new BodyVerdict(instances, id, permit, sb, sPermit, entry?.breaker, aPermit, classifier, clock, call.signal);
          if (call.watchBody(out, v)) bodyFollows = true;
        }
        if (instances !== undefined) {
          if (injected) instances.release(id, permit);
          else {
            // Also the call's end when this answer is its result: nothing waits in between.
            answeredAt = clock.now();
            instances.record(id, permit, failed, answeredAt - t0, answeredAt, bodyFollows);
          }
        }
        // An injected failure (a fault rule's abort; a hedge marks only good answers) is the
        // caller's to see, not retried: Envoy's fault filter runs before its router.
        if (!another && (!failed || attempt >= retries || injected)) {
          res = out;
          break;
        }
        tried ??= new Set();
        const reason = another ? 'answer' : retryReasonOfStatus(out.status);
        next = this.#nextForRetry(gov, call, tried, id, reason);
        if (next === undefined) {
          res = out;
          break;
        }
        retryReason = reason;
        // The response is dropped for the retry: free its connection.
        if (call.discard !== undefined) call.discard(out);
        else if (out instanceof Response) void out.body?.cancel().catch(() => {});
        answeredAt = undefined;
        await this.#backoff(retry, attempt, call.signal);
      }
    } catch (err) {
      if (callVerdict(gov.classifier, err, call.signal?.aborted === true) === 'failure') {
        const end = clock.now();
        const ms = end - start;
        sb?.record(sPermit, true, ms, end);
        entry?.breaker.record(aPermit, true, ms, end);
      } else {
        sb?.release(sPermit);
        entry?.breaker.release(aPermit);
      }
      call.rejected?.(err);
      throw err;
    }
    const failed = gov.classifier.response(res.status);
    const end = answeredAt ?? clock.now();
    const ms = end - start;
    sb?.record(sPermit, failed, ms, end, bodyFollows);
    entry?.breaker.record(aPermit, failed, ms, end, bodyFollows);
    return res;
  }

  /**
   * One attempt as the shadow section sees it: its instance breaker asked (an instance it
   * would keep out of routing is noted) and, with the section's timeoutMs, a deadline check
   * that notes the attempt would have timed out; `api`, the key of the shadow API breaker
   * that would have refused the call (its first attempt only), goes on the record for the
   * span. The returned function takes the outcome (undefined: says nothing about the instance).
   */
  #watchAttempt(
    sh: Shadow,
    call: GovernedCall<{ readonly id: string }, CallResult>,
    id: string,
    rec: {
      notes: string[] | undefined;
      settled: (() => void) | undefined;
      attributes: Readonly<Record<string, string | number>> | undefined;
    },
    api: string | undefined,
  ): (failed: boolean | undefined) => void {
    const clock = this.#clock;
    if (api !== undefined) rec.attributes = { ...rec.attributes, 'io.meshlet.circuit.shadow_api': api };
    const instances = sh.instances;
    let permit = REJECTED;
    if (instances !== undefined) {
      this.#shadowInstances.poll();
      permit = instances.acquire(id);
      if (permit === REJECTED) {
        sh.stats.wouldExclude++;
        this.#noteShadow(call.service, 'breaker:instance:would-exclude', call, { instance: id }, rec);
      }
    }
    const t0 = clock.now();
    if (sh.timeoutMs > 0) {
      // A deadline check, not a timer: run when the attempt settles (by the span first, so
      // the note is on it), counted then.
      const deadline = t0 + sh.timeoutMs;
      let checked = false;
      rec.settled = () => {
        if (checked) return;
        checked = true;
        if (clock.now() < deadline) return;
        sh.stats.wouldTimeOut++;
        this.#noteShadow(call.service, 'breaker:timeout:would-time-out', call, { instance: id }, rec);
      };
    }
    return (failed) => {
      rec.settled?.();
      if (instances === undefined || permit === REJECTED) return;
      if (failed === undefined) instances.release(id, permit);
      else instances.record(id, permit, failed, clock.now() - t0);
    };
  }

  /** Breakers for a section in shadow mode; those whose rule did not change keep their state. */
  #compileShadow(service: string, rules: BreakerRules, old: Shadow | undefined): Shadow {
    const group = { clock: this.#clock, events: this.#shadowEvents };
    const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
    const serviceBreaker = rules.service
      ? old?.serviceBreaker !== undefined && same(old.rules.service?.policy, rules.service.policy)
        ? old.serviceBreaker
        : new Breaker({ level: 'service', service }, rules.service.policy, group)
      : undefined;
    const apis = new Map<string, Breaker>();
    const templates = [];
    for (const rule of rules.apis) {
      for (const t of rule.apis) {
        const key = apiKey(t);
        templates.push(t);
        const before = old?.rules.apis.find((r) => r.apis.some((a) => apiKey(a) === key));
        const kept = before !== undefined && same(before.policy, rule.policy) ? old?.apis.get(key) : undefined;
        apis.set(key, kept ?? new Breaker({ level: 'api', service, api: key }, rule.policy, group));
      }
    }
    let instances = old?.instances;
    if (rules.instance === undefined) {
      if (instances) this.#shadowInstances.configure(service, undefined);
      instances = undefined;
    } else if (instances === undefined || !same(old?.rules.instance, rules.instance)) {
      instances = this.#shadowInstances.configure(service, rules.instance.policy, rules.instance.maxEjectionPercent);
      const ids = this.#ids.get(service);
      if (instances && ids) instances.setInstances(ids);
    }
    return {
      rules,
      serviceBreaker,
      matcher: new ApiMatcher(templates),
      apis,
      instances,
      timeoutMs: rules.timeoutMs ?? 0,
      stats: old?.stats ?? { wouldReject: 0, wouldOpen: 0, wouldExclude: 0, wouldTimeOut: 0 },
    };
  }

  /** One attempt down to the call: hedged when the rules hedge this call (see hedge.ts). */
  #send<I extends { readonly id: string }, R extends CallResult>(
    call: GovernedCall<I, R>,
    instance: I,
    signal: AbortSignal | undefined,
    rec: AttemptRecord<I>,
    hedger?: Hedger,
    gov?: Governance,
    instances?: ServiceInstanceBreakers,
    hedged?: HedgedAttempt<I>,
  ): Promise<R> {
    if (hedger === undefined) return call.send(instance, signal, rec);
    const g = gov as Governance;
    return hedger.send(call, rec, g.budget, g.classifier, instances, hedged as HedgedAttempt<I>);
  }

  /**
   * The instance for a retry for `reason`, or undefined when none is left or the budget is
   * spent (counted and logged, MESHLET_RETRY_BUDGET). With
   * `again` (the failed attempt's connection went stale) and no untried instance left,
   * routing picks among the tried ones less `failedId`: that instance again, if routing
   * would still send the call there.
   */
  #nextForRetry<I extends { readonly id: string }, R extends CallResult>(
    gov: Governance,
    call: GovernedCall<I, R>,
    tried: Set<string>,
    failedId: string,
    reason: RetryReason,
    again = false,
  ): I | undefined {
    tried.add(failedId);
    let next = call.pick(tried);
    if (next === undefined && again) {
      const others = new Set(tried);
      others.delete(failedId);
      next = call.pick(others);
    }
    if (next === undefined) return undefined;
    if (gov.budget !== undefined && !gov.budget.tryRetry()) {
      this.#retriesOf(call.service).refused(reason);
      return undefined;
    }
    return next;
  }

  #backoff(retry: RetryPolicy | undefined, attempt: number, signal: AbortSignal | undefined): Promise<void> {
    if (retry === undefined) return Promise.resolve();
    // The caller awaits this call: its backoff keeps the process alive, as the socket would.
    return sleep(this.#clock, backoffDelay(attempt + 1, retry.backoff, this.#random), signal, { keepAlive: true });
  }

  async #rejected<I extends { readonly id: string }, R extends CallResult>(
    call: GovernedCall<I, R>,
    gov: Governance,
    breaker: Breaker,
    api: string | undefined,
    fallback: Fallback | undefined,
  ): Promise<R | Response> {
    const err = this.#refusal(call.service, gov, breaker, api);
    if (fallback === undefined) {
      call.rejected?.(err);
      throw err;
    }
    let res: Response;
    try {
      res = await fallback(err);
    } catch (error) {
      call.rejected?.(error);
      throw error;
    }
    call.fellBack?.(err, res);
    return call.fromResponse !== undefined ? call.fromResponse(res) : res;
  }

  /** A service or API breaker's refusal of a call: which breaker refused, its state and the rules revision (for the span of the refused call). */
  #refusal(service: string, gov: Governance, breaker: Breaker, api: string | undefined): CircuitOpenError {
    const sb = gov.serviceBreaker;
    return new CircuitOpenError(breaker.id.level, service, api, breaker.retryAfter(), {
      state: stateName(breaker.state),
      ...(sb !== undefined ? { serviceState: stateName(sb.state) } : {}),
      revision: gov.revision,
    });
  }

  #compile(service: string, rules: BreakerRules, old: Governance | undefined, revision: number): Governance {
    const clock = this.#clock;
    const group = { clock, events: this.events };
    const fp: Record<string, string> = {};
    const same = (key: string, value: unknown) => {
      fp[key] = JSON.stringify(value);
      return old !== undefined && old.fingerprints[key] === fp[key];
    };

    let serviceBreaker: Breaker | undefined;
    if (rules.service) {
      serviceBreaker = same('service', rules.service.policy) ? old?.serviceBreaker : undefined;
      serviceBreaker ??= new Breaker({ level: 'service', service }, rules.service.policy, group);
    }
    const apis = new Map<string, ApiEntry>();
    const templates = [];
    for (const rule of rules.apis) {
      for (const t of rule.apis) {
        const key = apiKey(t);
        templates.push(t);
        const kept = same(`api ${key}`, rule.policy) ? old?.apis.get(key)?.breaker : undefined;
        apis.set(key, {
          key,
          breaker: kept ?? new Breaker({ level: 'api', service, api: key }, rule.policy, group),
          fallback: this.#fallbacks.get(`${service} ${key}`) ?? staticFallback(rule),
        });
      }
    }
    const defaults = this.#defaults;
    // The rule's instance breakers, else default outlier detection.
    const instanceRule = rules.instance ?? (defaults?.outlierDetection || undefined);
    let instances = old?.instances;
    if (!instanceRule) {
      if (instances) this.instanceBreakers.configure(service, undefined);
      instances = undefined;
    } else if (!same('instance', instanceRule) || instances === undefined) {
      instances = this.instanceBreakers.configure(service, instanceRule.policy, instanceRule.maxEjectionPercent);
      const ids = this.#ids.get(service);
      if (instances && ids) instances.setInstances(ids);
    }
    const defaultRetries = defaults?.retries ?? 0;
    // Hedges are paid from the retry budget: the default one when the rules give no retry policy.
    const budgetSpec =
      rules.retry?.budget ?? (defaultRetries > 0 ? defaults?.budget : undefined) ?? (rules.hedge ? defaultRetryPolicy.budget : undefined);
    let budget: RetryBudget | undefined;
    if (budgetSpec) {
      budget = same('budget', budgetSpec) ? old?.budget : undefined;
      budget ??= new RetryBudget({ ...budgetSpec, clock });
    }
    const hedger = rules.hedge ? ((same('hedge', rules.hedge) ? old?.hedger : undefined) ?? new Hedger(rules.hedge, clock)) : undefined;
    return {
      rules,
      classifier: rules.classifier,
      serviceBreaker,
      serviceFallback: this.#fallbacks.get(service) ?? (rules.service ? staticFallback(rules.service) : undefined),
      matcher: new ApiMatcher(templates),
      apis,
      instances,
      timeoutMs: rules.timeoutMs ?? 0,
      retry: rules.retry,
      defaultRetries,
      budget,
      hedger,
      fingerprints: fp,
      revision,
    };
  }
}

/** The rule's static response as a Fallback; a new Response each time, as a body reads once. */
function staticFallback(rule: { readonly fallback?: StaticFallback } | ApiRule): Fallback | undefined {
  const f = rule.fallback;
  if (f === undefined) return undefined;
  const json = f.body !== undefined && typeof f.body !== 'string';
  // A parsed rule carries the body serialised; a StaticFallback built in code may not.
  const body = f.bodyText !== undefined ? f.bodyText : f.body === undefined ? null : json ? JSON.stringify(f.body) : (f.body as string);
  const headers: Record<string, string> = {
    ...(json ? { 'content-type': 'application/json' } : {}),
    ...f.headers,
    'x-meshlet-fallback': 'circuit-open',
  };
  return () => new Response(body, { status: f.status, headers });
}

function stateName(state: 'closed' | 'open' | 'half-open'): BreakerStateName {
  return state === 'half-open' ? 'half_open' : state;
}

/** The record of one attempt; with a timeout its signal is its abort's, made when first read. */
class Rec<I> implements AttemptRecord<I> {
  readonly call: unknown;
  readonly target: I;
  readonly number: number;
  readonly breaker: BreakerStateName | undefined;
  readonly api: string | undefined;
  notes: string[] | undefined;
  attributes: Readonly<Record<string, string | number>> | undefined = undefined;
  settled: (() => void) | undefined = undefined;
  // The front end's observers' fields (core's AttemptFields), made with the record: one shape.
  span: object | undefined = undefined;
  spanStart: number | undefined = undefined;
  spanNotes: number | undefined = undefined;
  load: { outstanding: number } | undefined = undefined;
  injected = false;
  freshConnection = false;
  readonly abort: AttemptAbort | undefined;
  readonly startedAt: number | undefined;
  readonly #signal: AbortSignal | undefined;

  constructor(
    call: unknown,
    target: I,
    number: number,
    signal: AbortSignal | undefined,
    breaker: BreakerStateName | undefined,
    notes: string[] | undefined,
    abort: AttemptAbort | undefined,
    api: string | undefined,
    startedAt: number | undefined,
  ) {
    this.call = call;
    this.target = target;
    this.number = number;
    this.#signal = signal;
    this.breaker = breaker;
    this.api = api;
    this.notes = notes;
    this.abort = abort;
    this.startedAt = startedAt;
  }

  get signal(): AbortSignal | undefined {
    return this.abort !== undefined ? this.abort.signal : this.#signal;
  }
}

function record<I>(
  call: unknown,
  target: I,
  number: number,
  signal: AbortSignal | undefined,
  breaker: BreakerStateName | undefined,
  notes: string[] | undefined,
  abort?: AttemptAbort,
  api?: string,
  startedAt?: number,
): Rec<I> {
  return new Rec(call, target, number, signal, breaker, notes, abort, api, startedAt);
}

/** A breaker's identity as log fields: level, service, and its API or instance when it has one. */
function breakerFields(b: BreakerId): Record<string, string> {
  return {
    level: b.level,
    service: b.service,
    ...(b.api !== undefined ? { api: b.api } : {}),
    ...(b.instance !== undefined ? { instance: b.instance } : {}),
  };
}
