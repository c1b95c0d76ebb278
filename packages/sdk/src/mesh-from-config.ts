import { join } from 'node:path';
import { type Config, type ConfigFormat, ConfigSourceError, createConfig, keysFromEnvironment } from '@meshlet/config';
import {
  AdoptableLogger,
  atLevel,
  consoleLogger,
  decimalNumber,
  hasControlCharacter,
  InMemoryKvStore,
  type KvStore,
  LOG_LEVELS,
  type Logger,
  type LogLevel,
  MeshletError,
  type Registry,
  shownValue,
  throttledLogger,
} from '@meshlet/core';
import { ConsulKvStore, ConsulRegistry } from '@meshlet/registry';
import {
  type OtlpCompression,
  type OtlpHttpOptions,
  type OtlpProtocol,
  OWN_RESOURCE_KEYS,
  resourceAttributesProblem,
  type TraceLogFormat,
} from '@meshlet/trace';
import { AdminTokenError } from './admin-handler.js';
import { followIdentityKeys, IDENTITY_KEYS_PREFIX, meshKeysFromConfig } from './identity-keys.js';
import { createMesh } from './mesh.js';
import { meshInternals } from './mesh-internals.js';
import type { Mesh, MeshOptions } from './mesh-options.js';
import {
  type Environment,
  type NamedFile,
  otelServiceNameUnused,
  otlpFromOtelEnvironment,
  otlpHeadersOf,
  otlpTlsOf,
  resourceAttributesFromOtelEnvironment,
  sampleRatioFromOtelEnvironment,
} from './otlp-settings.js';

/** A mesh configured from @meshlet/config, with the config it was made from (hot: `config.onChange`). */
export type ConfiguredMesh = Mesh & { readonly config: Config };

export interface MeshFromConfigOptions {
  /** Environment variables. Default: process.env. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Options given in code; they win over configuration. */
  readonly overrides?: Partial<MeshOptions>;
  readonly logger?: Logger;
  /**
   * Fail start when Consul KV cannot be read and no snapshot of it was kept, or when a
   * config document read at start does not parse (`ConfigParseError` naming its key) or is
   * past the config's bounds (`ConfigTooLargeError` naming its key and the bound; default
   * true, as `createConfig`'s). With false, such a process starts from the environment and
   * the local file, or without that document (logged); with `meshlet.consul.snapshot-dir`,
   * an unreadable KV starts from the snapshot either way.
   */
  readonly failFast?: boolean;
}

/** The longest `meshlet.consul.snapshot-dir` taken: Linux's PATH_MAX, 4,096 bytes. */
const SNAPSHOT_DIR_MAX_CHARS = 4096;

/** The snapshot files in `meshlet.consul.snapshot-dir`, one pair per service (processes of one service may share them). */
const snapshotFilesOf = (dir: string, service: string) => ({
  /** ConsulKvStore's: the config and the rules last read. */
  kv: join(dir, `${service}.kv.json`),
  /** ConsulRegistry's: the instances last read. */
  registry: join(dir, `${service}.registry.json`),
});

const FORMATS: readonly ConfigFormat[] = ['key-value', 'yaml', 'properties', 'files'];

/**
 * Creates a mesh whose options all come from configuration: a twelve-factor service joins
 * the estate with environment variables alone. Read in two steps, as Spring Cloud's
 * bootstrap does: first the environment and the local file (`MESHLET_CONFIG_FILE`) say who
 * this service is and where Consul is (`MESHLET_SERVICE`, `MESHLET_PROFILES`,
 * `MESHLET_CONSUL_ADDRESS` or `CONSUL_HTTP_ADDR`, `MESHLET_CONSUL_TOKEN` or
 * `CONSUL_HTTP_TOKEN`, `MESHLET_CONFIG_FORMAT`); then Consul KV in Spring's layout
 * (`config/<service>,<profile>/`, `config/application/`…) under them, with `ENC(...)`
 * values decrypted with `MESHLET_ENCRYPT_KEY`. Every option is a key under `meshlet.`
 * (`meshlet.version`, `meshlet.metadata.zone`, `meshlet.auth.keys[0].key`…; see the
 * README's table); an environment variable with the key's relaxed name (`MESHLET_VERSION`) wins
 * over KV, KV over the file. Without `meshlet.tracing.otlp.url`, OpenTelemetry's own
 * variables (`OTEL_EXPORTER_OTLP_ENDPOINT`…) name the collector. With a Consul address, Consul is the registry and the rule
 * store; without one, the in-memory defaults. A missing or malformed value is a
 * MeshletError `MESHLET_BAD_OPTION` naming the key and the variable.
 */
