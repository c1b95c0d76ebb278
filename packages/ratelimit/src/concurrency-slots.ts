/**
 * The requests in flight under one concurrency rule, counted per key (one per `by` value).
 * A key's count is dropped when it falls back to zero, so memory is bounded by the
 * requests in flight, not by the keys ever seen. `limit` may change on a rule reload
 * while requests hold slots: they keep them and give them back to this same counter.
 */
export class ConcurrencySlots {
  limit: number;
  readonly #inFlight = new Map<string, number>();
  #total = 0;

  constructor(limit: number) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`limit must be a whole number >= 1 (got ${limit})`);
    this.limit = limit;
  }

  /** True when `key` has a free slot now. */
  hasFree(key: string): boolean {
    return (this.#inFlight.get(key) ?? 0) < this.limit;
  }

  /** Takes a slot of `key` unconditionally: the caller checked `hasFree` for every rule first. */
  take(key: string): void {
    this.#inFlight.set(key, (this.#inFlight.get(key) ?? 0) + 1);
    this.#total++;
  }

  /** Gives a slot of `key` back. Called once per `take`, by the limiter's release. */
  give(key: string): void {
    const held = this.#inFlight.get(key);
    if (held === undefined) return;
    if (held <= 1) this.#inFlight.delete(key);
    else this.#inFlight.set(key, held - 1);
    this.#total--;
  }

  /** Slots of `key` held now. */
  held(key: string): number {
    return this.#inFlight.get(key) ?? 0;
  }

  /** Slots held now over every key. */
  get total(): number {
    return this.#total;
  }
}
