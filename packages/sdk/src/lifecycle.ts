import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { isMainThread } from 'node:worker_threads';
import { InMemoryRegistry, type Instance, type Logger, MeshletError, type Registry, urlHost } from '@meshlet/core';
import { checkServeOptions } from './mesh-option-checks.js';

export interface ServeOptions {
  /** Path the readiness probe and the registry's health check call. Default: the mesh's healthPath. */
  readonly healthPath?: string;
  /** How long to wait for the app to answer its health path before giving up. Default 30 000 ms. */
  readonly readinessTimeoutMs?: number;
  /**
   * After deregistering, how long to keep serving so that callers' caches drop this
   * instance. Spring Cloud LoadBalancer caches instance lists for 35 s; Meshlet callers
   * see the change within milliseconds. Default: 35 000 ms on a remote registry, 0 on the
   * in-memory one. With the drain and the trace flush, a stop takes longer than
   * Kubernetes' default 30 s grace: raise terminationGracePeriodSeconds (README, "Graceful stop").
   */
  readonly deregisterDelayMs?: number;
  /** How long in-flight requests may take to finish once the server stops accepting. Default 10 000 ms. */
  readonly drainTimeoutMs?: number;
  /**
   * Signals that start a graceful stop. Default SIGTERM and SIGINT; [] installs none. The
   * listeners stay until the mesh is released: a repeated signal during the stop is logged
   * once (MESHLET_SIGNAL_IGNORED) and ignored. In a worker thread, which gets no signals,
   * none are installed (MESHLET_SIGNALS_NOT_IN_WORKER): the main thread calls shutdown().
   */
  readonly signals?: readonly NodeJS.Signals[];
  /**
   * Exit the process once a signal-driven stop is done: once every mesh's stop (or close)
   * under way in the process is, code 1 if one failed, else 0. Default true.
   */
  readonly exitOnSignal?: boolean;
}

/**
 * The mesh ends (graceful stops and closes) under way in this process, over every mesh, and
 * whether a signal asked it to exit. Signals are process-wide: every mesh that serve()d
 * gets the same SIGTERM, and the first to finish exiting the process would cut the
 * others' drains and trace flushes. The process exits once the last end under way settles.
 */
class ProcessEnds {
  #underWay = 0;
  #exitWanted = false;
  #failed = false;
  #repeatLogged = false;