export async function createMeshFromConfig(options: MeshFromConfigOptions = {}): Promise<ConfiguredMesh> {
  const env = options.env ?? process.env;
  const overrides = options.overrides ?? {};
  const file = env.MESHLET_CONFIG_FILE;
  const common = { env, ...(file ? { file } : {}) };
  const withLogger = options.logger ? { logger: options.logger } : {};

  // Bootstrap: who am I, and where is Consul (environment and the local file only).
  const boot = await createConfig({ ...common, ...withLogger, kv: new InMemoryKvStore(), service: 'application', watch: false, keys: [] });
  const service = overrides.service ?? boot.get('meshlet.service');
  const bootLevel = overrides.logLevel ?? logLevelOf(boot);
  boot.close();
  if (!service)
    throw new MeshletError(
      'MESHLET_BAD_OPTION',
      'meshlet.service: not set; set MESHLET_SERVICE (or meshlet.service in MESHLET_CONFIG_FILE)',
    );
  const consulAddress = boot.get('meshlet.consul.address') ?? env.CONSUL_HTTP_ADDR;
  const consulToken = boot.get('meshlet.consul.token') ?? env.CONSUL_HTTP_TOKEN;
  const format = (boot.get('meshlet.config.format') ?? 'key-value') as ConfigFormat;
  if (!FORMATS.includes(format))
    throw new MeshletError(
      'MESHLET_BAD_OPTION',
      `meshlet.config.format (MESHLET_CONFIG_FORMAT): "${format}" is not one of ${FORMATS.join(', ')}`,
    );
  const profiles = boot.getList('meshlet.profiles');
  const consul = consulAddress ? { address: consulAddress, ...(consulToken ? { token: consulToken } : {}) } : undefined;
  const snapshotDir = boot.get('meshlet.consul.snapshot-dir') || undefined;
  // A directory path: bounded, no control character (a NUL makes every fs call throw).
  if (snapshotDir !== undefined && (snapshotDir.length > SNAPSHOT_DIR_MAX_CHARS || hasControlCharacter(snapshotDir)))
    throw new MeshletError(
      'MESHLET_BAD_OPTION',
      `meshlet.consul.snapshot-dir (MESHLET_CONSUL_SNAPSHOTDIR): a directory path of at most ${SNAPSHOT_DIR_MAX_CHARS} characters, no control character`,
    );
  const snapshots = snapshotDir !== undefined ? snapshotFilesOf(snapshotDir, service) : undefined;
  // The config built here logs through `relay`: until the mesh is made, as the mesh will (the
  // logger given, the level configured); then through the mesh's own logger, so that its
  // conditions are counted in meshlet_conditions_total.
  const bootLogger = options.logger
    ? bootLevel !== undefined
      ? atLevel(options.logger, bootLevel)
      : options.logger
    : consoleLogger(bootLevel ?? 'warn', service);
  const relay = new AdoptableLogger(undefined, bootLogger);
  // The Consul store and registry are built without a logger of their own and adopt the
  // boot logger (throttled, as their own would be); the mesh adopts them over it once made
  // (createMesh), so their per-answer codes reach the mesh's logger one by one and each is
  // counted (built with `relay` as their own, they throttled before the mesh saw them).
  const bootThrottled = throttledLogger(bootLogger);
  const consulKv =
    consul && overrides.rules === undefined
      ? new ConsulKvStore({ ...consul, ...(snapshots ? { snapshotFile: snapshots.kv } : {}) })
      : undefined;
  consulKv?.adoptLogger(bootThrottled);
  const kv: KvStore = overrides.rules ?? consulKv ?? new InMemoryKvStore();

  const config = await createConfig({
    ...common,
    logger: relay,
    kv,
    service,
    profiles,
    format,
    keys: keysFromEnvironment(env),
    ...(options.failFast !== undefined ? { failFast: options.failFast } : {}),
  }).catch((err: unknown) => {
    throw err instanceof ConfigSourceError && consul !== undefined && overrides.rules === undefined ? unreachable(err) : err;
  });
  try {
    warnUnknownKeys(config, bootLogger);
    const consulRegistry =
      consul && overrides.registry === undefined
        ? new ConsulRegistry({ ...consul, ...(snapshots ? { snapshotFile: snapshots.registry } : {}) })
        : undefined;
    consulRegistry?.adoptLogger(bootThrottled);
    const registry: Registry | undefined = overrides.registry ?? consulRegistry;
    const mesh = createMesh({
      ...meshOptionsOf(config, service, env),
      ...(registry ? { registry } : {}),
      ...(consul || overrides.rules ? { rules: kv } : {}),
      ...(options.logger ? { logger: options.logger } : {}),
      ...overrides,
    });
    const meshLogger = meshInternals(mesh).logger;
    relay.adoptLogger(meshLogger);
    // Hot where it is safe: a change of the keys in config rotates them (a bad one is logged, the keys in force stay).
    const unfollow = config.get(`${IDENTITY_KEYS_PREFIX}[0].id`) !== undefined ? followIdentityKeys(mesh, config) : () => {};
    // OpenTelemetry's name for the service is not Meshlet's (its registry name names the
    // spans): said once, at start, to whoever set one that differs.
    const otelName = mesh.tracing !== undefined ? otelServiceNameUnused(env, service) : undefined;
    if (otelName !== undefined)
      meshLogger.warn("OTEL_SERVICE_NAME is not used: the spans carry the mesh's service", {
        code: 'MESHLET_OTEL_SERVICE_NAME_UNUSED',
        otelServiceName: otelName,
        service,
      });
    const close = mesh.close;
    const shutdown = mesh.shutdown;
    const done = () => {
      unfollow();
      config.close();
    };
    return Object.assign(mesh, {
      config,
      close: () => close().finally(done),
      shutdown: () => shutdown().finally(done),
    });
  } catch (err) {
    config.close();
    throw configuredError(err, overrides);
  }
}

