import { type Instance, instanceOrigin } from './instance.js';
import type { TagLookup } from './rules/condition.js';

/**
 * The governed outbound call, one way down: the call executor (breaker) takes an instance
 * from routing's picker, then hands each attempt down as an `Attempt` record to a chain
 * composed once per mesh — the CLIENT span (trace) and the in-flight count (route) as
 * observers, told when the attempt starts and when it settles; fault injection (fault) as
 * an interceptor around the send — and the front end's transport last. Nothing below asks
 * anything above it: what a layer below needs (the route decision, the attempt number, the
 * breaker state, the signal) is on the record, and so is what an observer keeps between
 * the attempt's start and its end. The types live here because the packages that own the
 * stages import core and no sibling.
 */

/** What a result needs for the executor: the status it classifies by. */
export interface AttemptResult {
  readonly status: number;
}

/** Where an attempt goes, as routing decided it (@meshlet/route's RouteDecision fits). */
export interface AttemptTarget {
  /** The instance's id (what the breakers and the tried set key on). */
  readonly id: string;
  readonly instance: Instance;
  /** The route rule that matched, for the span. */
  readonly rule: string | undefined;
  /** The lane that served the call; undefined for the baseline. */
  readonly lane: string | undefined;
  /** A route section in shadow mode: the rule it would have applied. */
  readonly shadow?: string | undefined;
  /** Store revision of the rule document whose route section decided (0: none in force). */
  readonly revision?: number;
  /**
   * Routing's own span attributes for the decision (the group a rule chose, where an empty
   * group sent the call, instances of the pool skipped because their breakers are open): one
   * object per pool or rule group, made when the routing table is rebuilt, so a span can
   * take them with the attributes it starts with; undefined for most decisions without a rule.
   */
  readonly spanAttributes?: Readonly<Record<string, string | number>> | undefined;
}

/** The outbound headers: a WHATWG Headers, or a plain object with lower-case names (undici's). */
export type AttemptHeaders = Headers | Record<string, string | string[]>;

/** One logical call, as every attempt of it sees it. Built once per call by the front end's pipeline. */
export interface OutboundCall<R extends AttemptResult> {
  readonly service: string;
  /** Upper case. */
  readonly method: string;
  readonly path: string;
  /** `?…`, or empty. */
  readonly search: string;
  /** Added to by the attempts (trace context); shared by them. */
  readonly headers: AttemptHeaders;
  /** The request's tags as routing and faults read them. */
  readonly tags: TagLookup;
  /** The transport: sends one attempt to `attempt.target` (the front end's client). */
  transport(attempt: Attempt<R>): Promise<R>;
  /**
   * A Response the mesh made for `attempt` (an injected fault) as the front end's result.
   * The attempt is always given: a front end that also converts a breaker's fallback with
   * this method (the executor calls it without one) tells the two apart by it.
   */
  fromResponse(response: Response, attempt: Attempt<R>): R;
}

/** A breaker's state, as spans name it. */
export type BreakerStateName = 'closed' | 'open' | 'half_open';

/**
 * What every attempt record holds besides its call and target: the executor fills the
 * first three, the layers below fill the rest on the way down. Core's `Attempt` and the
 * breaker's `AttemptRecord` (generic over its target) are both this plus call and target.
 */
