/** Items a NewestLive holds at most: past it, the oldest is let go (its owner never closed it). */
export const NEWEST_LIVE_MAX = 64;

/**
 * The newest of a set of live objects, for the process-wide defaults that stand in when a
 * caller names none (the module-level `fetch`'s mesh, `@Traced()`'s tracing outside a
 * request, a component's adopted loggers): when the newest closes, the one before it, still
 * open, takes over. Held strongly — a mesh the app keeps no reference to still serves the
 * module-level fetch, as it did — and bounded: at most NEWEST_LIVE_MAX, the oldest let go
 * past it, so objects made and never closed do not pile up.
 */
export class NewestLive<T extends object> {
  readonly #items: T[] = [];

  add(item: T): void {
    this.remove(item);
    this.#items.push(item);
    if (this.#items.length > NEWEST_LIVE_MAX) this.#items.shift();
  }

  /** Forgets `item` (it closed). */
  remove(item: T): void {
    const i = this.#items.lastIndexOf(item);
    if (i !== -1) this.#items.splice(i, 1);
  }

  /** The newest item added and not removed, if any. */
  newest(): T | undefined {
    return this.#items.at(-1);
  }
}