/**
 * Every key under `meshlet.` this file (and identity-keys.ts) reads, for the unknown-key
 * warning; a test holds it to every `'meshlet.…'` literal in those files.
 */
export const MESHLET_KEYS: readonly string[] = [
  'meshlet.service',
  'meshlet.profiles',
  'meshlet.config.format',
  'meshlet.consul.address',
  'meshlet.consul.token',
  'meshlet.consul.snapshot-dir',
  'meshlet.version',
  'meshlet.namespace',
  'meshlet.port',
  'meshlet.address',
  'meshlet.instance-id',
  'meshlet.health-path',
  'meshlet.destinations.idle-ms',
  'meshlet.destinations.max',
  'meshlet.auth.default-action',
  'meshlet.admin.token',
  'meshlet.ratelimit.redis-url',
  'meshlet.tracing.enabled',
  'meshlet.tracing.sample-ratio',
  'meshlet.tracing.otlp.url',
  'meshlet.tracing.otlp.protocol',
  'meshlet.tracing.otlp.compression',
  'meshlet.tracing.otlp.timeout-ms',
  'meshlet.tracing.otlp.headers',
  'meshlet.tracing.otlp.certificate',
  'meshlet.tracing.otlp.client-certificate',
  'meshlet.tracing.otlp.client-key',
  'meshlet.tracing.log.path',
  'meshlet.tracing.log.format',
  'meshlet.log.level',
];
/** Open maps: any key under them is read (`meshlet.metadata.zone`, `meshlet.auth.keys[0].id`). */
export const MESHLET_KEY_MAPS: readonly string[] = [
  'meshlet.metadata.',
  `${IDENTITY_KEYS_PREFIX}[`,
  'meshlet.tracing.resource-attributes.',
  'meshlet.tracing.resource-attributes[',
];
/** Unknown keys named one a line at most, at start; past it, one line counts the rest. */
const UNKNOWN_KEYS_LOGGED = 20;

