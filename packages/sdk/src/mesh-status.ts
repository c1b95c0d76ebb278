import type { Instance, Registry, ThrottledLogger } from '@meshlet/core';
import type { Tracing } from '@meshlet/trace';
import { type AdminAnswer, type AdminBreakerShadowStatus, type AdminHedgeStatus, type AdminStatus, adminAnswers } from './admin-handler.js';
import type { Destinations } from './destinations.js';
import type { MeshOptions } from './mesh-options.js';
import type { MeshSettings } from './mesh-settings.js';
import type { OwnService } from './own-service.js';
import type { Registration } from './registration.js';

/** What the admin endpoint's `/status` shows, read from the parts of a mesh when asked. */
export function meshStatus(
  settings: MeshSettings,
  parts: { readonly destinations: Destinations; readonly own: OwnService; readonly registration: Registration },
): AdminStatus {
  const { service, version, registry, kv, logger } = settings;
  const { destinations, own, registration } = parts;
  const registryStatus = registryHealth(registry);
  const instance = registration.instance;
  return {
    service,
    ...(instance ? { instance: instance.id } : {}),
    version,
    rules: destinations.rulesStatus(),
    breakers: destinations.executor.snapshot(),
    breakerShadow: breakerShadowOf(destinations),
    retries: destinations.executor.retryCounts(),
    hedges: hedgesOf(destinations),
    limiter: own.rateLimiter.stats,
    ...(destinations.outboundLimits ? { outboundAdaptive: destinations.outboundLimits.stats } : {}),
    registry: {
      mode: registry.constructor.name,
      degraded: registryStatus?.degraded ?? false,
      ...(registryStatus ? { errors: registryStatus.errors } : {}),
      ...(registryStatus?.snapshotErrors !== undefined ? { snapshotErrors: registryStatus.snapshotErrors } : {}),
    },
    degraded: {
      registry: registryStatus?.degraded ?? false,
      // The rule and config store unreachable: the mesh runs on the rules last read.
      kv: kv.degraded === true,
      ratelimitRedis: own.rateLimiter.stats.degraded,
    },
    conditions: Object.fromEntries((logger as ThrottledLogger).counts),
    ...(own.verifier ? { identity: { ...own.verifier.counters } } : {}),
  };
}

/** One entry per called service for which `read` has something (its executor's per-service stats). */
function perService<T>(destinations: Destinations, read: (service: string) => T | undefined): T[] {
  const out: T[] = [];
  for (const { service } of destinations.rulesStatus()) {
    const entry = read(service);
    if (entry !== undefined) out.push(entry);
  }
  return out;
}

/** What each called service's `breaker` section in shadow mode would have done. */
function breakerShadowOf(destinations: Destinations): AdminBreakerShadowStatus[] {
  return perService(destinations, (service) => {
    const s = destinations.executor.shadowStats(service);
    return s && { service, wouldReject: s.wouldReject, wouldOpen: s.wouldOpen, wouldExclude: s.wouldExclude, wouldTimeOut: s.wouldTimeOut };
  });
}

/** How each called service whose rules hedge has hedged. */
function hedgesOf(destinations: Destinations): AdminHedgeStatus[] {
  return perService(destinations, (service) => {
    const h = destinations.executor.hedgeStats(service);
    return (
      h && {
        service,
        eligible: h.eligible,
        hedges: h.hedges,
        wins: h.wins,
        denied: h.denied,
        ...(h.delayMs !== undefined ? { delayMs: h.delayMs } : {}),
      }
    );
  });
}

/** A registry that reports its health (ConsulRegistry does); the in-memory one does not. */
function registryHealth(registry: Registry): { degraded: boolean; errors: number; snapshotErrors?: number } | undefined {
  return (registry as { status?: { degraded: boolean; errors: number; snapshotErrors?: number } }).status;
}

/**
 * The admin endpoint when `options.admin` asks for it: `/status` from `status`, `/metrics`
 * from tracing's call metrics; it accepts the token for the address the mesh registered
 * at, and keeps that address after deregistration, so it still answers while the process drains.
 */
export function meshAdmin(
  options: MeshOptions,
  path: string | undefined,
  tracing: Tracing | undefined,
  registration: Registration,
  status: () => AdminStatus,
): AdminAnswer | undefined {
  if (!options.admin || path === undefined) return undefined;
  const callMetrics = tracing ? [tracing.clientMetrics, tracing.serverMetrics] : [];
  let registered: Instance | undefined;
  return adminAnswers({
    token: options.admin.token,
    instance: () => {
      registered = registration.instance ?? registered;
      return registered;
    },
    path,
    status,
    metrics: () => callMetrics.map((m) => m?.render() ?? '').join(''),
  });
}
