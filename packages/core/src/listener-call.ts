/**
 * Calls an application's listener so that its failure reaches `onFailure` whether it threw
 * or returned a promise that rejects: an `async` listener's rejection would otherwise be
 * unhandled, and end the process (Node's default), long after the caller's try had returned.
 */
export function callListener(call: () => unknown, onFailure: (err: unknown) => void): void {
  let result: unknown;
  try {
    result = call();
  } catch (err) {
    onFailure(err);
    return;
  }
  if (typeof (result as PromiseLike<unknown> | undefined)?.then === 'function') {
    (result as PromiseLike<unknown>).then(undefined, (err: unknown) => {
      try {
        onFailure(err);
      } catch {
        // A logger that throws must not turn the caught rejection into an unhandled one.
      }
    });
  }
}

/** A listener's failure as one line for a log: the message of an Error, else the value. */
export const failureReason = (err: unknown): string => (err instanceof Error ? err.message : String(err));
