import { constants as osConstants } from 'node:os';
import { DEFAULT_MAX_LIFETIME_MS } from '@meshlet/auth';
import {
  badOption,
  instanceAddressProblem,
  LOG_LEVELS,
  type LogLevel,
  onlyOptionKeys,
  optionObject,
  RuleValidationError,
  shownValue,
  wholeNumber,
  wholeNumberOption,
  withMethods,
} from '@meshlet/core';
import { checkPropagationOptions } from '@meshlet/propagation';
import { ConsulMetaLimits, checkConsulMeta } from '@meshlet/registry';
import { checkWarmupOptions, parseRouteSection } from '@meshlet/route';
import { AdminTokenError, MIN_ADMIN_TOKEN_LENGTH } from './admin-handler.js';
import { checkHeaderTags } from './inbound.js';
import { meshMetadataSource } from './mesh-metadata.js';
import type { MeshOptions } from './mesh-options.js';

/** Every key of MeshOptions: a key not here is refused by name (a misspelt option is not silently off). */
const MESH_KEYS = [
  'service',
  'version',
  'namespace',
  'port',
  'address',
  'instanceId',
  'metadata',
  'registry',
  'rules',
  'tagsFromHeaders',
  'logLevel',
  'tagHeaders',
  'route',
  'callDefaults',
  'tracing',
  'ratelimit',
  'auth',
  'catalog',
  'dialects',
  'warmup',
  'destinations',
  'instanceFilter',
  'inboundTags',
  'admin',
  'healthPath',
  'clock',
  'logger',
  'logIntervalMs',
  'fetch',
  'grpc',
] as const satisfies readonly (keyof MeshOptions)[];
// A key added to MeshOptions and not to MESH_KEYS does not compile.
type Unlisted = Exclude<keyof MeshOptions, (typeof MESH_KEYS)[number]>;
const everyKeyListed: [Unlisted] extends [never] ? true : never = true;
void everyKeyListed;

/**
 * The bounds of createMesh's identity and registration options (README, "Safe defaults"):
 * what Consul, Spring Cloud and a URL path accept.
 */
export const MESH_OPTION_BOUNDS = Object.freeze({
  /** A namespace: letters, digits, `_`, `.`, `-` (TSF's and Consul's), 1 to 64 characters. */
  namespaceChars: 64,
  /** An instance id: printable, no space, `/`, `?`, `#` or `%` (it goes into Consul's URL paths), 1 to 256 characters. */
  instanceIdChars: 256,
  /** Metadata pairs of the app's own: Consul's 64 less those the mesh writes itself. */
  metadataPairs: ConsulMetaLimits.maxPairs - 8,
  /** `destinations.idleMs`: from 1 s to 1 day. */
  destinationIdleMs: [1_000, 86_400_000] as const,
  /** `destinations.max`: destinations followed at once. */
  maxDestinations: 100_000,
  /** A path the mesh answers (health, catalog): starts with `/`, no `?`, `#` or space. */
  pathChars: 256,
  /** Files and routes declared for the API catalog. */
  catalogFiles: 256,
  catalogRoutes: 10_000,
  /** The longest clock skew tolerated on a signed identity. */
  maxSkewMs: 3_600_000,
  /** The longest identity token lifetime: what every verifier accepts (a longer token is refused, its caller anonymous). */
  identityTtlMs: DEFAULT_MAX_LIFETIME_MS,
});