export interface AttemptFields {
  /** 0 for the first attempt, n for the n-th retry or hedge. */
  readonly number: number;
  /** Aborts at the attempt's timeout, when the caller's signal aborts, or when a hedge lost. */
  readonly signal: AbortSignal | undefined;
  /** The state of the service breaker the call passed; undefined without one. */
  readonly breaker: BreakerStateName | undefined;
  /**
   * The API key (`GET /orders/{id}`) of the api breaker the call passed; undefined when no
   * api breaker rule covers the call (or the layer above has none).
   */
  readonly api?: string | undefined;
  /**
   * Shadow-mode notes for the span's io.meshlet.shadow (`<kind>:<rule>:<would-be>`), in the
   * order they arose; undefined while there is none (nothing allocated for most calls).
   */
  notes: string[] | undefined;
  /**
   * Span attributes a layer below the span adds (fault's `io.meshlet.fault.*`): an object
   * made once per rule, never per attempt; undefined for most attempts.
   */
  attributes: Readonly<Record<string, string | number>> | undefined;
  /**
   * The record's own settle hook, run when the attempt has settled, before the observers
   * are told (`AttemptChain.settle`): the breaker's shadow `timeoutMs` is such a deadline
   * check — a note when the attempt outlived it, which the span then carries — instead of
   * a timer per attempt. The executor may run it earlier (a raced timeout): the hook runs
   * its check once however often it is called. Undefined for most attempts.
   */
  settled: (() => void) | undefined;
  /**
   * The executor's clock reading when it handed the attempt down (the first attempt's is
   * the call's start: nothing waits between them), for an observer on the same clock to time
   * the attempt from instead of reading the clock again; undefined when the executor does not say.
   */
  readonly startedAt?: number | undefined;
  /**
   * The CLIENT span observer's state between `started` and `settled` (trace's span record
   * or span handle); undefined when the attempt has none (unsampled) and once it ended.
   */
  span?: object | undefined;
  /**
   * When the CLIENT span observer started timing the attempt (its clock's reading), for
   * the call metrics of an attempt without a span record; undefined otherwise.
   */
  spanStart?: number | undefined;
  /**
   * How many shadow `notes` the span started with: it sets io.meshlet.shadow again at its
   * end only when more came while the attempt ran.
   */
  spanNotes?: number | undefined;
  /**
   * The in-flight count of the attempt's instance (route's least-requests load), taken in
   * the observer's `started` and given back in its `settled`; undefined when not counted.
   */
  load?: { outstanding: number } | undefined;
  /**
   * Set when the result was not the instance's doing (a fault injected it): it counts for
   * or against no instance.
   */
  injected: boolean;
}

/**
 * One attempt, handed down by the call executor. The interceptors read it and may add to
 * `notes` and set `injected`; they never ask the layers above for anything.
 */
export interface Attempt<R extends AttemptResult = AttemptResult> extends AttemptFields {
  readonly call: OutboundCall<R>;
  readonly target: AttemptTarget;
}

/** Sends one attempt on; resolves with the result or rejects with the attempt's error. */
export type AttemptHandler = <R extends AttemptResult>(attempt: Attempt<R>) => Promise<R>;

/** One per-attempt concern that wraps the send: does its part around `next` (the rest of the chain). */
export type AttemptInterceptor = <R extends AttemptResult>(attempt: Attempt<R>, next: AttemptHandler) => Promise<R>;

/**
 * One per-attempt concern that needs only the attempt's start and its end (a span, a
 * count): it does not wrap the send, so it costs no promise, `.then` or closure per
 * attempt. `started` runs on the way down, before the send; `settled` once the send's
 * promise settled — with its result, or with `result` undefined and the error. What an
 * observer keeps in between lives in the record's own fields (`span`, `spanStart`,
 * `load`), never in a closure or a map; `settled` reads it from there, clears it, and does
 * nothing when it is not there (its `started` threw, or it was told already).
 *
 * An observer that throws does not break the call: the throw is reported to the chain's
 * `onError` (the mesh logs it, throttled) and the call, and every other observer, go on.
 */
export interface AttemptObserver {
  started(attempt: Attempt): void;
  settled(attempt: Attempt, result: AttemptResult | undefined, error: unknown): void;
}

/** A stage of the attempt chain: an observer, or an interceptor around the send. */
export type AttemptStage = AttemptObserver | AttemptInterceptor;

/** True when `stage` is an observer (one made by `aroundObserver` is both: it counts as an observer). */
function isAttemptObserver(stage: AttemptStage): stage is AttemptObserver {
  return typeof (stage as Partial<AttemptObserver>).started === 'function';
}

/** The transport at the end of every chain: the call's own client. */
export const sendAttempt: AttemptHandler = (attempt) => attempt.call.transport(attempt);

/** Told when an observer threw: the error, and the attempt it threw for. */
export type ObserverErrorHandler = (error: unknown, attempt: Attempt) => void;

const ignoreObserverError: ObserverErrorHandler = () => {};

/**
 * The attempt chain, composed once per mesh: `send` tells the observers the attempt
 * started (outermost first), then runs the interceptors around the transport; `settle`
 * tells them it settled (the record's own `settled` hook first, then the observers,
 * innermost first). Whoever awaits the promise `send` returned calls `settle` once, when
 * it settled — the call executor, right after its own await, so an attempt costs the
 * transport's promise and that await, nothing per observer.
 */
