import {
  type Attempt,
  type AttemptHandler,
  type AttemptInterceptor,
  type AttemptResult,
  type Clock,
  compileConditions,
  type Logger,
  type Matcher,
  type RuleFeed,
  silentLogger,
  sleep,
  type TagLookup,
  type Unsubscribe,
} from '@meshlet/core';
import { type FaultSection, faultRuleKind } from './fault-rule.js';

/** What to do to one call. Empty (NO_FAULT): send it as it is. */
export interface FaultDecision {
  /** Wait this long first. */
  readonly delayMs?: number;
  /** Then answer with this status instead of sending. */
  readonly abortStatus?: number;
  /** The rule that decided, for spans, metrics and logs. */
  readonly rule?: string;
  /**
   * Set when the service's `fault` section is in shadow mode and a rule's draw hit: what it
   * would have injected (`would-delay-300ms`, `would-abort-503`, or both joined by `+`).
   * Such a decision has no delay and no abort: applyFault sends the call as it is.
   */
  readonly shadow?: string;
}

export const NO_FAULT: FaultDecision = Object.freeze({});

/** Header set on a response made up by an abort, naming the rule, so nobody mistakes it for the service's. */
export const FAULT_HEADER = 'x-meshlet-fault';

/** The fault rules of one service, as the call path asks them (`FaultInjector.forService`). */
export interface ServiceFaults {
  /** The fault for one call with these tags; `random` returns [0, 1) (seed it in tests). */
  decide(tags: TagLookup, random?: () => number): FaultDecision;
}

interface CompiledFault {
  readonly matches: Matcher;
  /** Share in [0, 1]; 1 draws nothing. */
  readonly share: number;
  readonly decision: FaultDecision;
}

/**
 * Decides, per outbound call to a service, whether to inject a fault; serves many
 * services, like the Router, each with the `fault` section of its rules. Rules are compiled when they
 * change; a decision tests the rules in document order and takes the first whose
 * conditions match and whose draw (`random() * 100 < percentage`) hits. Each rule with a
 * percentage strictly between 0 and 100 draws once when its conditions match; 0 never
 * applies and 100 always does, without a draw. With no rules nothing is drawn and every
 * call gets NO_FAULT: faults are off unless a rule says so.
 */
export class FaultInjector {
  readonly #services = new Map<string, ServiceFaults>();
  readonly #logger: Logger;
  #shadowed = 0;

  /** `logger` gets MESHLET_FAULT_SHADOW once per would-be fault (the mesh's logger throttles the code). */
  constructor(options: { readonly logger?: Logger } = {}) {
    this.#logger = options.logger ?? silentLogger;
  }

  /** Would-be faults of sections in shadow mode since this injector was made. */
  get shadowed(): number {
    return this.#shadowed;
  }

  /**
   * Replaces the rules of `service` (undefined: none). A section in shadow mode draws as
   * an enforced one would; a hit is counted, logged and returned as a `shadow` decision
   * that injects nothing.
   */
  setRules(service: string, section: FaultSection | undefined): void {
    const shadow = section?.mode === 'shadow';
    const rules = (section?.rules ?? [])
      .filter((r) => r.percentage > 0)
      .map((r) => ({
        matches: compileConditions(r.when),
        share: r.percentage / 100,
        decision: Object.freeze(
          shadow
            ? { rule: r.name, shadow: wouldBe(r.delay, r.abort) }
            : {
                rule: r.name,
                ...(r.delay !== undefined ? { delayMs: r.delay } : {}),
                ...(r.abort !== undefined ? { abortStatus: r.abort } : {}),
              },
        ),
      }));
    if (rules.length === 0) this.#services.delete(service);
    else if (!shadow) this.#services.set(service, { decide: (tags, random) => decideAmong(rules, tags, random) });
    else {
      this.#services.set(service, {
        decide: (tags, random) => {
          const d = decideAmong(rules, tags, random);
          if (d !== NO_FAULT) {
            this.#shadowed++;
            this.#logger.info('fault rules in shadow mode would have injected a fault into this call', {
              code: 'MESHLET_FAULT_SHADOW',
              service,
              rule: d.rule,
              shadow: d.shadow,
            });
          }
          return d;
        },
      });
    }
  }

  /** Follows the `fault` section of a service's rules (core's RuleWatcher), now and on change. */
  follow(rules: RuleFeed): Unsubscribe {
    const service = rules.service;
    return rules.follow(faultRuleKind, (section) => this.setRules(service, section));
  }

  /** Drops the rules of `service`: the mesh released the destination (its rules are no longer followed). */
  forget(service: string): void {
    this.#services.delete(service);
  }

  /** True when some rule of `service` can apply. */
  active(service: string): boolean {
    return this.#services.has(service);
  }

  /**
   * The fault rules of `service`, or undefined when it has none: the call path holds on to
   * nothing and asks per call (one map lookup; a service without rules costs nothing more).
   */
  forService(service: string): ServiceFaults | undefined {
    return this.#services.get(service);
  }

  /** The fault for one call to `service` with these tags; `random` returns [0, 1) (seed it in tests). */
  decide(service: string, tags: TagLookup, random: () => number = Math.random): FaultDecision {
    return this.#services.get(service)?.decide(tags, random) ?? NO_FAULT;
  }
}

