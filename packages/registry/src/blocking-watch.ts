import { type Clock, sleep } from '@meshlet/core';
import { ConsulAnswerTooLargeError, ConsulBadAnswerError, ConsulError, type ConsulResponse } from './consul-client.js';

export interface BlockingWatchOptions<T> {
  /** Runs one query; `index` 0 means "answer at once". */
  readonly query: (index: number, waitSeconds: number, signal: AbortSignal) => Promise<ConsulResponse<T>>;
  /** Called with each answer whose content differs from the last one delivered. */
  readonly onChange: (value: T) => void;
  /** Called on each failed query (the loop backs off and retries by itself). */
  readonly onError?: (err: unknown, consecutive: number) => void;
  /** Called on the first success after failures. */
  readonly onRecover?: () => void;
  /**
   * How long Consul may hold a query, seconds. Default 25: Consul 1.22's HTTP server cuts
   * connections at 30 s, and Consul adds up to wait/16 of jitter.
   */
  readonly waitSeconds?: number;
  /** Content signature used to tell a real change from a timeout. Default JSON.stringify. */
  readonly signature?: (value: T) => string;
  /** Time for the backoff and the rate limit; tests pass a ManualClock. Default: real time (timers keep the process alive). */
  readonly clock?: Clock;
  /** Source of the backoff jitter, in [0, 1). Default Math.random. */
  readonly random?: () => number;
  /**
   * Awaited after the backoff of a failure that looks like an outage (unreachable, timed
   * out, 5xx), before the query is tried again: resolves once the agent answers. Shared by
   * the watches of one client (AgentProbe), so that while the agent is down it sees one
   * cheap request per period instead of one query per watch. Default: none.
   */
  readonly probe?: (signal: AbortSignal) => Promise<void>;
}

/** Real time with timers that keep the process alive, as a watch's loop always had. */
const realTime: Clock = {
  now: () => performance.now(),
  wallNow: () => Date.now(),
  setTimeout(fn, ms) {
    const t = setTimeout(fn, ms);
    return () => clearTimeout(t);
  },
};

const BACKOFF_MIN_MS = 200;
/** Ceiling while the agent is unreachable or failing (5xx): short, so the watch resyncs within about a second. */
const OUTAGE_BACKOFF_MAX_MS = 1_000;
/** Ceiling while the agent refuses the query (4xx: ACL, bad request, 429): retrying soon would not help. */
const REFUSED_BACKOFF_MAX_MS = 10_000;
/** At most this many queries in a burst, refilled at RATE per second. */
const BURST = 10;
const RATE = 10;

/**
 * A Consul blocking-query loop, following Consul's documented rules
 * (https://developer.hashicorp.com/consul/api-docs/features/blocking, "Implementation
 * Details"): pass the last X-Consul-Index back; a return does not prove a change (compare
 * content); reset to 0 when the index goes backwards; never block on an index below 1;
 * and rate-limit the loop so a misbehaving server cannot make it spin.
 *
 * After any failed query the next one does not block (index 0): the agent that answers
 * may be a new one whose index is lower than the last one seen, and a query blocking on
 * the old index would be held for the whole wait while the service changes. Outage-like
 * failures (unreachable, timeout, 5xx) back off 100 ms to 1 s with jitter and then wait on
 * the shared `probe`; refusals (4xx, an answer the client refused) back off up to 10 s.
 */
export class BlockingWatch<T> {
  readonly #opts: BlockingWatchOptions<T>;
  readonly #clock: Clock;
  readonly #abort = new AbortController();
  #index = 0;
  #lastSignature: string | undefined;
  #tokens = BURST;
  #lastRefill: number;
  #running: Promise<void> | undefined;

  constructor(options: BlockingWatchOptions<T>) {
    this.#opts = options;
    this.#clock = options.clock ?? realTime;
    this.#lastRefill = this.#clock.now();
  }

  start(): this {
    this.#running ??= this.#loop();
    return this;
  }

  stop(): void {
    this.#abort.abort();
  }

  /** Resolves when the loop has ended after stop(). */
  get done(): Promise<void> {
    return this.#running ?? Promise.resolve();
  }

  async #loop(): Promise<void> {
    const { signal } = this.#abort;
    const wait = this.#opts.waitSeconds ?? 25;
    const signature = this.#opts.signature ?? ((v: T) => JSON.stringify(v));
    let failures = 0;
    while (!signal.aborted) {
      await this.#takeToken(signal);
      if (signal.aborted) return;
      try {
        const res = await this.#opts.query(this.#index, wait, signal);
        if (failures > 0) this.#opts.onRecover?.();
        failures = 0;
        this.#index = res.index < this.#index ? 0 : Math.max(res.index, 1);
        const sig = signature(res.body);
        if (sig !== this.#lastSignature) {
          this.#lastSignature = sig;
          this.#opts.onChange(res.body);
        }
      } catch (err) {
        if (signal.aborted) return;
        failures++;
        // Whatever answers next may be a restarted agent with a lower index: read at once.
        this.#index = 0;
        this.#opts.onError?.(err, failures);
        const refused = isRefusal(err);
        const ceiling = Math.min(refused ? REFUSED_BACKOFF_MAX_MS : OUTAGE_BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** (failures - 1));
        const random = this.#opts.random ?? Math.random;
        await sleepUnlessStopped(this.#clock, ceiling / 2 + random() * (ceiling / 2), signal);
        if (!refused && this.#opts.probe && !signal.aborted) await this.#opts.probe(signal).catch(() => {});
      }
    }
  }

  async #takeToken(signal: AbortSignal): Promise<void> {
    this.#refill();
    if (this.#tokens < 1) {
      await sleepUnlessStopped(this.#clock, ((1 - this.#tokens) / RATE) * 1000, signal);
      // The sleep earned the missing token: credited here, once, so the next refill starts after it.
      this.#refill();
    }
    this.#tokens = Math.max(0, this.#tokens - 1);
  }

  /** Adds the tokens earned since the last refill (at RATE per second, up to BURST). */
  #refill(): void {
    const now = this.#clock.now();
    this.#tokens = Math.min(BURST, this.#tokens + ((now - this.#lastRefill) / 1000) * RATE);
    this.#lastRefill = now;
  }
}

/**
 * Consul answered and said no (4xx, including 429 Too Many Requests), or answered what the
 * client refused (not JSON, another shape, too large): not an outage, and asking again at
 * once would likely get the same answer.
 */
function isRefusal(err: unknown): boolean {
  if (err instanceof ConsulBadAnswerError || err instanceof ConsulAnswerTooLargeError) return true;
  return err instanceof ConsulError && err.status !== undefined && err.status >= 400 && err.status < 500;
}

/** Sleeps on the clock; `stop()` ends the sleep early (the loop then sees the abort). */
function sleepUnlessStopped(clock: Clock, ms: number, signal: AbortSignal): Promise<void> {
  return sleep(clock, ms, signal).catch(() => {});
}