export interface AttemptChain {
  /** Sends one attempt down; a synchronous throw below the observers is the promise's rejection. */
  readonly send: AttemptHandler;
  /** The attempt's send settled: `result`, or `result` undefined and `error`. Call once per `send`. */
  readonly settle: (attempt: Attempt, result: AttemptResult | undefined, error: unknown) => void;
}

/**
 * Composes `stages` (outermost first) around `last` into an AttemptChain. The observers
 * before the first interceptor are told directly (no promise of theirs); an interceptor
 * wraps everything after it, and an observer after an interceptor is run in its around
 * form (`aroundObserver`), so the order of the list is the order of the chain whatever it
 * holds. An observer that throws, in `started` or `settled`, is reported to `onError` and
 * skipped: the call goes on as without it, and its `settled` is still called.
 *
 * This is the one way a chain is built: `chainAttempt` is this chain settling itself, and
 * `aroundObserver` is one observer told the same way, around `next`.
 */
export function composeAttempt(
  stages: readonly AttemptStage[],
  options: { readonly last?: AttemptHandler; readonly onError?: ObserverErrorHandler } = {},
): AttemptChain {
  const onError = options.onError ?? ignoreObserverError;
  let split = stages.findIndex((s) => !isAttemptObserver(s));
  if (split < 0) split = stages.length;
  const { start, settle } = tellers(stages.slice(0, split) as AttemptObserver[], onError);
  let inner = options.last ?? sendAttempt;
  for (let i = stages.length - 1; i >= split; i--) {
    const stage = stages[i] as AttemptStage;
    const interceptor = isAttemptObserver(stage) ? aroundObserver(stage, onError) : stage;
    const next = inner;
    inner = (attempt) => interceptor(attempt, next);
  }
  const rest = inner;
  const send: AttemptHandler = (attempt) => {
    start(attempt);
    return sendOn(rest, attempt);
  };
  return { send, settle };
}

/**
 * How a list of observers is told: `start` (outermost first) and `settle` (the record's
 * own `settled` hook, then innermost first), each throw reported to `onError` and skipped.
 */
function tellers(
  observers: readonly AttemptObserver[],
  onError: ObserverErrorHandler,
): Pick<AttemptChain, 'settle'> & { readonly start: (attempt: Attempt) => void } {
  const n = observers.length;
  return {
    start(attempt) {
      for (let i = 0; i < n; i++) {
        try {
          (observers[i] as AttemptObserver).started(attempt);
        } catch (error) {
          onError(error, attempt);
        }
      }
    },
    settle(attempt, result, error) {
      const hook = attempt.settled;
      if (hook !== undefined) {
        try {
          hook();
        } catch (e) {
          onError(e, attempt);
        }
      }
      for (let i = n - 1; i >= 0; i--) {
        try {
          (observers[i] as AttemptObserver).settled(attempt, result, error);
        } catch (e) {
          onError(e, attempt);
        }
      }
    },
  };
}

/** `next(attempt)`, a synchronous throw as the rejection. */
function sendOn<R extends AttemptResult>(next: AttemptHandler, attempt: Attempt<R>): Promise<R> {
  try {
    return next(attempt);
  } catch (error) {
    return Promise.reject(error);
  }
}

/** `sent`, settling `attempt` (`settle`) in one `.then` once it settled: the self-settling form's one promise. */
function settledBy<R extends AttemptResult>(sent: Promise<R>, attempt: Attempt<R>, settle: AttemptChain['settle']): Promise<R> {
  return sent.then(
    (result) => {
      settle(attempt, result, undefined);
      return result;
    },
    (error: unknown) => {
      settle(attempt, undefined, error);
      throw error;
    },
  );
}

/**
 * `observer` in the around form too: a function `(attempt, next)` that tells it the
 * attempt started, sends on, and tells it the attempt settled in one `.then` (the record's
 * own `settled` hook first), a synchronous throw from `next` as a rejection — told as
 * `composeAttempt` tells its observers. The result is still the observer (its `started`
 * and `settled` are on it): `composeAttempt` uses it as one, without the `.then`.
 */
export function aroundObserver<O extends AttemptObserver>(
  observer: O,
  onError: ObserverErrorHandler = ignoreObserverError,
): O & AttemptInterceptor {
  const started = observer.started.bind(observer);
  const settled = observer.settled.bind(observer);
  const { start, settle } = tellers([{ started, settled }], onError);
  const around = <R extends AttemptResult>(attempt: Attempt<R>, next: AttemptHandler): Promise<R> => {
    start(attempt);
    return settledBy(sendOn(next, attempt), attempt, settle);
  };
  return Object.assign(around, { started, settled }) as unknown as O & AttemptInterceptor;
}

