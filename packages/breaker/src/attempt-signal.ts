import type { Clock } from '@meshlet/core';
import { TimeoutError } from './timeout-error.js';

/**
 * Runs `fn` with a signal that aborts after `timeoutMs` or when `callerSignal` does. One
 * AbortController and one clock timer an attempt, nothing else: AbortSignal.any and
 * AbortSignal.timeout cost more and cannot run on an injected clock. The returned promise
 * rejects with a TimeoutError at the deadline even if `fn` ignores its signal.
 */
export function withTimeout<T>(
  clock: Clock,
  timeoutMs: number,
  callerSignal: AbortSignal | undefined,
  fn: (signal: AbortSignal) => Promise<T>,
  service?: string,
): Promise<T> {
  if (callerSignal?.aborted) return Promise.reject(callerSignal.reason);
  const controller = new AbortController();
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    const finish = () => {
      settled = true;
      cancel();
      callerSignal?.removeEventListener('abort', onCallerAbort);
    };
    const onCallerAbort = () => {
      if (settled) return;
      finish();
      controller.abort(callerSignal?.reason);
      reject(callerSignal?.reason);
    };
    const cancel = clock.setTimeout(() => {
      if (settled) return;
      finish();
      const err = new TimeoutError(timeoutMs, service);
      controller.abort(err);
      reject(err);
    }, timeoutMs);
    callerSignal?.addEventListener('abort', onCallerAbort, { once: true });
    let p: Promise<T>;
    try {
      p = fn(controller.signal);
    } catch (err) {
      p = Promise.reject(err);
    }
    p.then(
      (v) => {
        if (settled) return;
        finish();
        resolve(v);
      },
      (err) => {
        if (settled) return;
        finish();
        reject(err);
      },
    );
  });
}