function wouldBe(delay: number | undefined, abort: number | undefined): string {
  const parts: string[] = [];
  if (delay !== undefined) parts.push(`would-delay-${delay}ms`);
  if (abort !== undefined) parts.push(`would-abort-${abort}`);
  return parts.join('+');
}

function decideAmong(rules: readonly CompiledFault[], tags: TagLookup, random: () => number = Math.random): FaultDecision {
  for (const r of rules) {
    if (!r.matches(tags)) continue;
    if (r.share >= 1 || random() < r.share) return r.decision;
  }
  return NO_FAULT;
}

/**
 * Carries out a decision around a send: waits `delayMs` on `clock` (ending early, with
 * the signal's reason, if `signal` aborts), then returns the made-up response for an
 * abort, or undefined when the call should now be sent.
 */
export async function applyFault(
  decision: FaultDecision,
  options: { readonly clock: Clock; readonly signal?: AbortSignal | undefined },
): Promise<Response | undefined> {
  const { clock, signal } = options;
  if (decision.delayMs !== undefined && decision.delayMs > 0) {
    signal?.throwIfAborted();
    await sleep(clock, decision.delayMs, signal);
  }
  if (decision.abortStatus === undefined) return undefined;
  return new Response(null, { status: decision.abortStatus, headers: { [FAULT_HEADER]: decision.rule ?? 'fault' } });
}

/**
 * Span and metric attributes for a decision (empty for NO_FAULT). A shadow decision gives
 * only `io.meshlet.shadow` (`fault:<rule>:<would-be>`): nothing was injected.
 */
export function faultAttributes(decision: FaultDecision): Record<string, string | number> {
  const out: Record<string, string | number> = {};
  if (decision.shadow !== undefined) {
    out['io.meshlet.shadow'] = `fault:${decision.rule}:${decision.shadow}`;
    return out;
  }
  if (decision.rule !== undefined) out['io.meshlet.fault.rule'] = decision.rule;
  if (decision.delayMs !== undefined) out['io.meshlet.fault.delay_ms'] = decision.delayMs;
  if (decision.abortStatus !== undefined) out['io.meshlet.fault.abort_status'] = decision.abortStatus;
  return out;
}

/** Per decision (frozen, made when the rules change): its span attributes and shadow note, computed once. */
interface DecisionMarks {
  readonly attributes: Readonly<Record<string, string | number>> | undefined;
  readonly note: string | undefined;
}
const marksCache = new WeakMap<FaultDecision, DecisionMarks>();

function marksOf(decision: FaultDecision): DecisionMarks {
  let marks = marksCache.get(decision);
  if (marks === undefined) {
    const all = faultAttributes(decision);
    const note = all['io.meshlet.shadow'] as string | undefined;
    delete all['io.meshlet.shadow'];
    marks = { attributes: Object.keys(all).length > 0 ? Object.freeze(all) : undefined, note };
    marksCache.set(decision, marks);
  }
  return marks;
}

/**
 * Fault injection as an interceptor of the outbound chain (`chainAttempt` in core): asks
 * the destination's rules for this attempt; a delay waits on `clock` under the attempt's
 * signal, an abort answers with the made-up response (`call.fromResponse`) and marks the
 * attempt `injected` — it counts against no instance, as Envoy's fault filter runs before
 * its router. A decision's span attributes and shadow note are computed once per
 * decision, not per attempt. Without rules for the service: one map lookup.
 */
export function faultInterceptor(options: {
  readonly faults: (service: string) => ServiceFaults | undefined;
  readonly clock: Clock;
}): AttemptInterceptor {
  const { faults, clock } = options;
  const inject = async <R extends AttemptResult>(decision: FaultDecision, attempt: Attempt<R>, next: AttemptHandler): Promise<R> => {
    const marks = marksOf(decision);
    // Beside what the executor put there (instance breakers that refused a pick), rarely anything.
    if (marks.attributes !== undefined)
      attempt.attributes = attempt.attributes === undefined ? marks.attributes : { ...attempt.attributes, ...marks.attributes };
    if (marks.note !== undefined) {
      if (attempt.notes === undefined) attempt.notes = [marks.note];
      else attempt.notes.push(marks.note);
    }
    const made = await applyFault(decision, attempt.signal ? { clock, signal: attempt.signal } : { clock });
    if (made === undefined) return next(attempt);
    attempt.injected = true;
    return attempt.call.fromResponse(made, attempt);
  };
  return <R extends AttemptResult>(attempt: Attempt<R>, next: AttemptHandler): Promise<R> => {
    const decision = faults(attempt.call.service)?.decide(attempt.call.tags) ?? NO_FAULT;
    return decision === NO_FAULT ? next(attempt) : inject(decision, attempt, next);
  };
}
