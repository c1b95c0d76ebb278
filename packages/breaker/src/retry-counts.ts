import type { Logger } from '@meshlet/core';
import type { SendFailure } from './send-failure.js';

/**
 * Why an attempt was retried, a bounded set (a metric label, a span attribute): the failed
 * attempt's SendFailure (`stale`: the kept-alive connection went stale, the retry may go
 * to the same instance on a new connection), the status class of a failed answer
 * (`status`: outside 100–599), or `answer`: an answer the classifier does not call a
 * failure but the caller asked to retry (GovernedCall.retryableAnswer, a gRPC UNAVAILABLE).
 */
export type RetryReason = SendFailure | '1xx' | '2xx' | '3xx' | '4xx' | '5xx' | 'status' | 'answer';

/** The reason of a retry after a failed answer with `status`. */
export function retryReasonOfStatus(status: number): RetryReason {
  return status >= 100 && status < 600 ? (`${Math.floor(status / 100)}xx` as RetryReason) : 'status';
}

/** The span attributes of a retry, one frozen object per reason (AttemptRecord.attributes are never made per attempt). */
const retryAttributes = new Map<RetryReason, Readonly<Record<string, string>>>();

/** `io.meshlet.retry`: why this attempt is a retry (RetryReason). */
export function retrySpanAttributes(reason: RetryReason): Readonly<Record<string, string>> {
  let a = retryAttributes.get(reason);
  if (a === undefined) {
    a = Object.freeze({ 'io.meshlet.retry': reason });
    retryAttributes.set(reason, a);
  }
  return a;
}

/** One called service's retries, by reason: sent, and refused by its retry budget. */
export interface RetryCountsSnapshot {
  readonly service: string;
  readonly sent: Readonly<Record<string, number>>;
  readonly budgetRefused: Readonly<Record<string, number>>;
}

/**
 * The retries of one called service since the executor first retried it, kept across rule
 * changes (a new budget starts its window afresh; these counters do not) and dropped with
 * the destination when it is released as idle (CallExecutor.forget; they start again): what
 * `meshlet_retries_total` and `meshlet_retries_budget_refused_total` export.
 */
export class RetryCounts {
  readonly service: string;
  readonly #logger: Logger;
  readonly #sent = new Map<RetryReason, number>();
  readonly #refused = new Map<RetryReason, number>();

  constructor(service: string, logger: Logger) {
    this.service = service;
    this.#logger = logger;
  }

  /** An attempt that is a retry for `reason` is being sent. */
  sent(reason: RetryReason): void {
    this.#sent.set(reason, (this.#sent.get(reason) ?? 0) + 1);
  }

  /**
   * The retry budget refused a retry for `reason`: the call ends with its failure though an
   * instance was left to try. A warning (the mesh's logger throttles it: one per call).
   */
  refused(reason: RetryReason): void {
    this.#refused.set(reason, (this.#refused.get(reason) ?? 0) + 1);
    this.#logger.warn('retry budget spent; a failed call was not retried', {
      code: 'MESHLET_RETRY_BUDGET',
      service: this.service,
      reason,
    });
  }

  /** Whether a retry was sent or refused yet. */
  get any(): boolean {
    return this.#sent.size > 0 || this.#refused.size > 0;
  }

  get snapshot(): RetryCountsSnapshot {
    return { service: this.service, sent: Object.fromEntries(this.#sent), budgetRefused: Object.fromEntries(this.#refused) };
  }
}
