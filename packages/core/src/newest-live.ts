/**
 * The newest of a set of live objects, for the process-wide defaults that stand in when a
 * caller names none (the module-level `fetch`'s mesh, `@Traced()`'s tracing outside a
 * request): when the newest closes, the one before it, still live, takes over. Held
 * weakly: one never closed and no longer referenced elsewhere is not kept for its sake.
 */
export class NewestLive<T extends object> {
  #refs: WeakRef<T>[] = [];

  add(item: T): void {
    this.#refs = this.#refs.filter((r) => r.deref() !== undefined);
    this.#refs.push(new WeakRef(item));
  }

  /** Forgets `item` (it closed). */
  remove(item: T): void {
    this.#refs = this.#refs.filter((r) => {
      const x = r.deref();
      return x !== undefined && x !== item;
    });
  }

  /** The newest item added and not removed, if any is still alive. */
  newest(): T | undefined {
    for (let i = this.#refs.length - 1; i >= 0; i--) {
      const x = (this.#refs[i] as WeakRef<T>).deref();
      if (x !== undefined) return x;
      this.#refs.pop();
    }
    return undefined;
  }
}
