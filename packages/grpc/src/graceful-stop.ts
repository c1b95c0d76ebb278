import type { Server } from '@grpc/grpc-js';
import { type Clock, type Logger, sleep, systemClock } from '@meshlet/core';

export interface GracefulStopOptions {
  /** Takes the instance out of the registry; runs first. */
  readonly deregister: () => Promise<void>;
  /**
   * How long to keep serving after deregistering, for callers' caches to drop the instance
   * (Spring Cloud LoadBalancer keeps 35 s; a Meshlet caller follows Consul's watch within
   * milliseconds). Default 0.
   */
  readonly deregisterDelayMs?: number;
  /** How long in-flight calls may take to finish before they are cancelled. Default 10 000. */
  readonly drainTimeoutMs?: number;
  readonly clock?: Clock;
  readonly logger?: Logger;
}

/**
 * Stops a gRPC server the way the HTTP side stops: deregister first, keep serving while
 * callers notice, then stop accepting new calls and let in-flight ones finish
 * (`tryShutdown`: grpc-js sends GOAWAY, so clients move to other instances), cancelling
 * whatever is still running after `drainTimeoutMs` (`forceShutdown`). Resolves with whether
 * the drain finished in time.
 */
export async function stopGracefully(server: Server, options: GracefulStopOptions): Promise<boolean> {
  const clock = options.clock ?? systemClock;
  await options.deregister();
  if (options.deregisterDelayMs) await sleep(clock, options.deregisterDelayMs);
  const drained = new Promise<boolean>((resolve) => {
    const cancel = clock.setTimeout(() => {
      options.logger?.warn('gRPC calls still running at the drain timeout; cancelling them', { code: 'MESHLET_DRAIN_TIMEOUT' });
      server.forceShutdown();
      resolve(false);
    }, options.drainTimeoutMs ?? 10_000);
    server.tryShutdown(() => {
      cancel();
      resolve(true);
    });
  });
  return drained;
}
