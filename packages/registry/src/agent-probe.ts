import { type Clock, sleep, systemClock } from '@meshlet/core';

export interface AgentProbeOptions {
  /** One cheap request: resolves when the agent answers and can serve reads, rejects otherwise. */
  readonly check: (signal: AbortSignal) => Promise<void>;
  /** Ceiling of the jittered pause between failed checks, ms: pauses fall in [ceiling/2, ceiling). Default 1 000. */
  readonly periodMs?: number;
  /** Time for the pauses; tests pass a ManualClock. Default systemClock (its timers do not keep the process alive; see `wait`). */
  readonly clock?: Clock;
  /** Source of the jitter, in [0, 1). Default Math.random. */
  readonly random?: () => number;
}

/**
 * Waits until the Consul agent answers again, for every watch of one client at once.
 * While the agent is down, each watch that failed waits here rather than retrying its
 * own query: the agent sees one small request (`/v1/status/leader`) per period per
 * client, however many services and prefixes the process follows, and every watch
 * retries as soon as one check passes. The pause between checks is short and jittered
 * (default 500–1 000 ms), so a process resyncs within about a second of the agent
 * answering, and a fleet's checks do not arrive in step.
 */
export class AgentProbe {
  readonly #check: AgentProbeOptions['check'];
  readonly #clock: Clock;
  readonly #random: () => number;
  readonly #periodMs: number;
  #round: Promise<void> | undefined;
  #waiters = 0;
  #keepingAlive = 0;
  #aliveHandle: NodeJS.Timeout | undefined;
  #checks = 0;

  constructor(options: AgentProbeOptions) {
    this.#check = options.check;
    this.#clock = options.clock ?? systemClock;
    this.#random = options.random ?? Math.random;
    this.#periodMs = options.periodMs ?? 1_000;
  }

  /** Checks sent since start. */
  get checks(): number {
    return this.#checks;
  }

  /**
   * Resolves once a check passes (joining the round in flight, if any); rejects with the
   * signal's reason if it aborts first. A round with nobody left waiting ends by itself.
   * With `keepAlive` (the default, as a watch's loop always did) the process stays alive
   * while this waits; a background check (re-registration) passes false.
   */
  async wait(signal: AbortSignal, options: { keepAlive?: boolean } = {}): Promise<void> {
    if (signal.aborted) throw signal.reason;
    const keepAlive = options.keepAlive !== false;
    this.#waiters++;
    if (keepAlive && this.#keepingAlive++ === 0) this.#aliveHandle = setInterval(() => {}, 2 ** 30);
    try {
      this.#round ??= this.#run().finally(() => {
        this.#round = undefined;
      });
      await untilAborted(this.#round, signal);
    } finally {
      this.#waiters--;
      if (keepAlive && --this.#keepingAlive === 0) clearInterval(this.#aliveHandle);
    }
  }

  async #run(): Promise<void> {
    for (;;) {
      this.#checks++;
      try {
        await this.#check(AbortSignal.timeout(this.#periodMs));
        return;
      } catch {
        // still down: pause, then check again while someone waits
      }
      if (this.#waiters === 0) return;
      const ceiling = this.#periodMs;
      await sleep(this.#clock, ceiling / 2 + this.#random() * (ceiling / 2));
      if (this.#waiters === 0) return;
    }
  }
}

function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}
