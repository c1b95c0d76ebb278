import { type Clock, field, RuleValidationError } from '@meshlet/core';
import { tellSettled } from './attempt-settled.js';
import { breakerVerdict } from './attempt-signal.js';
import { REJECTED } from './breaker.js';
import type { AttemptRecord, CallResult, GovernedCall } from './call-executor.js';
import type { FailureClassifier } from './failure-classifier.js';
import type { ServiceInstanceBreakers } from './instance-breakers.js';
import type { RetryBudget } from './retry-budget.js';
import { sendFailureOf, staleRepeated } from './send-failure.js';

/**
 * When a call sends a second attempt to another instance while the first is still out:
 * after a fixed `delayMs`, or after the `percentile` of this service's recent attempt
 * latencies (bounded by `minDelayMs` and `maxDelayMs`). Idempotent methods only; each
 * hedge is paid from the service's retry budget.
 */
export type HedgePolicy =
  | { readonly delayMs: number; readonly percentile?: undefined; readonly minDelayMs: number; readonly maxDelayMs: number }
  | { readonly delayMs?: undefined; readonly percentile: number; readonly minDelayMs: number; readonly maxDelayMs: number };

/** Latencies a percentile is read from before a percentile policy hedges at all. */
export const HEDGE_MIN_SAMPLES = 20;
const WINDOW = 256;
/** The percentile is re-read from the window every this many samples, not per call. */
const RECOMPUTE_EVERY = 32;

/** Parses the breaker section's `hedge`; throws RuleValidationError naming the field. */
export function parseHedgePolicy(raw: unknown, path: string): HedgePolicy {
  const obj = field.object(raw, path);
  field.onlyKeys(obj, path, ['delayMs', 'percentile', 'minDelayMs', 'maxDelayMs']);
  if ((obj.delayMs === undefined) === (obj.percentile === undefined))
    throw new RuleValidationError(
      `${path}.delayMs`,
      'give "delayMs" (a fixed delay) or "percentile" (of recent latencies), one of the two',
    );
  const minDelayMs = obj.minDelayMs === undefined ? 1 : field.integer(obj.minDelayMs, `${path}.minDelayMs`, 1, 60_000);
  const maxDelayMs = obj.maxDelayMs === undefined ? 60_000 : field.integer(obj.maxDelayMs, `${path}.maxDelayMs`, 1, 60_000);
  if (maxDelayMs < minDelayMs) throw new RuleValidationError(`${path}.maxDelayMs`, `must be at least minDelayMs (${minDelayMs})`);
  if (obj.delayMs !== undefined) {
    if (obj.minDelayMs !== undefined || obj.maxDelayMs !== undefined)
      throw new RuleValidationError(`${path}.${obj.minDelayMs !== undefined ? 'minDelayMs' : 'maxDelayMs'}`, 'only with "percentile"');
    return { delayMs: field.integer(obj.delayMs, `${path}.delayMs`, 1, 60_000), minDelayMs, maxDelayMs };
  }
  const percentile = field.number(obj.percentile, `${path}.percentile`, 50, 99.9);
  return { percentile, minDelayMs, maxDelayMs };
}

/** Counters of one service's hedging. */
export interface HedgeStats {
  /** Calls that could have hedged (idempotent, with a delay known). */
  readonly eligible: number;
  /** Second attempts sent. */
  readonly hedges: number;
  /** Hedged calls the second attempt won. */
  readonly wins: number;
  /** Hedges the retry budget refused. */
  readonly denied: number;
  /** The delay in force, ms (undefined while a percentile policy has too few samples). */
  readonly delayMs: number | undefined;
}

interface Call<R> {
  discard?(result: R): void;
}

/**
 * The attempt of a hedged send whose outcome the executor records (on its instance's
 * breaker, with its permit; routing's `unreachable`; the body's verdict), as the executor
 * reads it when the send settles: the first attempt until another stands (the winner, or
 * the later of two failures). The hedger records every other attempt on its own instance,
 * once. Once the executor's own abort fired (the attempt's deadline, the caller's signal),
 * it stops changing: the executor may read it before the race ends.
 */
export interface HedgedAttempt<I> {
  instance: I;
  /** Its instance breaker's permit (REJECTED: none). */
  permit: number;
  /** Clock time it was sent. */
  start: number;
  /** The instance of the other attempt, once a hedge went out: a retry leaves it out too. */
  other: string | undefined;
}

/**
 * Hedging for one service: the delay (fixed, or a percentile of the latencies its first
 * attempts took) and `send`, which races a first attempt against a hedge sent after the
 * delay. The first answer that is neither a failure nor worth another instance
 * (`GovernedCall.retryableAnswer`) wins and the other attempt is aborted (its result, if
 * one still arrives, is discarded). Anything else waits for the other attempt; when both
 * fail, the later outcome stands and the executor's retries take over. Each attempt's own
 * outcome is its instance's (see HedgedAttempt).
 */