/**
 * `attempt` down `chain`, settled by the chain when its send settles: for a caller that runs
 * an attempt itself rather than through the executor (which settles after its own await).
 */
export function sendSettled<R extends AttemptResult>(chain: AttemptChain, attempt: Attempt<R>): Promise<R> {
  return settledBy(chain.send(attempt), attempt, chain.settle);
}

/**
 * A new attempt record: attempt `number` of `call` to `target`, nothing noted yet, the
 * observers' fields made with it (the executor's record's shape), for a caller that runs
 * attempts itself rather than through the executor.
 */
export function newAttempt<R extends AttemptResult>(
  call: OutboundCall<R>,
  target: AttemptTarget,
  number: number,
  signal: AbortSignal | undefined,
  breaker: BreakerStateName | undefined = undefined,
): Attempt<R> {
  return {
    call,
    target,
    number,
    signal,
    breaker,
    notes: undefined,
    attributes: undefined,
    settled: undefined,
    span: undefined,
    spanStart: undefined,
    spanNotes: undefined,
    load: undefined,
    injected: false,
  };
}

/**
 * `composeAttempt(stages, { last })` as one handler that settles by itself (`settle` in one
 * `.then` per attempt, for all its observers together), for a caller that does not settle
 * attempts itself. Done once per mesh: a call allocates nothing for the chain.
 */
export function chainAttempt(stages: readonly AttemptStage[], last: AttemptHandler = sendAttempt): AttemptHandler {
  const { send, settle } = composeAttempt(stages, { last });
  return (attempt) => settledBy(send(attempt), attempt, settle);
}

/**
 * An attempt's `io.meshlet.shadow` for its CLIENT span (HTTP's and gRPC's alike): the route
 * decision's note first (`route:<rule>:would-route`), then the attempt's notes in the order
 * they arose; undefined when there is none.
 */
export function shadowOf(attempt: {
  readonly target: Pick<AttemptTarget, 'shadow'>;
  readonly notes: readonly string[] | undefined;
}): string | undefined {
  const route = attempt.target.shadow;
  const notes = attempt.notes;
  if (route === undefined) return notes === undefined || notes.length === 0 ? undefined : notes.join(' ');
  const first = `route:${route}:would-route`;
  return notes === undefined || notes.length === 0 ? first : `${first} ${notes.join(' ')}`;
}

/** How many ids a span attribute names at most (`namedIds`). */
export const MAX_NAMED_IDS = 10;

/**
 * Instance ids as one span attribute value, bounded: the first `MAX_NAMED_IDS`
 * space-separated, then ` …` when there were more (the count, when the span wants it, is an
 * attribute of its own). Routing's `io.meshlet.route.ejected_ids` and the breaker's
 * `io.meshlet.circuit.instances` alike.
 */
export function namedIds(ids: readonly string[]): string {
  return ids.length > MAX_NAMED_IDS ? `${ids.slice(0, MAX_NAMED_IDS).join(' ')} …` : ids.join(' ');
}

/**
 * The span attributes of instances an attempt's breakers refused (`io.meshlet.circuit.instances`,
 * bounded by `namedIds`), with `io.meshlet.circuit.level` `instance` when the refusal is the
 * call's end: the executor's and a gRPC stream's alike.
 */
export function refusedInstanceAttributes(level: 'instance' | undefined, ids: readonly string[]): Record<string, string> {
  const named = namedIds(ids);
  return level === undefined
    ? { 'io.meshlet.circuit.instances': named }
    : { 'io.meshlet.circuit.level': level, 'io.meshlet.circuit.instances': named };
}

/** Adds a shadow note to an attempt (or to what will be its record's notes). */
export function noteAttempt(attempt: Pick<AttemptFields, 'notes'>, note: string): void {
  if (attempt.notes === undefined) attempt.notes = [note];
  else attempt.notes.push(note);
}

// `http://host:port` of an instance, built once per instance object (the registry's
// snapshots keep them until they change) rather than per attempt.
const origins = new WeakMap<Instance, string>();

/** `instanceOrigin`, cached per instance object: the same string every time. */
export function originOf(instance: Instance): string {
  let origin = origins.get(instance);
  if (origin === undefined) {
    origin = instanceOrigin(instance);
    origins.set(instance, origin);
  }
  return origin;
}
