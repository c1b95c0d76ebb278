import {
  adoptsLogger,
  atLevel,
  type Clock,
  consoleLogger,
  type KvStore,
  MeshletError,
  type Registry,
  serviceNameProblem,
  shownValue,
  systemClock,
  type ThrottledLogger,
  throttledLogger,
} from '@meshlet/core';
import { checkTracingOptions, createTracing, type Tracing } from '@meshlet/trace';
import { TAG_HEADER_TRUST, type TagHeaderTrust } from './inbound.js';
import { checkMeshOptions } from './mesh-option-checks.js';
import type { MeshOptions } from './mesh-options.js';
import { defaultRegistry, defaultRuleStore } from './process-defaults.js';
import { type OutboundLimitSettings, outboundLimitSettings } from './ratelimit-options.js';

/** MeshOptions checked, with every default filled in: what the parts of a mesh are built from. */
export interface MeshSettings {
  readonly service: string;
  readonly version: string;
  readonly namespace: string;
  readonly registry: Registry;
  readonly kv: KvStore;
  readonly clock: Clock;
  readonly logger: ThrottledLogger;
  readonly tagHeaders: TagHeaderTrust;
  readonly healthPath: string | false;
  readonly metadata: Readonly<Record<string, string>>;
  /** `ratelimit.bulkheads` and `ratelimit.outboundAdaptive`, checked. */
  readonly outboundLimits: OutboundLimitSettings;
}

export function validPort(port: number): boolean {
  return Number.isInteger(port) && port > 0 && port < 65536;
}

/**
 * Checks every option before anything starts (watches, Redis, tracing), so that a refused
 * createMesh leaves nothing running; throws MeshletError `MESHLET_BAD_OPTION` naming the field.
 */
export function meshSettings(options: MeshOptions): MeshSettings {
  const service = options.service;
  const nameProblem = serviceNameProblem(service);
  if (nameProblem !== undefined) throw new MeshletError('MESHLET_BAD_OPTION', `service: ${nameProblem}`);
  checkMeshOptions(options);
  if (options.port !== undefined && !validPort(options.port)) {
    throw new MeshletError('MESHLET_BAD_OPTION', `port: ${options.port} is not a port number (1-65535)`);
  }
  if (options.auth && !options.auth.keys[0])
    throw new MeshletError('MESHLET_BAD_OPTION', 'auth.keys: give at least one mesh key (meshKey(id, base64))');
  if (options.logIntervalMs !== undefined && !(Number.isFinite(options.logIntervalMs) && options.logIntervalMs >= 0))
    throw new MeshletError(
      'MESHLET_BAD_OPTION',
      `logIntervalMs: ${shownValue(options.logIntervalMs)} must be a number of milliseconds, 0 or more`,
    );
  const tagHeaders = options.tagHeaders ?? (options.auth ? 'verified' : 'any');
  if (!TAG_HEADER_TRUST.includes(tagHeaders))
    throw new MeshletError('MESHLET_BAD_OPTION', `tagHeaders: ${shownValue(tagHeaders)} must be one of ${TAG_HEADER_TRUST.join(', ')}`);
  if (tagHeaders === 'verified' && !options.auth)
    throw new MeshletError(
      'MESHLET_BAD_OPTION',
      "tagHeaders: 'verified' needs auth (mesh keys) to verify callers; without auth use 'none' at the edge",
    );
  // Options to make tracing from (a Tracing given is the caller's own).
  const tracing: unknown = options.tracing;
  if (tracing !== undefined && !isTracing(tracing)) checkTracingOptions(tracing, 'tracing');
  const outboundLimits = outboundLimitSettings(options.ratelimit);
  const clock = options.clock ?? systemClock;
  return {
    service,
    version: options.version ?? '0.0.0',
    namespace: options.namespace ?? 'default',
    registry: options.registry ?? defaultRegistry(),
    kv: options.rules ?? defaultRuleStore(),
    clock,
    // Per-request conditions (bad headers, dropped tags) are logged at most once per code per
    // interval, whatever a client sends; every coded entry is counted for the metrics.
    logger: throttledLogger(baseLogger(options), {
      clock,
      ...(options.logIntervalMs !== undefined ? { intervalMs: options.logIntervalMs } : {}),
    }),
    tagHeaders,
    healthPath: options.healthPath === undefined ? '/health' : options.healthPath,
    metadata: options.metadata ?? {},
    outboundLimits,
  };
}

/** Where the mesh writes: the logger given (from `logLevel` up when set), else JSON lines on stderr from `logLevel` (default warn) up. */
function baseLogger(options: MeshOptions) {
  if (options.logger === undefined) return consoleLogger(options.logLevel ?? 'warn', options.service);
  return options.logLevel === undefined ? options.logger : atLevel(options.logger, options.logLevel);
}

/**
 * The registry and the rule store log through the mesh's logger when built without one of
 * their own (ConsulRegistry, ConsulKvStore): their degraded states are then counted in
 * `meshlet_conditions_total` and written at the mesh's level. One given a logger keeps it.
 */
export function adoptComponents(settings: MeshSettings): void {
  for (const component of [settings.registry, settings.kv]) if (adoptsLogger(component)) component.adoptLogger(settings.logger);
}

/** At close: the registry and rule store log again through the mesh adopted before this one, if still open, or their own. */
export function releaseComponents(settings: MeshSettings): void {
  for (const component of [settings.registry, settings.kv]) if (adoptsLogger(component)) component.releaseLogger?.(settings.logger);
}

/** The mesh's tracing: the one given, one made from the options, or none. */
export function meshTracing(settings: MeshSettings, options: MeshOptions): Tracing | undefined {
  const { service, version, namespace, clock, logger } = settings;
  if (options.tracing === undefined) return undefined;
  if (isTracing(options.tracing)) return options.tracing;
  return createTracing({ ...options.tracing, service, version, namespace, clock, logger });
}

/** A Tracing made by createTracing (or anything that starts client spans), not options to make one. */
const isTracing = (t: unknown): t is Tracing => typeof t === 'object' && t !== null && 'startClientSpan' in t;