export class Hedger {
  readonly policy: HedgePolicy;
  readonly #clock: Clock;
  readonly #samples = new Float64Array(WINDOW);
  #count = 0;
  #delay: number | undefined;
  #eligible = 0;
  #hedges = 0;
  #wins = 0;
  #denied = 0;

  constructor(policy: HedgePolicy, clock: Clock) {
    this.policy = policy;
    this.#clock = clock;
    this.#delay = policy.delayMs;
  }

  get stats(): HedgeStats {
    return { eligible: this.#eligible, hedges: this.#hedges, wins: this.#wins, denied: this.#denied, delayMs: this.#delay };
  }

  /** The delay after which a hedge goes out, or undefined (no hedging yet). */
  get delayMs(): number | undefined {
    return this.#delay;
  }

  /** Records how long a first attempt took (or had taken when the hedge won and it was aborted). */
  record(ms: number): void {
    const p = this.policy.percentile;
    if (p === undefined || !(ms >= 0)) return;
    this.#samples[this.#count % WINDOW] = ms;
    this.#count++;
    if (this.#count >= HEDGE_MIN_SAMPLES && (this.#count === HEDGE_MIN_SAMPLES || this.#count % RECOMPUTE_EVERY === 0)) {
      const n = Math.min(this.#count, WINDOW);
      const sorted = this.#samples.slice(0, n).sort();
      const v = sorted[Math.min(n - 1, Math.max(0, Math.ceil((p / 100) * n) - 1))] as number;
      this.#delay = Math.min(this.policy.maxDelayMs, Math.max(this.policy.minDelayMs, v));
    }
  }

  /**
   * Sends one attempt (`rec`) of `call`, hedged: after the delay a second attempt goes to
   * another instance (`call.pick`), paid from `budget`, with a permit of its breaker in
   * `instances` (none, no hedge). `classifier` (the executor's) tells a failure. `hedged`
   * is the first attempt (its instance, permit, start) and, when the send settles, the
   * attempt whose outcome stands: the executor records that one, the hedger the other
   * (HedgedAttempt). `rec.injected` is set to the standing attempt's own mark (a fault's).
   * No wrapper per call: the executor calls this in place of `call.send`.
   */
  send<I extends { readonly id: string }, R extends CallResult>(
    call: GovernedCall<I, R>,
    rec: AttemptRecord<I>,
    budget: RetryBudget | undefined,
    classifier: FailureClassifier,
    instances: ServiceInstanceBreakers | undefined,
    hedged: HedgedAttempt<I>,
  ): Promise<R> {
    const delay = this.#delay;
    if (delay === undefined) return this.#timed(call, rec, call.send(rec.target, rec.signal, rec));
    return this.#race(call, rec, delay, budget, classifier, instances, hedged);
  }

  #race<I extends { readonly id: string }, R extends CallResult>(
    call: GovernedCall<I, R>,
    rec: AttemptRecord<I>,
    delay: number,
    budget: RetryBudget | undefined,
    classifier: FailureClassifier,
    instances: ServiceInstanceBreakers | undefined,
    hedged: HedgedAttempt<I>,
  ): Promise<R> {
    const primary = rec.target;
    const signal = rec.signal;
    this.#eligible++;
    const clock = this.#clock;
    const start = clock.now();
    return new Promise<R>((resolve, reject) => {
      let settled = false;
      let pending = 0;
      const controllers: AbortController[] = [];
      const records: AttemptRecord<I>[] = [];
      /** Results of attempts that answered without winning, kept until the call settles. */
      const results: (R | undefined)[] = [];
      // Per attempt: its instance, its breaker's permit, when it was sent.
      const targets: I[] = [primary];
      const permits: number[] = [hedged.permit];
      const starts: number[] = [hedged.start];
      /** The attempt `hedged` names: the executor's to record. */
      let theirs = 0;
      const handOver = (i: number) => {
        theirs = i;
        hedged.instance = targets[i] as I;
        hedged.permit = permits[i] as number;
        hedged.start = starts[i] as number;
        hedged.other = targets[1 - i]?.id;
      };
      /** Charges attempt `i`'s outcome to its own instance: its breaker (being aborted counts nothing), and routing when nothing was sent. */
      const charge = (i: number, outcome: { ok: true; value: R } | { ok: false; error: unknown }, injected: boolean) => {
        const id = (targets[i] as I).id;
        const permit = permits[i] as number;
        if (!outcome.ok && call.unreachable !== undefined && sendFailureOf(outcome.error) === 'not-sent') call.unreachable(targets[i] as I);
        if (instances === undefined) return;
        const lost = controllers[i]?.signal.aborted === true || signal?.aborted === true;
        if (injected) instances.release(id, permit);
        else if (outcome.ok) instances.record(id, permit, classifier.response(outcome.value.status), clock.now() - (starts[i] as number));
        else if (
          lost ||
          breakerVerdict(classifier, outcome.error, call.signal?.aborted === true) === 'ignore' ||
          // A lone stale failure says nothing of its instance (markStaleConnection).
          (sendFailureOf(outcome.error) === 'stale' && !staleRepeated(outcome.error))
        )
          instances.release(id, permit);
        else instances.record(id, permit, true, clock.now() - (starts[i] as number));
      };
      const attempt = (instance: I, index: number) => {
        pending++;
        const controller = new AbortController();
        controllers[index] = controller;
        const s = signal ? AbortSignal.any([signal, controller.signal]) : controller.signal;
        // Each racing attempt its own record (its signal, its number); the first keeps the notes
        // and attributes made for it (a refusing instance breaker, a shadow API breaker).
        const own: AttemptRecord<I> = {
          call: rec.call,
          target: instance,
          number: rec.number + index,
          signal: s,
          breaker: rec.breaker,
          api: rec.api,
          notes: index === 0 ? rec.notes : undefined,
          attributes: index === 0 ? rec.attributes : undefined,
          settled: index === 0 ? rec.settled : undefined,
          span: undefined,
          spanStart: undefined,
          spanNotes: undefined,
          load: undefined,
          injected: false,
        };
        records[index] = own;
        // Each racing attempt is settled here (`call.settled`), when its own promise settles.
        call.send(instance, s, own).then(
          (value) => {
            tellSettled(call, own, value, undefined);
            finish(index, { ok: true, value });
          },
          (error: unknown) => {
            tellSettled(call, own, undefined, error);
            finish(index, { ok: false, error });
          },
        );
      };
      const finish = (index: number, outcome: { ok: true; value: R } | { ok: false; error: unknown }) => {
        pending--;
        const injected = records[index]?.injected === true || (outcome.ok && call.injected?.(outcome.value) === true);
        // A winner: an answer that is no failure and (unless the mesh made it) not worth another instance.
        const good =
          outcome.ok && !classifier.response(outcome.value.status) && (injected || call.retryableAnswer?.(outcome.value) !== true);
        // The outcome that stands: the first winner, else the last attempt out.
        const stands = !settled && (good || pending === 0);
        if (signal?.aborted === true) {
          // The executor's abort fired: it records the attempt `hedged` names now, whenever the race ends.
          if (index !== theirs) charge(index, outcome, injected);
        } else if (stands) {
          if (index !== theirs) handOver(index);
        } else {
          charge(index, outcome, injected);
          if (index === theirs) handOver(1 - index);
        }
        if (settled) {
          // The loser answered after all: free its connection.
          if (outcome.ok) discardResult(call, outcome.value);
          return;
        }
        if (index === 0) this.record(clock.now() - start);
        // Anything but a winner waits while the other attempt is out (or may still be sent).
        if (!stands) {
          if (outcome.ok) results[index] = outcome.value;
          return;
        }
        settled = true;
        cancelTimer();
        if (index === 1 && good) this.#wins++;
        // The executor's record: a fault's mark on the attempt it records.
        rec.injected = records[theirs]?.injected === true;
        controllers.forEach((c, i) => {
          if (i === index) return;
          if (i === 0 && pending > 0) this.record(clock.now() - start); // how long the first had run when it lost
          c.abort(new HedgeLostError());
          const other = results[i];
          if (other !== undefined) discardResult(call, other);
        });
        if (outcome.ok) resolve(outcome.value);
        else reject(outcome.error);
      };
      const cancelTimer = clock.setTimeout(() => {
        if (settled) return;
        const second = call.pick(new Set([primary.id]));
        if (second === undefined) return;
        let permit = REJECTED;
        if (instances !== undefined) {
          permit = instances.acquire(second.id);
          if (permit === REJECTED) return; // its breaker has no permit (half-open, probes taken)
        }
        if (budget !== undefined && !budget.tryRetry()) {
          if (instances !== undefined) instances.release(second.id, permit);
          this.#denied++;
          return;
        }
        this.#hedges++;
        targets[1] = second;
        permits[1] = permit;
        starts[1] = clock.now();
        hedged.other = second.id;
        attempt(second, 1);
      }, delay);
      attempt(primary, 0);
    });
  }

  /** An attempt sent without a race: its time recorded (a percentile policy), and settled (`call.settled`). */
  #timed<I extends { readonly id: string }, R extends CallResult>(
    call: GovernedCall<I, R>,
    rec: AttemptRecord<I>,
    p: Promise<R>,
  ): Promise<R> {
    const timed = this.policy.percentile !== undefined;
    if (!timed && call.settled === undefined) return p;
    const start = this.#clock.now();
    p.then(
      (value) => {
        tellSettled(call, rec, value, undefined);
        if (timed) this.record(this.#clock.now() - start);
      },
      (error: unknown) => {
        tellSettled(call, rec, undefined, error);
        if (timed) this.record(this.#clock.now() - start);
      },
    );
    return p;
  }
}

/** The reason a hedged call's losing attempt is aborted with. */
export class HedgeLostError extends Error {
  override readonly name = 'HedgeLostError';
  constructor() {
    super('another attempt of this hedged call answered first');
  }
}

function discardResult<R>(call: Call<R>, result: R): void {
  if (call.discard !== undefined) call.discard(result);
  else if (result instanceof Response) void result.body?.cancel().catch(() => {});
}
