import { MeshletError } from '@meshlet/core';

/** Every slot is busy and the queue is full: the call was not made. */
export class BulkheadFullError extends MeshletError {
  static readonly code = 'MESHLET_BULKHEAD_FULL';
  readonly service: string;
  readonly maxConcurrent: number;
  readonly maxQueue: number;

  constructor(service: string, maxConcurrent: number, maxQueue: number) {
    super(
      BulkheadFullError.code,
      `${service}: ${maxConcurrent} calls in flight and ${maxQueue} waiting; the call was not sent. Slow down, or raise the bulkhead for "${service}" if it can take more.`,
    );
    this.service = service;
    this.maxConcurrent = maxConcurrent;
    this.maxQueue = maxQueue;
  }
}

export interface BulkheadOptions {
  /** Calls in flight at once. Default 64. */
  readonly maxConcurrent?: number;
  /** Calls waiting for a slot; past it, BulkheadFullError. Default 0 (no queue). */
  readonly maxQueue?: number;
}

interface Waiter {
  readonly grant: () => void;
}

/** Gives a slot back. Calling it twice gives back one slot. */
export type Release = () => void;

/**
 * Caps the calls in flight to one destination, so that a slow service ties up a bounded
 * part of this one. Waiters are served first come, first served; one that is aborted
 * leaves the queue at once with the signal's reason.
 */
export class Bulkhead {
  readonly service: string;
  readonly maxConcurrent: number;
  readonly maxQueue: number;
  #active = 0;
  // A Set keeps insertion order (FIFO) and removes an aborted waiter in O(1).
  readonly #queue = new Set<Waiter>();
  #refused = 0;

  constructor(service: string, options: BulkheadOptions = {}) {
    this.service = service;
    this.maxConcurrent = options.maxConcurrent ?? 64;
    this.maxQueue = options.maxQueue ?? 0;
    if (!Number.isInteger(this.maxConcurrent) || this.maxConcurrent < 1)
      throw new RangeError(`maxConcurrent must be a whole number >= 1 (got ${this.maxConcurrent})`);
    if (!Number.isInteger(this.maxQueue) || this.maxQueue < 0)
      throw new RangeError(`maxQueue must be a whole number >= 0 (got ${this.maxQueue})`);
  }

  get active(): number {
    return this.#active;
  }

  get queued(): number {
    return this.#queue.size;
  }

  /** Calls refused with BulkheadFullError since start. */
  get refused(): number {
    return this.#refused;
  }

  /** Waits for a slot. Rejects with BulkheadFullError when the queue is full, or the signal's reason when aborted. */
  acquire(signal?: AbortSignal): Promise<Release> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.#active < this.maxConcurrent) {
      this.#active++;
      return Promise.resolve(this.#releaser());
    }
    if (this.#queue.size >= this.maxQueue) {
      this.#refused++;
      return Promise.reject(new BulkheadFullError(this.service, this.maxConcurrent, this.maxQueue));
    }
    return new Promise<Release>((resolve, reject) => {
      const onAbort = () => {
        this.#queue.delete(waiter);
        reject(signal?.reason);
      };
      const waiter: Waiter = {
        grant: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve(this.#releaser());
        },
      };
      this.#queue.add(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Runs `fn` in a slot and gives the slot back when it settles. */
  async execute<T>(fn: (signal?: AbortSignal) => Promise<T> | T, signal?: AbortSignal): Promise<T> {
    const release = await this.acquire(signal);
    try {
      return await fn(signal);
    } finally {
      release();
    }
  }

  #releaser(): Release {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const next = this.#queue.values().next();
      if (next.done) {
        this.#active--;
        return;
      }
      // The slot passes straight to the next waiter: `active` does not change.
      this.#queue.delete(next.value);
      next.value.grant();
    };
  }
}

/** One bulkhead per destination service, made on first use. */
export class Bulkheads {
  readonly #defaults: BulkheadOptions;
  readonly #perService: Readonly<Record<string, BulkheadOptions>>;
  readonly #bulkheads = new Map<string, Bulkhead>();

  constructor(options: { defaults?: BulkheadOptions; services?: Readonly<Record<string, BulkheadOptions>> } = {}) {
    this.#defaults = options.defaults ?? {};
    this.#perService = options.services ?? {};
  }

  /** The bulkhead of `service`. */
  for(service: string): Bulkhead {
    let b = this.#bulkheads.get(service);
    if (!b) {
      b = new Bulkhead(service, { ...this.#defaults, ...this.#perService[service] });
      this.#bulkheads.set(service, b);
    }
    return b;
  }

  /**
   * Drops the bulkhead of `service`: the mesh released the destination. A call holding one
   * of its slots gives it back to that bulkhead; the next call makes a new one.
   */
  forget(service: string): void {
    this.#bulkheads.delete(service);
  }

  /** Runs `fn` within `service`'s bulkhead. */
  execute<T>(service: string, fn: (signal?: AbortSignal) => Promise<T> | T, signal?: AbortSignal): Promise<T> {
    return this.for(service).execute(fn, signal);
  }
}
