import type { Bulkheads, OutboundAdaptiveLimits, Release } from '@meshlet/ratelimit';

/**
 * Runs one governed call to `service` (the executor's whole call, retries included) inside
 * that destination's limits, or refuses it at once, before routing: `OutboundLimitError`
 * (`MESHLET_OUTBOUND_LIMITED`) or `BulkheadFullError` (`MESHLET_BULKHEAD_FULL`).
 */
export type DestinationGuard = <T>(service: string, fn: () => Promise<T>, signal: AbortSignal | undefined) => Promise<T>;

/**
 * The destination limits a mesh has, composed once: the bulkhead outermost, then the
 * adaptive limit (so the limit samples the call's own time, not its wait for a bulkhead
 * slot). Undefined when the mesh has neither, so a call pays nothing for them. HTTP's
 * `governedCall` and gRPC's unary calls both run through it.
 */
export function destinationGuard(
  outboundLimits: OutboundAdaptiveLimits | undefined,
  bulkheads: Bulkheads | undefined,
): DestinationGuard | undefined {
  if (bulkheads === undefined)
    return outboundLimits === undefined ? undefined : (service, fn, signal) => outboundLimits.execute(service, fn, signal);
  if (outboundLimits === undefined) return (service, fn, signal) => bulkheads.execute(service, fn, signal);
  return (service, fn, signal) => bulkheads.execute(service, () => outboundLimits.execute(service, fn, signal), signal);
}

/**
 * A slot of the destination's bulkhead for one gRPC stream, held for the stream's life (as
 * Envoy's `max_requests` counts a cluster's active streams): waits in the bulkhead's queue,
 * or refuses at once (`BulkheadFullError`); the signal gives the wait up. Undefined when the
 * mesh has no bulkheads. The adaptive limit does not count streams: a stream's life is how
 * long its caller keeps it, not a latency the limit could learn from.
 */
export type StreamSlot = (service: string, signal: AbortSignal) => Promise<Release>;

export function streamSlot(bulkheads: Bulkheads | undefined): StreamSlot | undefined {
  return bulkheads === undefined ? undefined : (service, signal) => bulkheads.for(service).acquire(signal);
}