/**
 * Keys under `meshlet.` in configuration that the mesh does not read (a typo,
 * `meshlet.helth-path`, would otherwise be silently ignored): one warning each at start,
 * with the nearest known key. Keys given only as a relaxed environment variable are in no
 * source's key set, so cannot be told.
 */
function warnUnknownKeys(config: Config, logger: Logger): void {
  const known = new Set(MESHLET_KEYS);
  const unknown = Object.keys(config.snapshot()).filter(
    (key) => key.startsWith('meshlet.') && !known.has(key) && !MESHLET_KEY_MAPS.some((map) => key.startsWith(map)),
  );
  const candidates = [...MESHLET_KEYS, ...MESHLET_KEY_MAPS.map((map) => map.slice(0, -1))];
  for (const key of unknown.slice(0, UNKNOWN_KEYS_LOGGED)) {
    let nearest = candidates[0] as string;
    for (const c of candidates) if (editDistance(key, c) < editDistance(key, nearest)) nearest = c;
    logger.warn('a configuration key under meshlet. that the mesh does not read: ignored', {
      code: 'MESHLET_CONFIG_UNKNOWN_KEY',
      key,
      nearest,
    });
  }
  if (unknown.length > UNKNOWN_KEYS_LOGGED)
    logger.warn('more configuration keys under meshlet. that the mesh does not read: ignored', {
      code: 'MESHLET_CONFIG_UNKNOWN_KEY',
      more: unknown.length - UNKNOWN_KEYS_LOGGED,
    });
}

