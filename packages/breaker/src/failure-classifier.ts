/** What an outcome says about the upstream. `ignore` counts neither way (the caller gave up). */
export type Verdict = 'success' | 'failure' | 'ignore';

/** Decides whether a response or an error counts against the upstream. */
export interface FailureClassifier {
  response(status: number): boolean;
  /** `callerAborted` is true when the caller's own signal ended the call. */
  error(err: unknown, callerAborted: boolean): Verdict;
}

/**
 * Statuses that count as failures: exact codes and whole classes (`5xx`). The default is
 * every 5xx; 4xx are the caller's fault, not the upstream's, so they do not trip anything.
 */
export type StatusSpec = number | '4xx' | '5xx';

export function statusClassifier(statuses: readonly StatusSpec[] = ['5xx']): FailureClassifier {
  // A 600-entry table: one index per call instead of walking the list.
  const table = new Uint8Array(600);
  for (const s of statuses) {
    if (s === '5xx') table.fill(1, 500, 600);
    else if (s === '4xx') table.fill(1, 400, 500);
    else if (s >= 0 && s < 600) table[s] = 1;
  }
  return {
    response: (status) => status >= 600 || table[status] === 1,
    // Timeouts, refused and reset connections, DNS failures: all count. Only the caller's
    // own abort does not: it says nothing about the upstream.
    error: (_err, callerAborted) => (callerAborted ? 'ignore' : 'failure'),
  };
}

export const defaultClassifier: FailureClassifier = statusClassifier();