const NAMESPACE = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;
const INSTANCE_ID = /^[\x21-\x7e]+$/;
const INSTANCE_ID_BANNED = /[/?#%]/;
const MESH_PATH = /^\/[^\s?#]*$/;
const AUTH_KEYS = ['keys', 'defaultAction', 'ttlMs', 'maxSkewMs', 'openapiFiles', 'routes', 'catalogPath'] as const;
const CATALOG_KEYS = ['openapiFiles', 'routes', 'path'] as const;
const ROUTE_KEYS = ['nearby', 'loadBalancer', 'random', 'laneTag', 'panicThresholdPercent', 'departedGraceMs', 'clock', 'logger'] as const;
const CALL_DEFAULTS_KEYS = ['retries', 'budget', 'outlierDetection'] as const;
const ADMIN_KEYS = ['token', 'path'] as const;

/**
 * Checks the options that name this instance, what it registers, the hooks it is given and
 * the sections no other check reads, before anything starts: MeshletError
 * `MESHLET_BAD_OPTION` naming the field. Unknown keys are refused at the top level and in
 * each section checked here. The `ratelimit`, `tracing` and `grpc` sections have their own
 * checks (ratelimit-options.ts, @meshlet/trace's tracing-options.ts, grpc.ts), `dialects` is
 * checked by @meshlet/propagation's checkPropagationOptions, and `warmup` by @meshlet/route's
 * checkWarmupOptions.
 */
export function checkMeshOptions(options: MeshOptions): void {
  const o = optionObject(options, 'options') as Record<string, unknown>;
  onlyOptionKeys(o, 'options', MESH_KEYS);
  const namespace = o.namespace;
  if (
    namespace !== undefined &&
    !(typeof namespace === 'string' && namespace.length <= MESH_OPTION_BOUNDS.namespaceChars && NAMESPACE.test(namespace))
  )
    throw badOption(
      'namespace',
      `${shownValue(namespace)} must be 1 to ${MESH_OPTION_BOUNDS.namespaceChars} letters, digits, "_", "." or "-"`,
    );
  const id = o.instanceId;
  if (
    id !== undefined &&
    !(typeof id === 'string' && id.length <= MESH_OPTION_BOUNDS.instanceIdChars && INSTANCE_ID.test(id) && !INSTANCE_ID_BANNED.test(id))
  )
    throw badOption(
      'instanceId',
      `${shownValue(id)} must be 1 to ${MESH_OPTION_BOUNDS.instanceIdChars} printable characters without space, "/", "?", "#" or "%"`,
    );
  if (o.address !== undefined) checkAddress(o.address, 'address');
  if (o.metadata !== undefined) checkMetadata(o.metadata);
  for (const key of ['instanceFilter', 'inboundTags', 'fetch'] as const)
    if (o[key] !== undefined && typeof o[key] !== 'function') throw badOption(key, `${shownValue(o[key])} must be a function`);
  withMethods(o.logger, 'logger', ['debug', 'info', 'warn', 'error'], 'a Logger');
  if (o.logLevel !== undefined && !LOG_LEVELS.includes(o.logLevel as LogLevel))
    throw badOption('logLevel', `${shownValue(o.logLevel)} must be one of ${LOG_LEVELS.join(', ')}`);
  withMethods(o.clock, 'clock', ['now', 'setTimeout'], 'a Clock');
  withMethods(o.registry, 'registry', ['register', 'deregister', 'watch'], 'a Registry');
  withMethods(o.rules, 'rules', ['get', 'put', 'watch'], 'a KvStore');
  if (o.healthPath !== undefined && o.healthPath !== false) meshPath(o.healthPath, 'healthPath');
  if (o.tagsFromHeaders !== undefined) checkHeaderTags(o.tagsFromHeaders);
  checkCallOptions(o);
  if (o.admin !== undefined) {
    const admin = optionObject(o.admin, 'admin');
    onlyOptionKeys(admin, 'admin', ADMIN_KEYS);
    if (admin.path !== undefined) checkAdminPath(admin.path);
    // Here, before anything starts (the admin endpoint is made after the watches are).
    if (typeof admin.token !== 'string' || admin.token.length < MIN_ADMIN_TOKEN_LENGTH) throw new AdminTokenError();
  }
  if (o.auth !== undefined) checkAuth(o.auth);
  if (o.catalog !== undefined) {
    const catalog = optionObject(o.catalog, 'catalog');
    onlyOptionKeys(catalog, 'catalog', CATALOG_KEYS);
    checkCatalogParts(catalog.openapiFiles, catalog.routes, 'catalog');
    if (catalog.path !== undefined && catalog.path !== false) meshPath(catalog.path, 'catalog.path');
  }
  if (o.warmup !== undefined) checkWarmupOptions(o.warmup, 'warmup');
  if (o.destinations !== undefined) {
    const d = optionObject(o.destinations, 'destinations');
    onlyOptionKeys(d, 'destinations', ['idleMs', 'max']);
    wholeNumberOption(d.idleMs, 'destinations.idleMs', MESH_OPTION_BOUNDS.destinationIdleMs[0], MESH_OPTION_BOUNDS.destinationIdleMs[1], 0);
    wholeNumberOption(d.max, 'destinations.max', 1, MESH_OPTION_BOUNDS.maxDestinations, 0);
  }
  if (o.dialects !== undefined) checkPropagationOptions(o.dialects, 'dialects');
}

function checkMetadata(value: unknown): void {
  const metadata = optionObject(value, 'metadata');
  const pairs = Object.keys(metadata).length;
  if (pairs > MESH_OPTION_BOUNDS.metadataPairs)
    throw badOption(
      'metadata',
      `${pairs} pairs; at most ${MESH_OPTION_BOUNDS.metadataPairs} (Consul's ${ConsulMetaLimits.maxPairs}, less the mesh's own)`,
    );
  for (const key of Object.keys(metadata)) {
    const source = meshMetadataSource(key);
    if (source !== undefined) throw badOption(`metadata.${key}`, `the mesh writes "${key}" itself; it comes from ${source}`);
  }
  try {
    checkConsulMeta(metadata as Record<string, string>);
  } catch (err) {
    const key = (err as { key?: string }).key;
    throw badOption(key === undefined ? 'metadata' : `metadata.${key.slice(0, 80)}`, (err as Error).message);
  }
}

/**
 * The admin path is registered as `meshlet-admin` metadata: a path as the health and catalog
 * paths are, and a value Consul takes (256 characters can be 768 bytes in UTF-8).
 */
function checkAdminPath(path: unknown): void {
  meshPath(path, 'admin.path');
  const bytes = Buffer.byteLength(path as string);
  if (bytes > ConsulMetaLimits.maxValueLength)
    throw badOption(
      'admin.path',
      `${bytes} bytes in UTF-8; registered as "meshlet-admin" metadata, it must fit Consul's ${ConsulMetaLimits.maxValueLength}`,
    );
}

function checkAuth(value: unknown): void {
  const auth = optionObject(value, 'auth');
  onlyOptionKeys(auth, 'auth', AUTH_KEYS);
  if (auth.defaultAction !== undefined && auth.defaultAction !== 'allow' && auth.defaultAction !== 'deny')
    throw badOption('auth.defaultAction', `${shownValue(auth.defaultAction)} must be allow or deny`);
  if (auth.maxSkewMs !== undefined && !wholeNumber(auth.maxSkewMs, 0, MESH_OPTION_BOUNDS.maxSkewMs))
    throw badOption(
      'auth.maxSkewMs',
      `${shownValue(auth.maxSkewMs)} must be a whole number of milliseconds from 0 to ${MESH_OPTION_BOUNDS.maxSkewMs}`,
    );
  if (auth.ttlMs !== undefined && !wholeNumber(auth.ttlMs, 1, MESH_OPTION_BOUNDS.identityTtlMs))
    throw badOption(
      'auth.ttlMs',
      `${shownValue(auth.ttlMs)} must be a whole number of milliseconds from 1 to ${MESH_OPTION_BOUNDS.identityTtlMs} (the longest token lifetime a verifier accepts)`,
    );
  checkCatalogParts(auth.openapiFiles, auth.routes, 'auth');
  if (auth.catalogPath !== undefined && auth.catalogPath !== false) meshPath(auth.catalogPath, 'auth.catalogPath');
}

function checkCatalogParts(files: unknown, routes: unknown, path: string): void {
  if (
    files !== undefined &&
    !(Array.isArray(files) && files.length <= MESH_OPTION_BOUNDS.catalogFiles && files.every((f) => typeof f === 'string' && f !== ''))
  )
    throw badOption(`${path}.openapiFiles`, `must be a list of at most ${MESH_OPTION_BOUNDS.catalogFiles} file paths`);
  if (routes !== undefined && !(Array.isArray(routes) && routes.length <= MESH_OPTION_BOUNDS.catalogRoutes))
    throw badOption(`${path}.routes`, `must be a list of at most ${MESH_OPTION_BOUNDS.catalogRoutes} route declarations`);
}

/** The version, the router's and the safe defaults' overrides: unknown keys refused, each value by name when out of range. */
function checkCallOptions(options: Record<string, unknown>): void {
  const version: unknown = options.version;
  if (version !== undefined && (typeof version !== 'string' || version === '' || version.length > 64))
    throw badOption('version', `${shownValue(version)} must be a string of 1 to 64 characters`);
  if (options.route !== undefined) {
    const route = optionObject(options.route, 'route');
    onlyOptionKeys(route, 'route', ROUTE_KEYS);
    checkRouteSectionValues(route);
    if (route.laneTag !== undefined && !(typeof route.laneTag === 'string' && route.laneTag !== '' && route.laneTag.length <= 128))
      throw badOption('route.laneTag', `${shownValue(route.laneTag)} must be a tag name of 1 to 128 characters`);
    if (route.random !== undefined && typeof route.random !== 'function')
      throw badOption('route.random', `${shownValue(route.random)} must be a function returning a number in [0, 1)`);
    withMethods(route.clock, 'route.clock', ['now', 'setTimeout'], 'a Clock');
    withMethods(route.logger, 'route.logger', ['debug', 'info', 'warn', 'error'], 'a Logger');
    if (route.panicThresholdPercent !== undefined && !inRange(route.panicThresholdPercent, 0, 100))
      throw badOption('route.panicThresholdPercent', `${shownValue(route.panicThresholdPercent)} must be a number from 0 to 100`);
    if (route.departedGraceMs !== undefined && !inRange(route.departedGraceMs, 0, 3_600_000))
      throw badOption('route.departedGraceMs', `${shownValue(route.departedGraceMs)} must be milliseconds from 0 to 3600000`);
  }
  const defaults: unknown = options.callDefaults;
  if (defaults === undefined || defaults === false) return;
  if (typeof defaults !== 'object' || defaults === null || Array.isArray(defaults))
    throw badOption('callDefaults', 'must be an object, or false to turn the defaults off');
  onlyOptionKeys(defaults as Record<string, unknown>, 'callDefaults', CALL_DEFAULTS_KEYS);
  const { retries, outlierDetection } = defaults as { retries?: unknown; outlierDetection?: unknown };
  if (retries !== undefined && !wholeNumber(retries, 0, 10))
    throw badOption('callDefaults.retries', `${shownValue(retries)} must be a whole number from 0 to 10`);
  if (outlierDetection !== undefined && outlierDetection !== false && (typeof outlierDetection !== 'object' || outlierDetection === null))
    throw badOption('callDefaults.outlierDetection', 'must be an instance rule, or false to turn ejection off');
}

/**
 * `route.loadBalancer` and `route.nearby` are what a rule document's route section holds:
 * checked by that section's own parser, so the option takes what a rule takes (a balancer
 * it does not know would leave every service with nothing to route to).
 */
function checkRouteSectionValues(route: Record<string, unknown>): void {
  const section: Record<string, unknown> = {};
  if (route.loadBalancer !== undefined) section.loadBalancer = route.loadBalancer;
  if (route.nearby !== undefined) section.nearby = route.nearby;
  try {
    parseRouteSection(section, 'route');
  } catch (err) {
    if (err instanceof RuleValidationError) throw badOption(err.path, err.reason);
    throw err;
  }
}

function inRange(value: unknown, min: number, max: number): boolean {
  return typeof value === 'number' && Number.isFinite(value) && value >= min && value <= max;
}

/**
 * An address to register: one every reader of the registry calls, as core checks an
 * instance (instanceAddressProblem). An address they would leave out (`1.2.3`, which a URL
 * reads as 1.2.0.3; an IPv6 zone) would register an instance no one calls.
 */
export function checkAddress(address: unknown, field: string): void {
  const problem = instanceAddressProblem(address);
  if (problem !== undefined) throw badOption(field, `${problem}; callers would leave this instance out`);
}

const SERVE_KEYS = ['healthPath', 'readinessTimeoutMs', 'deregisterDelayMs', 'drainTimeoutMs', 'signals', 'exitOnSignal'] as const;
/** serve()'s waits: at most an hour to be ready, ten minutes to deregister or drain. */
export const SERVE_BOUNDS = Object.freeze({ readinessTimeoutMs: 3_600_000, deregisterDelayMs: 600_000, drainTimeoutMs: 600_000 });

/** serve()'s options, before it waits on anything: `MESHLET_BAD_OPTION` naming the field (`serve.drainTimeoutMs`). */
export function checkServeOptions(options: unknown): void {
  const o = optionObject(options, 'serve');
  onlyOptionKeys(o, 'serve', SERVE_KEYS);
  if (o.healthPath !== undefined) meshPath(o.healthPath, 'serve.healthPath');
  if (o.readinessTimeoutMs !== undefined && !wholeNumber(o.readinessTimeoutMs, 1, SERVE_BOUNDS.readinessTimeoutMs))
    throw badOption(
      'serve.readinessTimeoutMs',
      `${shownValue(o.readinessTimeoutMs)} must be a whole number of milliseconds from 1 to ${SERVE_BOUNDS.readinessTimeoutMs}`,
    );
  checkStopWaits(o, 'serve');
  const signals = o.signals;
  if (signals !== undefined) {
    if (!Array.isArray(signals)) throw badOption('serve.signals', `${shownValue(signals)} must be a list of signal names`);
    signals.forEach((s, i) => {
      if (typeof s !== 'string' || !Object.hasOwn(osConstants.signals, s))
        throw badOption(`serve.signals[${i}]`, `${shownValue(s)} is not a signal name (SIGTERM, SIGINT, …)`);
    });
  }
  if (o.exitOnSignal !== undefined && typeof o.exitOnSignal !== 'boolean')
    throw badOption('serve.exitOnSignal', `${shownValue(o.exitOnSignal)} must be true or false`);
}

/** The gRPC server's `shutdown()` options, before it stops anything: the same waits as serve()'s, `MESHLET_BAD_OPTION` naming the field. */
export function checkGrpcShutdownOptions(options: unknown): void {
  const o = optionObject(options, 'grpc.shutdown');
  onlyOptionKeys(o, 'grpc.shutdown', ['deregisterDelayMs', 'drainTimeoutMs']);
  checkStopWaits(o, 'grpc.shutdown');
}

/** A graceful stop's waits: after deregistering, and for the requests in flight. */
function checkStopWaits(o: Record<string, unknown>, path: string): void {
  for (const key of ['deregisterDelayMs', 'drainTimeoutMs'] as const)
    if (o[key] !== undefined && !wholeNumber(o[key], 0, SERVE_BOUNDS[key]))
      throw badOption(`${path}.${key}`, `${shownValue(o[key])} must be a whole number of milliseconds from 0 to ${SERVE_BOUNDS[key]}`);
}

function meshPath(value: unknown, field: string): void {
  if (!(typeof value === 'string' && value.length <= MESH_OPTION_BOUNDS.pathChars && MESH_PATH.test(value)))
    throw badOption(
      field,
      `${shownValue(value)} must be a path of at most ${MESH_OPTION_BOUNDS.pathChars} characters that starts with "/", without "?", "#" or spaces (or false)`,
    );
}