/** Levenshtein distance: edits from `a` to `b` (keys are short; two rows suffice). */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++)
      row[j] = Math.min(
        (previous[j] as number) + 1,
        (row[j - 1] as number) + 1,
        (previous[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    previous = row;
  }
  return previous[b.length] as number;
}

/** Consul KV unreadable at start, with no snapshot: what this function's caller can do about it. */
function unreachable(err: ConfigSourceError): ConfigSourceError {
  const cause = err.cause instanceof Error ? err.cause.message : String(err.cause);
  return new ConfigSourceError(
    err.source,
    `cannot be read (${cause}), and no snapshot of it was kept. Check that Consul is reachable; set meshlet.consul.snapshot-dir (MESHLET_CONSUL_SNAPSHOTDIR) so that a process restarted during an outage starts from the last state read; or pass failFast: false to createMeshFromConfig to start from the environment and the local file.`,
    { cause: err.cause },
  );
}

/** The MeshOptions fields configuration gives that createMesh checks, and their keys. */
const CHECKED_KEYS: readonly (readonly [field: string, key: string])[] = [
  ['service', 'meshlet.service'],
  ['version', 'meshlet.version'],
  ['port', 'meshlet.port'],
  ['namespace', 'meshlet.namespace'],
  ['instanceId', 'meshlet.instance-id'],
  ['address', 'meshlet.address'],
  ['healthPath', 'meshlet.health-path'],
  ['destinations.idleMs', 'meshlet.destinations.idle-ms'],
  ['destinations.max', 'meshlet.destinations.max'],
  ['ratelimit.redisUrl', 'meshlet.ratelimit.redis-url'],
  ['tracing.sampleRatio', 'meshlet.tracing.sample-ratio'],
  ['tracing.otlp.url', 'meshlet.tracing.otlp.url'],
  ['tracing.otlp.protocol', 'meshlet.tracing.otlp.protocol'],
  ['tracing.otlp.compression', 'meshlet.tracing.otlp.compression'],
  ['tracing.otlp.timeoutMs', 'meshlet.tracing.otlp.timeout-ms'],
  ['tracing.log.path', 'meshlet.tracing.log.path'],
  ['tracing.log.format', 'meshlet.tracing.log.format'],
  // An open map: `metadata.<name>` is `meshlet.metadata.<name>`, whatever the name.
  ['metadata.*', 'meshlet.metadata.*'],
];

/**
 * createMesh's refusal of a value that came from configuration, naming the key and its
 * variable as the README promises (`meshlet.version (MESHLET_VERSION): …`) instead of the
 * option field the operator never wrote; a value given in code (`overrides`) keeps its field.
 */
function configuredError(err: unknown, overrides: Partial<MeshOptions>): unknown {
  // The one admin refusal not a MESHLET_BAD_OPTION: renamed the same way, its type kept (users catch it).
  if (err instanceof AdminTokenError && overrides.admin === undefined)
    return new AdminTokenError(`${ADMIN_TOKEN_KEY} (${envOf(ADMIN_TOKEN_KEY)})`);
  if (!(err instanceof MeshletError) || err.code !== 'MESHLET_BAD_OPTION') return err;
  for (const [pattern, keyPattern] of CHECKED_KEYS) {
    const field = pattern.endsWith('.*') ? mapField(err.message, pattern.slice(0, -1)) : pattern;
    if (field === undefined || !err.message.startsWith(`${field}: `)) continue;
    const key = keyPattern.endsWith('.*') ? keyPattern.slice(0, -1) + field.slice(pattern.length - 1) : keyPattern;
    const top = field.split('.')[0] as keyof MeshOptions;
    return overrides[top] !== undefined ? err : bad(key, err.message.slice(field.length + 2));
  }
  return err;
}

/** The field a refusal names under an open map's `prefix` (`metadata.bad.key: …` → `metadata.bad.key`). */
function mapField(message: string, prefix: string): string | undefined {
  if (!message.startsWith(prefix)) return undefined;
  const end = message.indexOf(': ');
  return end > prefix.length ? message.slice(0, end) : undefined;
}

/** The relaxed environment variable of a key, for error messages: `meshlet.auth.keys` → MESHLET_AUTH_KEYS. */
const envOf = (key: string) =>
  key
    .replace(/\[(\d+)\]/g, '_$1')
    .toUpperCase()
    .replace(/[.-]/g, (c) => (c === '.' ? '_' : ''));

function bad(key: string, message: string): MeshletError {
  return new MeshletError('MESHLET_BAD_OPTION', `${key} (${envOf(key)}): ${message}`);
}

const LOG_LEVEL_KEY = 'meshlet.log.level';
const ADMIN_TOKEN_KEY = 'meshlet.admin.token';

/** `meshlet.log.level`: one of LOG_LEVELS; unset when absent or empty; anything else refused naming it. */
function logLevelOf(config: Config): LogLevel | undefined {
  const raw = config.get(LOG_LEVEL_KEY);
  if (raw === undefined || raw === '') return undefined;
  if (!LOG_LEVELS.includes(raw as LogLevel)) throw bad(LOG_LEVEL_KEY, `${shownValue(raw)} must be one of ${LOG_LEVELS.join(', ')}`);
  return raw as LogLevel;
}

/** A key's decimal number (core's decimalNumber); unset when absent or empty, as every key; anything else refused naming it. */
function numberOf(config: Config, key: string): number | undefined {
  const raw = config.get(key);
  if (raw === undefined || raw === '') return undefined;
  const n = decimalNumber(raw);
  if (n === undefined) throw bad(key, `${shownValue(raw)} is not a decimal number`);
  return n;
}

/**
 * The sample ratio's key, checked whether tracing is on or not: a value that would be
 * refused once tracing is switched on is refused now, not on the day it is.
 */
function sampleRatioOf(config: Config): number | undefined {
  const key = 'meshlet.tracing.sample-ratio';
  const ratio = numberOf(config, key);
  if (ratio !== undefined && !(ratio >= 0 && ratio <= 1))
    throw bad(key, `${ratio} — give a number from 0 (no new traces) to 1 (every trace)`);
  return ratio;
}

const OTLP_HEADERS_KEY = 'meshlet.tracing.otlp.headers';

/**
 * The collector from the `meshlet.tracing.otlp.` keys when `.url` is set; else from
 * OpenTelemetry's own variables in `env` (`OTEL_EXPORTER_OTLP_ENDPOINT`…), when given. One
 * source whole, never a mix: a credential set for one collector never goes to another's URL.
 */
function otlpOf(config: Config, get: (key: string) => string | undefined, env: Environment | undefined): OtlpHttpOptions | undefined {
  const url = get('meshlet.tracing.otlp.url');
  if (url === undefined) {
    // Tracing switched off in Meshlet's keys: OpenTelemetry's variables (set for another
    // SDK in the same pod, say) are not read, so not refused either.
    if (env === undefined || !config.getBoolean('meshlet.tracing.enabled', true)) return undefined;
    return otlpFromOtelEnvironment(env);
  }
  const protocol = get('meshlet.tracing.otlp.protocol');
  const compression = get('meshlet.tracing.otlp.compression');
  const timeoutMs = numberOf(config, 'meshlet.tracing.otlp.timeout-ms');
  const headers = get(OTLP_HEADERS_KEY);
  const file = (key: string): NamedFile | undefined => {
    const path = get(key);
    return path === undefined ? undefined : [path, `${key} (${envOf(key)})`];
  };
  const ca = file('meshlet.tracing.otlp.certificate');
  const cert = file('meshlet.tracing.otlp.client-certificate');
  const key = file('meshlet.tracing.otlp.client-key');
  const tls = otlpTlsOf({ ...(ca ? { ca } : {}), ...(cert ? { cert } : {}), ...(key ? { key } : {}) }, url, 'meshlet.tracing.otlp.url');
  return {
    url,
    ...(tls !== undefined ? { tls } : {}),
    ...(protocol !== undefined ? { protocol: protocol as OtlpProtocol } : {}),
    ...(compression !== undefined ? { compression: compression as OtlpCompression } : {}),
    ...(timeoutMs !== undefined ? { timeoutMs } : {}),
    ...(headers !== undefined ? { headers: otlpHeadersOf(headers, `${OTLP_HEADERS_KEY} (${envOf(OTLP_HEADERS_KEY)})`) } : {}),
  };
}

/** Resource attributes as Spring Boot's shared configuration names them (Micrometer Tracing's OpenTelemetry bridge), and Meshlet's own. */
const RESOURCE_ATTRIBUTE_MAPS = ['management.opentelemetry.resource-attributes', 'meshlet.tracing.resource-attributes'];

/**
 * The spans' resource attributes from every place a platform or an estate puts them, later
 * ones winning per key: OpenTelemetry's `OTEL_RESOURCE_ATTRIBUTES`, then Spring Boot's
 * `management.opentelemetry.resource-attributes.<key>` (so a shared `config/application`
 * document gives the Node services of the estate what it gives the Spring ones; a dotted
 * key in Spring's bracket form, `"[deployment.environment]"`, too), then Meshlet's own
 * `meshlet.tracing.resource-attributes.<key>`. The service's own `service.*` keys are left
 * out (the mesh's identity names its spans); the whole is checked as the option is
 * (`resourceAttributesProblem`), a refusal naming the key that gave the attribute.
 */
function resourceAttributesOf(config: Config, env: Environment | undefined): Record<string, string> | undefined {
  const out: Record<string, string> = { ...(env !== undefined ? resourceAttributesFromOtelEnvironment(env) : undefined) };
  /** The configuration key each attribute came from, for a refusal. */
  const from = new Map<string, string>();
  const snapshot = config.snapshot();
  for (const map of RESOURCE_ATTRIBUTE_MAPS)
    for (const [key, value] of Object.entries(snapshot)) {
      if (!key.startsWith(map)) continue;
      const rest = key.slice(map.length);
      const name = rest.startsWith('.') ? rest.slice(1) : rest.startsWith('[') && rest.endsWith(']') ? rest.slice(1, -1) : '';
      if (name === '' || OWN_RESOURCE_KEYS.includes(name)) continue;
      out[name] = value;
      from.set(name, key);
    }
  const found = resourceAttributesProblem(out);
  if (found !== undefined) {
    const key = found.key === undefined ? undefined : from.get(found.key);
    if (key !== undefined) throw bad(key, found.problem);
    const source = found.key === undefined ? 'resource attributes' : `OTEL_RESOURCE_ATTRIBUTES: ${found.key}`;
    throw new MeshletError('MESHLET_BAD_OPTION', `${source}: ${found.problem}`);
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

/**
 * Every MeshOptions field configuration can give, read from the `meshlet.` keys. With `env`,
 * OpenTelemetry's standard variables name the collector when no `meshlet.tracing.otlp.url`
 * does (createMeshFromConfig gives its environment).
 */
export function meshOptionsOf(config: Config, service: string, env?: Environment): MeshOptions {
  const get = (key: string) => {
    const v = config.get(key);
    return v === undefined || v === '' ? undefined : v;
  };
  const metadata: Record<string, string> = {};
  for (const [key, value] of Object.entries(config.snapshot())) {
    if (key.startsWith('meshlet.metadata.')) metadata[key.slice('meshlet.metadata.'.length)] = value;
  }
  // Environment variables are found by the relaxed name of a key some source defines; the
  // usual ones by name, so that MESHLET_METADATA_ZONE works on its own.
  for (const name of ['zone', 'region', 'lane', 'weight']) {
    const v = get(`meshlet.metadata.${name}`);
    if (v !== undefined) metadata[name] = v;
  }
  // The mesh keys in the layout meshKeysFromConfig reads (`meshlet.auth.keys[0].id`, `.key`).
  const keys =
    config.get(`${IDENTITY_KEYS_PREFIX}[0].id`) !== undefined || config.get(`${IDENTITY_KEYS_PREFIX}[0].key`) !== undefined
      ? meshKeysFromConfig(config)
      : [];
  const defaultAction = get('meshlet.auth.default-action');
  if (defaultAction !== undefined && defaultAction !== 'allow' && defaultAction !== 'deny')
    throw bad('meshlet.auth.default-action', 'allow or deny');
  const otlp = otlpOf(config, get, env);
  const traceLog = get('meshlet.tracing.log.path');
  const traceLogFormat = get('meshlet.tracing.log.format');
  const tracingOn = config.getBoolean('meshlet.tracing.enabled', otlp !== undefined || traceLog !== undefined);
  // Meshlet's key first; else OpenTelemetry's sampler variables, read only when tracing is
  // on (set for another SDK in the same pod, they must not stop a service that does not trace).
  const sampleRatio = sampleRatioOf(config) ?? (env !== undefined && tracingOn ? sampleRatioFromOtelEnvironment(env) : undefined);
  // What the platform says of the process (its pod, environment…), read only when tracing is on.
  const resourceAttributes = tracingOn ? resourceAttributesOf(config, env) : undefined;
  const port = numberOf(config, 'meshlet.port');
  const adminToken = get(ADMIN_TOKEN_KEY);
  const redisUrl = get('meshlet.ratelimit.redis-url');
  const healthPath = get('meshlet.health-path');
  const version = get('meshlet.version');
  const namespace = get('meshlet.namespace');
  const address = get('meshlet.address');
  const instanceId = get('meshlet.instance-id');
  // Bounded by createMesh (mesh-option-checks.ts), its refusal renamed to the key (configuredError).
  const idleMs = numberOf(config, 'meshlet.destinations.idle-ms');
  const maxDestinations = numberOf(config, 'meshlet.destinations.max');
  const logLevel = logLevelOf(config);
  return {
    service,
    ...(logLevel !== undefined ? { logLevel } : {}),
    ...(version ? { version } : {}),
    ...(namespace ? { namespace } : {}),
    ...(port !== undefined ? { port } : {}),
    ...(address ? { address } : {}),
    ...(instanceId ? { instanceId } : {}),
    ...(Object.keys(metadata).length > 0 ? { metadata } : {}),
    ...(keys.length > 0 ? { auth: { keys, ...(defaultAction ? { defaultAction } : {}) } } : {}),
    ...(adminToken ? { admin: { token: adminToken } } : {}),
    ...(redisUrl ? { ratelimit: { redisUrl } } : {}),
    ...(healthPath ? { healthPath: healthPath === 'false' ? false : healthPath } : {}),
    ...(idleMs !== undefined || maxDestinations !== undefined
      ? {
          destinations: {
            ...(idleMs !== undefined ? { idleMs } : {}),
            ...(maxDestinations !== undefined ? { max: maxDestinations } : {}),
          },
        }
      : {}),
    ...(tracingOn
      ? {
          tracing: {
            ...(sampleRatio !== undefined ? { sampleRatio } : {}),
            ...(resourceAttributes !== undefined ? { resourceAttributes } : {}),
            ...(otlp ? { otlp } : {}),
            ...(traceLog
              ? { log: { path: traceLog, ...(traceLogFormat !== undefined ? { format: traceLogFormat as TraceLogFormat } : {}) } }
              : {}),
          },
        }
      : {}),
  };
}
