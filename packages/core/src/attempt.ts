import { type Instance, instanceOrigin } from './instance.js';
import type { TagLookup } from './rules/condition.js';

/**
 * The governed outbound call, one way down: the call executor (breaker) takes an instance
 * from routing's picker, then hands each attempt down as an `Attempt` record to a chain of
 * interceptors composed once per mesh — the CLIENT span (trace), the in-flight count
 * (route), fault injection (fault) — and the front end's transport last. Nothing below
 * asks anything above it: what a layer below needs (the route decision, the attempt
 * number, the breaker state, the signal) is on the record. The types live here because
 * the packages that own the interceptors import core and no sibling.
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
   * Routing's own span attributes for the decision (instances of the pool it picked from
   * skipped because their breakers are open): one object per pool, made when the routing
   * table is rebuilt; undefined for most decisions.
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
  /** A Response the mesh made (an injected fault) as the front end's result. */
  fromResponse(response: Response): R;
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
   * Run once when the attempt has settled, before its outcome is reported: the span calls
   * it before reading `notes`, the executor after the attempt (whichever comes first; it
   * runs once). The breaker's shadow `timeoutMs` is such a deadline check — a note when
   * the attempt outlived it — instead of a timer per attempt. Undefined for most attempts.
   */
  settled: (() => void) | undefined;
  /**
   * Set when the result was not the instance's doing (a fault injected it, a hedge to
   * another instance answered): it counts for or against no instance.
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

/** One per-attempt concern: does its part around `next` (the rest of the chain). */
export type AttemptInterceptor = <R extends AttemptResult>(attempt: Attempt<R>, next: AttemptHandler) => Promise<R>;

/** The transport at the end of every chain: the call's own client. */
export const sendAttempt: AttemptHandler = (attempt) => attempt.call.transport(attempt);

/**
 * Composes `interceptors` (outermost first) around `last` into one handler. Done once per
 * mesh: a call allocates nothing for the chain.
 */
export function chainAttempt(interceptors: readonly AttemptInterceptor[], last: AttemptHandler = sendAttempt): AttemptHandler {
  let next = last;
  for (let i = interceptors.length - 1; i >= 0; i--) {
    const interceptor = interceptors[i] as AttemptInterceptor;
    const inner = next;
    next = (attempt) => interceptor(attempt, inner);
  }
  return next;
}

/** Adds a shadow note to an attempt. */
export function noteAttempt(attempt: Attempt, note: string): void {
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
