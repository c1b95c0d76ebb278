import type { AttemptRecord, CallResult, GovernedCall } from './call-executor.js';

/**
 * Tells `call.settled` that the attempt `rec` settled. A throw from it is dropped: telling
 * must not change the call's outcome nor stop what the executor or the hedger does next
 * (its bookkeeping, the race's end). The SDK's `settled` never throws: its chain reports
 * its observers' own throws.
 */
export function tellSettled<I extends { readonly id: string }, R extends CallResult>(
  call: GovernedCall<I, R>,
  rec: AttemptRecord<I>,
  result: R | undefined,
  error: unknown,
): void {
  if (call.settled === undefined) return;
  try {
    call.settled(rec, result, error);
  } catch {
    // Dropped, as documented on GovernedCall.settled.
  }
}
