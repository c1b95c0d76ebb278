import { type Clock, field, RuleValidationError } from '@meshlet/core';
import { tellSettled } from './attempt-settled.js';
import { REJECTED } from './breaker.js';
import type { AttemptRecord, CallResult, GovernedCall } from './call-executor.js';
import type { ServiceInstanceBreakers } from './instance-breakers.js';
import type { RetryBudget } from './retry-budget.js';

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
  injected?(result: R): boolean;
}

function isInjected<R>(call: Call<R>, rec: { readonly injected: boolean } | undefined, result: R): boolean {
  return rec?.injected === true || call.injected?.(result) === true;
}

/**
 * Hedging for one service: the delay (fixed, or a percentile of the latencies its first
 * attempts took) and `send`, which races a first attempt against a hedge sent after the
 * delay. The first answer that is not a failure wins and the other attempt is aborted (its
 * result, if one still arrives, is discarded). A failure waits for the other attempt; when
 * both fail, the later failure stands and the executor's retries take over.
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
   * another instance (`call.pick`), paid from `budget`. `failed` tells a failed result (the
   * executor's classifier). The hedged instance's outcome goes to its own breaker in
   * `instances` (a hedge it has no permit for is not sent). When the hedge answers, `rec`
   * is marked `injected`: the executor then records nothing for the first instance — it
   * neither answered nor failed. No wrapper per call: the executor calls this in place of
   * `call.send`.
   */
  send<I extends { readonly id: string }, R extends CallResult>(
    call: GovernedCall<I, R>,
    rec: AttemptRecord<I>,
    budget: RetryBudget | undefined,
    failed: (r: R) => boolean,
    instances?: ServiceInstanceBreakers,
  ): Promise<R> {
    const delay = this.#delay;
    if (delay === undefined) return this.#timed(call, rec, call.send(rec.target, rec.signal, rec));
    return this.#race(call, rec, delay, budget, failed, instances);
  }

  #race<I extends { readonly id: string }, R extends CallResult>(
    call: GovernedCall<I, R>,
    rec: AttemptRecord<I>,
    delay: number,
    budget: RetryBudget | undefined,
    failed: (r: R) => boolean,
    instances: ServiceInstanceBreakers | undefined,
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
      /** Results of attempts that answered with a failure, kept until the call settles. */
      const results: (R | undefined)[] = [];
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
      let hedgePermit = REJECTED;
      let hedgeId = '';
      let hedgeStart = 0;
      const finish = (index: number, outcome: { ok: true; value: R } | { ok: false; error: unknown }) => {
        pending--;
        if (index === 1 && instances !== undefined) {
          // The hedged instance's own breaker: its answer counts, being aborted does not.
          const lost = controllers[1]?.signal.aborted === true || signal?.aborted === true;
          if (outcome.ok && !isInjected(call, records[1], outcome.value))
            instances.record(hedgeId, hedgePermit, failed(outcome.value), clock.now() - hedgeStart);
          else if (!outcome.ok && !lost) instances.record(hedgeId, hedgePermit, true, clock.now() - hedgeStart);
          else instances.release(hedgeId, hedgePermit);
        }
        if (settled) {
          // The loser answered after all: free its connection.
          if (outcome.ok) discardResult(call, outcome.value);
          return;
        }
        if (index === 0) this.record(clock.now() - start);
        const good = outcome.ok && !failed(outcome.value);
        // A failure waits while the other attempt is out (or may still be sent).
        if (!good && pending > 0) {
          if (outcome.ok) results[index] = outcome.value;
          return;
        }
        settled = true;
        cancelTimer();
        if (index === 1 && good) this.#wins++;
        // The executor's record: the answer is the first instance's only when it gave it.
        rec.injected = index === 1 ? good : records[0]?.injected === true;
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
        if (instances !== undefined) {
          hedgePermit = instances.acquire(second.id);
          if (hedgePermit === REJECTED) return; // its breaker has no permit (half-open, probes taken)
        }
        if (budget !== undefined && !budget.tryRetry()) {
          if (instances !== undefined) instances.release(second.id, hedgePermit);
          this.#denied++;
          return;
        }
        this.#hedges++;
        hedgeId = second.id;
        hedgeStart = clock.now();
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
