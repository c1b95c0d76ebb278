import { callListener, type Unsubscribe } from '@meshlet/core';

/**
 * A typed listener set, used as an event property (`breaker.onOpen.add(fn)`). The Set is
 * made on the first listener: most of 10 000 instance breakers never get one.
 */
export class Listeners<T> {
  #set: Set<(event: T) => unknown> | undefined;

  add(listener: (event: T) => unknown): Unsubscribe {
    this.#set ??= new Set();
    this.#set.add(listener);
    return () => {
      this.#set?.delete(listener);
    };
  }

  get size(): number {
    return this.#set?.size ?? 0;
  }

  /** Calls every listener; one that throws or rejects does not stop the others or the breaker. */
  emit(event: T): void {
    if (this.#set === undefined || this.#set.size === 0) return;
    // A dashboard listener's bug must not break the call path (nor, rejected, end the process).
    for (const l of [...this.#set]) callListener(() => l(event), ignore);
  }
}

const ignore = (): void => {};