  /** Counts an end under way; the function returned says once how it settled. */
  begin(): (failed: boolean) => void {
    this.#underWay++;
    let settled = false;
    return (failed) => {
      if (settled) return;
      settled = true;
      this.#underWay--;
      // An end that failed before the signal was the app's to handle (it got the rejection).
      if (failed && this.#exitWanted) this.#failed = true;
      this.#exitIfSettled();
    };
  }

  /** Exits the process once no end is under way: code 1 if one failed meanwhile, else 0. */
  exitWhenSettled(): void {
    this.#exitWanted = true;
    this.#exitIfSettled();
  }

  /** True once a signal asked the process to exit. */
  get exiting(): boolean {
    return this.#exitWanted;
  }

  /** True the first time a repeated signal comes: one log line for the process, not one per mesh. */
  firstRepeat(): boolean {
    if (this.#repeatLogged) return false;
    this.#repeatLogged = true;
    return true;
  }

  #exitIfSettled(): void {
    if (this.#exitWanted && this.#underWay === 0) process.exit(this.#failed ? 1 : 0);
  }
}

const processEnds = new ProcessEnds();

/**
 * Waits until `server` listens and its health path answers 2xx; returns the port, or
 * undefined once `stopped()` says the mesh stopped meanwhile (its health path then answers
 * 503 for good: no use waiting out the timeout).
 */
export async function waitUntilReady(
  server: Server,
  healthPath: string,
  timeoutMs: number,
  stopped: () => boolean = () => false,
): Promise<number | undefined> {
  if (!server.listening) await once(server, 'listening');
  const address = server.address() as AddressInfo | null;
  if (!address || typeof address !== 'object') throw new MeshletError('MESHLET_NOT_LISTENING', 'serve(): the server has no TCP address');
  const host = address.address === '::' || address.address === '0.0.0.0' ? '127.0.0.1' : address.address;
  const url = `http://${urlHost(host)}:${address.port}${healthPath}`;
  // Real time, not the mesh's clock: this waits on a real server over the network. Monotonic
  // (performance.now()), not Date.now(): a step of the host's clock must not end the wait.
  const deadline = performance.now() + timeoutMs;
  let last = 'no answer';
  while (performance.now() < deadline) {
    if (stopped()) return undefined;
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
      await res.body?.cancel();
      if (res.ok) return address.port;
      last = `HTTP ${res.status}`;
    } catch (err) {
      last = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new MeshletError('MESHLET_NOT_READY', `${url} did not answer 2xx within ${timeoutMs} ms (${last}): not registering`);
}

/** Stops accepting, lets in-flight requests finish up to the deadline, then closes what is left. */
export async function drain(server: Server, timeoutMs: number): Promise<void> {
  if (!server.listening) return;
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeIdleConnections();
  // Keep-alive connections that become idle after their response are closed as they go idle.
  const idle = setInterval(() => server.closeIdleConnections(), 50);
  const timer = setTimeout(() => server.closeAllConnections(), timeoutMs);
  try {
    await closed;
  } finally {
    clearInterval(idle);
    clearTimeout(timer);
  }
}

export interface LifecycleDeps {
  readonly service: string;
  readonly healthPath: string | false;
  readonly registry: Registry;
  readonly logger: Logger;
  readonly register: (overrides: { port?: number }) => Promise<Instance>;
  readonly deregister: () => Promise<void>;
  readonly release: () => Promise<void>;
}

/**
 * A mesh's life: `serve` (wait until the server answers its health path, install the
 * signal handlers, register), `shutdown` (wait for a registration in flight, deregister,
 * wait for callers' caches, drain, close) and `close` (deregister and close at once).
 * The mesh ends once: whichever of `shutdown` and `close` comes first decides how, and
 * every later call of either (and the signal handler) awaits that same end. `release`
 * closes the mesh's parts.
 */
export class Lifecycle {
  readonly #deps: LifecycleDeps;
  #stopping = false;
  #closed = false;
  /** The mesh's end, once begun: a second caller that returned earlier would let its app exit mid-drain. */
  #ending: Promise<void> | undefined;
  #servedBy: { server: Server; options: ServeOptions } | undefined;
  /** True once the first serve() decided on the signal handlers (installed, or not in a worker). */
  #signalsDecided = false;
  #signalHandler: ((signal: NodeJS.Signals) => void) | undefined;
  /** The signals the handler is installed on, to take it off when the mesh ends. */
  #signals: readonly NodeJS.Signals[] = [];

  constructor(deps: LifecycleDeps) {
    this.#deps = deps;
  }

  /** True once a graceful stop has begun: the health path answers 503. */
  get stopping(): boolean {
    return this.#stopping;
  }

  /** True once the mesh's parts are closed. */
  get closed(): boolean {
    return this.#closed;
  }

  async serve(server: Server, options: ServeOptions = {}): Promise<Instance> {
    checkServeOptions(options);
    const { healthPath } = this.#deps;
    const path = options.healthPath ?? (healthPath || '/health');
    const stopped = () => this.#ending !== undefined;
    const port = await waitUntilReady(server, path, options.readinessTimeoutMs ?? 30_000, stopped);
    // Stopped or closed while waiting for the server: nothing to register.
    if (port === undefined || stopped()) throw new MeshletError('MESHLET_CLOSED', 'serve(): the mesh stopped while its server got ready');
    this.#servedBy = { server, options };
    // The handlers first: a SIGTERM while the registration is in flight stops gracefully
    // (the deregistration waits for it: Registration.deregister) instead of ending the process registered.
    this.#installSignalHandlers(options);
    return this.#deps.register({ port });
  }

  /**
   * The first signal starts the graceful stop (or joins one under way); the process exits
   * once every mesh's stop under way is done (`ProcessEnds`). The handlers stay installed
   * until the mesh is released, or, once the process is exiting, until it exits: a repeated
   * signal (Ctrl-C under `npm run` delivers SIGINT twice, ms apart) is logged once and
   * ignored, where the default action would kill the process mid-drain, still registered.
   * A worker thread gets no signals (Node delivers them to the main thread): there the
   * main thread must call `shutdown()`, and the mesh says so.
   */
  #installSignalHandlers(options: ServeOptions): void {
    const { logger, service } = this.#deps;
    const signals = options.signals ?? ['SIGTERM', 'SIGINT'];
    if (signals.length === 0 || this.#signalsDecided) return;
    this.#signalsDecided = true;
    if (!isMainThread) {
      logger.warn(
        'no signal handlers in a worker thread: signals reach the main thread only; call mesh.shutdown() from it (post the worker a message)',
        {
          code: 'MESHLET_SIGNALS_NOT_IN_WORKER',
          service,
          signals: signals.join(','),
        },
      );
      return;
    }
    let first: NodeJS.Signals | undefined;
    this.#signalHandler = (signal) => {
      if (first !== undefined) {
        if (processEnds.firstRepeat())
          logger.warn('signal ignored: the graceful stop goes on, and the process exits when it is done', {
            code: 'MESHLET_SIGNAL_IGNORED',
            service,
            signal,
            stoppingOn: first,
          });
        return;
      }
      first = signal;
      logger.info('graceful stop', { service, signal });
      // Settles after the failure is logged: the exit waits for it.
      const settled = processEnds.begin();
      void this.shutdown().then(
        () => settled(false),
        (err: Error) => {
          logger.error('graceful stop failed', { error: err.message });
          settled(true);
        },
      );
      if (options.exitOnSignal !== false) processEnds.exitWhenSettled();
    };
    this.#signals = signals;
    for (const s of signals) process.on(s, this.#signalHandler);
  }

  shutdown(): Promise<void> {
    this.#ending ??= this.#counted(() => this.#stop());
    return this.#ending;
  }

  close(): Promise<void> {
    this.#ending ??= this.#counted(() => this.#closeAtOnce());
    return this.#ending;
  }

  /** The mesh's end, counted among the process's ends under way: a signal's exit waits for it. */
  async #counted(end: () => Promise<void>): Promise<void> {
    const settled = processEnds.begin();
    try {
      await end();
      settled(false);
    } catch (err) {
      settled(true);
      throw err;
    }
  }

  async #stop(): Promise<void> {
    this.#stopping = true;
    const opts = this.#servedBy?.options ?? {};
    await this.#deps.deregister();
    const delay = opts.deregisterDelayMs ?? (this.#deps.registry instanceof InMemoryRegistry ? 0 : 35_000);
    if (delay > 0) await new Promise((r) => setTimeout(r, delay));
    if (this.#servedBy) await drain(this.#servedBy.server, opts.drainTimeoutMs ?? 10_000);
    await this.#release();
  }

  async #closeAtOnce(): Promise<void> {
    await this.#deps.deregister();
    await this.#release();
  }

  async #release(): Promise<void> {
    this.#closed = true;
    try {
      await this.#deps.release();
    } finally {
      // Only now (the trace flush included): a signal after the end is no longer the mesh's,
      // the process's default (or the app's) again. Unless the process is exiting once the
      // other meshes' stops are done: a repeated signal meanwhile is ignored, not fatal.
      const handler = this.#signalHandler;
      if (handler !== undefined && !processEnds.exiting) for (const s of this.#signals) process.removeListener(s, handler);
    }
  }
}
