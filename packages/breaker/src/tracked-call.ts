import type { Clock } from '@meshlet/core';
import { breakerVerdict } from './attempt-signal.js';
import { type Breaker, REJECTED } from './breaker.js';
import type { FailureClassifier } from './failure-classifier.js';
import type { ServiceInstanceBreakers } from './instance-breakers.js';
import type { RetryBudget } from './retry-budget.js';
import type { RetryCounts, RetryReason } from './retry-counts.js';

/** Where a permit's outcome goes: a breaker (or two) that gave it. */
interface PermitHolder {
  record(failed: boolean, durationMs: number, now: number): void;
  release(): void;
}

/**
 * The executor's governance of a call it does not run itself (`CallExecutor.track`): a gRPC
 * stream, whose messages cannot be replayed once it opened and whose life is its caller's.
 * The call passed its service and API breakers when it was tracked (`outcome` settles
 * their permits with the call's end); the caller picks and sends; this records each try's
 * outcome on the instance breakers exactly as the executor records a unary attempt's (the
 * destination's failure classifier: an answer's status, a refused connection as a
 * failure, the caller's own end as nothing), and pays each further try from the
 * destination's retry budget.
 */
export class TrackedCall {
  readonly service: string;
  /**
   * The call's permits on its service and API breakers (those the rules made), settled as
   * the executor settles a unary call's: by how the call ends (its last try's answer, or
   * its error), or, when one of them was a half-open breaker's probe, by the first answer.
   */
  readonly outcome: TrackedAttempt;
  readonly #instances: ServiceInstanceBreakers | undefined;
  readonly #budget: RetryBudget | undefined;
  readonly #retries: RetryCounts | undefined;
  readonly #classifier: FailureClassifier;
  readonly #clock: Clock;

  /** @internal made by CallExecutor.track */
  constructor(
    service: string,
    instances: ServiceInstanceBreakers | undefined,
    budget: RetryBudget | undefined,
    classifier: FailureClassifier,
    clock: Clock,
    levels: readonly { readonly breaker: Breaker; readonly permit: number }[] = [],
    retries?: RetryCounts,
  ) {
    this.service = service;
    this.#instances = instances;
    this.#budget = budget;
    this.#retries = retries;
    this.#classifier = classifier;
    this.#clock = clock;
    const holder: PermitHolder | undefined =
      levels.length === 0
        ? undefined
        : {
            record: (failed, ms, now) => {
              for (const { breaker, permit } of levels) breaker.record(permit, failed, ms, now);
            },
            release: () => {
              for (const { breaker, permit } of levels) breaker.release(permit);
            },
          };
    const probe = levels.some(({ breaker }) => breaker.state === 'half-open');
    this.outcome = new TrackedAttempt(holder, probe, classifier, clock);
  }

  /**
   * A try of `instanceId`: takes its instance breaker's permit, as the executor does for an
   * attempt. Undefined when the breaker refuses it (open, or half-open with every probe
   * permit taken, which routing may not have heard of yet): pick another instance.
   */
  attempt(instanceId: string): TrackedAttempt | undefined {
    const instances = this.#instances;
    if (instances === undefined) return new TrackedAttempt(undefined, false, this.#classifier, this.#clock);
    const permit = instances.acquire(instanceId);
    if (permit === REJECTED) return undefined;
    const holder: PermitHolder = {
      record: (failed, ms, now) => instances.record(instanceId, permit, failed, ms, now),
      release: () => instances.release(instanceId, permit),
    };
    // A permit taken while the breaker is half-open is a probe's.
    return new TrackedAttempt(holder, instances.breaker(instanceId).state === 'half-open', this.#classifier, this.#clock);
  }

  /**
   * Takes one further try, for `reason` (a refused connection: `not-sent`), from the
   * destination's retry budget: false when it is spent (counted in its `denied`, and in the
   * executor's retry counts with MESHLET_RETRY_BUDGET). True without a budget. A true is
   * counted as a retry sent.
   */
  retry(reason: RetryReason): boolean {
    if (this.#budget !== undefined && !this.#budget.tryRetry()) {
      this.#retries?.refused(reason);
      return false;
    }
    this.#retries?.sent(reason);
    return true;
  }
}

/** A permit on a breaker (a try's on its instance's; a call's on its service's and API's); settles once (later calls do nothing). */
export class TrackedAttempt {
  readonly #holder: PermitHolder | undefined;
  /** The permit is a half-open breaker's probe: the first answer settles it (`responded`). */
  readonly probe: boolean;
  readonly #classifier: FailureClassifier;
  readonly #clock: Clock;
  readonly #t0: number;
  #settled = false;

  /** @internal */
  constructor(holder: PermitHolder | undefined, probe: boolean, classifier: FailureClassifier, clock: Clock) {
    this.#holder = holder;
    this.probe = probe;
    this.#classifier = classifier;
    this.#clock = clock;
    this.#t0 = clock.now();
  }

  /**
   * The instance answered with `status` (an HTTP status; a gRPC status as its HTTP
   * equivalent): a failure when the destination's classifier counts it, as a unary answer.
   * `durationMs`: what the breaker's slow-call check reads (default: since the try began).
   * Returns whether it counted as a failure.
   */
  answered(status: number, durationMs?: number): boolean {
    const failed = this.#classifier.response(status);
    this.#record(failed, durationMs);
    return failed;
  }

  /**
   * The instance began to answer (a stream's response headers): a probe's success now, so
   * that a long-lived probe stream does not keep its instance out of routing for its whole
   * life (the breaker closes once its probes succeed); any other try is settled by how it
   * ends. `durationMs`: the slow-call check's time (default: since the try began).
   */
  responded(durationMs?: number): void {
    if (this.probe) this.#record(false, durationMs);
  }

  /** The try failed with `error` (a refused connection, …): counted as the executor counts an attempt's error; the caller's own abort counts nothing. */
  failed(error: unknown, callerAborted: boolean, durationMs?: number): void {
    const verdict = breakerVerdict(this.#classifier, error, callerAborted);
    if (verdict === 'ignore') this.released();
    else this.#record(verdict === 'failure', durationMs);
  }

  /** The outcome says nothing about the instance (the caller ended it, the mesh made it up): the permit goes back. */
  released(): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#holder?.release();
  }

  #record(failed: boolean, durationMs: number | undefined): void {
    if (this.#settled) return;
    this.#settled = true;
    if (this.#holder === undefined) return;
    const end = this.#clock.now();
    this.#holder.record(failed, durationMs ?? end - this.#t0, end);
  }
}
