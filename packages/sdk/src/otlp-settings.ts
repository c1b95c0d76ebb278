import { decimalNumber, isHeaderName, MeshletError, readPemFile } from '@meshlet/core';
import {
  isHttpsUrl,
  OTLP_COMPRESSIONS,
  OTLP_PROTOCOLS,
  type OtlpHttpOptions,
  type OtlpTls,
  OWN_RESOURCE_KEYS,
  otlpHeadersProblem,
  otlpTlsProblem,
  otlpUrlProblem,
  RESOURCE_ATTRIBUTE_BOUNDS,
  resourceAttributesProblem,
  TRACING_BOUNDS,
} from '@meshlet/trace';

/** Environment variables, as createMeshFromConfig is given them. */
export type Environment = Readonly<Record<string, string | undefined>>;

const refused = (source: string, message: string) => new MeshletError('MESHLET_BAD_OPTION', `${source}: ${message}`);

/**
 * `key=value` pairs separated by commas, as OpenTelemetry's list variables have them
 * (`OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_RESOURCE_ATTRIBUTES`): spaces around each trimmed,
 * values percent-decoded, empty pairs skipped. `keyOf` gives a pair's key as kept, or
 * undefined for one not allowed (`pair N must be <expected>`); a key given twice and a bad
 * percent-encoding are refused too. A refusal names `source` and the pair's position or its
 * key (bounded), never a value: a collector's headers carry its credential.
 */
function pairsOf(
  raw: string,
  source: string,
  bounds: { readonly chars: number; readonly pairs: number; readonly what: string },
  keyOf: (key: string) => string | undefined,
  expected: string,
): Record<string, string> {
  // Percent-encoding at most triples a value: past that the whole is too long already.
  if (raw.length > 3 * bounds.chars) throw refused(source, `${raw.length} characters; at most ${bounds.chars} once decoded`);
  const pairs = raw.split(',');
  if (pairs.length > bounds.pairs) throw refused(source, `at most ${bounds.pairs} ${bounds.what}`);
  const out: Record<string, string> = {};
  for (const [i, pair] of pairs.entries()) {
    if (pair.trim() === '') continue;
    const eq = pair.indexOf('=');
    const key = eq < 0 ? undefined : keyOf(pair.slice(0, eq).trim());
    if (key === undefined) throw refused(source, `pair ${i + 1} must be ${expected}`);
    // Named in a refusal, bounded.
    const shown = key.slice(0, 80);
    let value: string;
    try {
      value = decodeURIComponent(pair.slice(eq + 1).trim());
    } catch {
      throw refused(source, `${shown}: a bad percent-encoding (the value is not shown)`);
    }
    if (Object.hasOwn(out, key)) throw refused(source, `${shown} is given twice`);
    out[key] = value;
  }
  return out;
}

/**
 * A collector's headers written as OpenTelemetry's `OTEL_EXPORTER_OTLP_HEADERS` has them
 * (`pairsOf`), names lower-cased. The value is a credential: a refusal names `source` (the
 * key and its variable, or the variable) and the pair's position or header name, never a value.
 */
export function otlpHeadersOf(raw: string, source: string): Record<string, string> {
  const headers = pairsOf(
    raw,
    source,
    { chars: TRACING_BOUNDS.otlpHeaderChars, pairs: TRACING_BOUNDS.otlpHeaders, what: 'headers' },
    (key) => {
      const name = key.toLowerCase();
      return isHeaderName(name) ? name : undefined;
    },
    'name=value with a header name (values are not shown)',
  );
  // The rest as every collector header is checked (the options check's own).
  const found = otlpHeadersProblem(headers);
  if (found !== undefined) throw refused(source, found.header === undefined ? found.problem : `${found.header}: ${found.problem}`);
  return headers;
}

/** `OTEL_SDK_DISABLED=true`: OpenTelemetry's variables are not read at all. */
const otelDisabled = (env: Environment): boolean => env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true';

/**
 * OpenTelemetry's name for the service (`OTEL_SERVICE_NAME`) when it is set, OpenTelemetry
 * is not disabled, and it is not `service`: Meshlet's registry name names the spans, and
 * whoever set another should be told.
 */
export function otelServiceNameUnused(env: Environment, service: string): string | undefined {
  const name = env.OTEL_SERVICE_NAME?.trim();
  return name && name !== service && !otelDisabled(env) ? name.slice(0, 80) : undefined;
}

/** The traces variable if set, else the one for every signal: its value and its name. */
function otelVariable(env: Environment, what: string): readonly [value: string, name: string] | undefined {
  for (const name of [`OTEL_EXPORTER_OTLP_TRACES_${what}`, `OTEL_EXPORTER_OTLP_${what}`]) {
    const value = env[name]?.trim();
    if (value) return [value, name];
  }
  return undefined;
}

/** One of `allowed` from the variable for `what`, else refused naming it. */
function otelChoice<T extends string>(env: Environment, what: string, allowed: readonly T[]): T | undefined {
  const given = otelVariable(env, what);
  if (given === undefined) return undefined;
  const [value, name] = given;
  if (!(allowed as readonly string[]).includes(value))
    throw refused(name, `${JSON.stringify(value.slice(0, 80))} must be one of ${allowed.join(', ')}`);
  return value as T;
}

/** The traces URL of OTEL_EXPORTER_OTLP_ENDPOINT, a base URL: `v1/traces` appended to its path. */
const tracesUrlOf = (base: string) => `${base}${base.endsWith('/') ? '' : '/'}v1/traces`;

/**
 * The OTLP exporter OpenTelemetry's standard variables ask for, as an OpenTelemetry SDK
 * reads them (the OTLP exporter specification): `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (the
 * URL as it is) or `OTEL_EXPORTER_OTLP_ENDPOINT` (a base, `v1/traces` appended; with
 * `grpc`, the collector's address as it is), and `_HEADERS`, `_PROTOCOL` (`http/protobuf`,
 * `http/json` or `grpc`; a gRPC endpoint without a scheme is TLS unless `_INSECURE` is
 * `true`), `_COMPRESSION`, `_TIMEOUT` (ms), and the TLS files `_CERTIFICATE`,
 * `_CLIENT_CERTIFICATE`, `_CLIENT_KEY` (`otlpTlsOf`), each in its traces form or the
 * form for every signal. Undefined without an endpoint, or when `OTEL_SDK_DISABLED=true` or
 * `OTEL_TRACES_EXPORTER` does not list `otlp`. So a service given these by its platform (an
 * OpenTelemetry operator, a collector agent's chart) sends its spans there with no Meshlet
 * key. Every value is checked here and refused naming its variable.
 */
export function otlpFromOtelEnvironment(env: Environment): OtlpHttpOptions | undefined {
  if (otelDisabled(env)) return undefined;
  const exporters = env.OTEL_TRACES_EXPORTER?.trim();
  if (exporters && !exporters.split(',').some((e) => e.trim() === 'otlp')) return undefined;
  const own = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim();
  const base = env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim();
  if (!own && !base) return undefined;
  const protocol = otelChoice(env, 'PROTOCOL', OTLP_PROTOCOLS);
  // A gRPC collector's endpoint is its address, taken as it is (`host:port` alone: see
  // grpcEndpointOf); an OTLP/HTTP base gets `v1/traces`.
  const [given, urlSource] = own
    ? [own, 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT']
    : [protocol === 'grpc' ? (base as string) : tracesUrlOf(base as string), 'OTEL_EXPORTER_OTLP_ENDPOINT'];
  const url = protocol === 'grpc' ? grpcEndpointOf(env, given) : given;
  const problem = otlpUrlProblem(url);
  if (problem !== undefined) throw refused(urlSource, problem);
  const options: { -readonly [K in keyof OtlpHttpOptions]: OtlpHttpOptions[K] } = { url };
  if (protocol !== undefined) options.protocol = protocol;
  const compression = otelChoice(env, 'COMPRESSION', OTLP_COMPRESSIONS);
  if (compression !== undefined) options.compression = compression;
  const timeout = otelVariable(env, 'TIMEOUT');
  if (timeout !== undefined) {
    const [value, name] = timeout;
    const ms = /^\d{1,9}$/.test(value) ? Number(value) : Number.NaN;
    const { min, max } = TRACING_BOUNDS.otlpTimeoutMs;
    if (!(ms >= min && ms <= max)) throw refused(name, `${JSON.stringify(value.slice(0, 80))} must be milliseconds from ${min} to ${max}`);
    options.timeoutMs = ms;
  }
  const headers = otelVariable(env, 'HEADERS');
  if (headers !== undefined) options.headers = otlpHeadersOf(headers[0], headers[1]);
  const ca = otelVariable(env, 'CERTIFICATE');
  const cert = otelVariable(env, 'CLIENT_CERTIFICATE');
  const key = otelVariable(env, 'CLIENT_KEY');
  const tls = otlpTlsOf({ ...(ca ? { ca } : {}), ...(cert ? { cert } : {}), ...(key ? { key } : {}) }, url, urlSource);
  if (tls !== undefined) options.tls = tls;
  return options;
}

/** `host:port` (a name, an IPv4 address or a bracketed IPv6 one, and a port): an endpoint without a scheme. */
const HOST_PORT = /^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):\d{1,5}$/;

/**
 * A gRPC collector's endpoint as OpenTelemetry's SDKs take it: a URL as it is, or an
 * address without a scheme (`collector:4317`), which is TLS unless
 * `OTEL_EXPORTER_OTLP_[TRACES_]INSECURE` is `true` (the OTLP exporter specification: the
 * variable applies to gRPC endpoints without a scheme alone, and defaults to false). A value
 * other than `true` or `false` is refused naming the variable.
 */
function grpcEndpointOf(env: Environment, endpoint: string): string {
  if (!HOST_PORT.test(endpoint)) return endpoint;
  const insecure = otelVariable(env, 'INSECURE');
  const value = insecure?.[0].toLowerCase();
  if (insecure !== undefined && value !== 'true' && value !== 'false')
    throw refused(insecure[1], `${JSON.stringify(insecure[0].slice(0, 80))} must be true or false`);
  return `${value === 'true' ? 'http' : 'https'}://${endpoint}`;
}

/** A TLS file named by configuration: its path, and the key or variable that gave it (named in a refusal). */
export type NamedFile = readonly [path: string, source: string];

/**
 * The collector's TLS from the files configuration names, as OpenTelemetry's
 * `OTEL_EXPORTER_OTLP_CERTIFICATE`, `_CLIENT_CERTIFICATE` and `_CLIENT_KEY` name them: the
 * CA to trust, the client certificate and its key. Each file read bounded (`readPemFile`:
 * a regular file of at most 1 MiB with a PEM block), then checked as `otlp.tls` is
 * (`otlpTlsProblem`); a refusal names the key or variable that gave the file, never its
 * content. Undefined when no file is named. `url` (from `urlSource`) must be `https:`.
 */
export function otlpTlsOf(
  files: { readonly ca?: NamedFile; readonly cert?: NamedFile; readonly key?: NamedFile },
  url: string,
  urlSource: string,
): OtlpTls | undefined {
  const named = (['ca', 'cert', 'key'] as const).filter((f) => files[f] !== undefined);
  const first = named[0];
  if (first === undefined) return undefined;
  const sourceOf = (field: 'ca' | 'cert' | 'key') => (files[field] as NamedFile)[1];
  if (!isHttpsUrl(url)) throw refused(sourceOf(first), `TLS files are for an https: collector; the URL ${urlSource} gives is not`);
  if (files.cert !== undefined && files.key === undefined) throw refused(sourceOf('cert'), 'a client certificate without its key file');
  if (files.key !== undefined && files.cert === undefined) throw refused(sourceOf('key'), 'a client key without its certificate file');
  const tls: { -readonly [K in keyof OtlpTls]: OtlpTls[K] } = {};
  for (const field of named) tls[field] = readPemFile(...(files[field] as NamedFile));
  const found = otlpTlsProblem(tls, url);
  if (found !== undefined) throw refused(sourceOf(found.field ?? first), found.problem);
  return tls;
}

/**
 * The resource attributes OpenTelemetry's `OTEL_RESOURCE_ATTRIBUTES` gives
 * (`deployment.environment=prod,k8s.pod.name=orders-7f9c`: `key=value` pairs separated by
 * commas, values percent-decoded, spaces around each trimmed), as an OpenTelemetry SDK reads
 * it; undefined when unset or `OTEL_SDK_DISABLED=true`. The service's own keys
 * (`service.name`, `service.version`, `service.namespace`, `service.instance.id`) are left
 * out: the mesh's service names its spans, as `OTEL_SERVICE_NAME` overrides them in
 * OpenTelemetry's SDKs. A pair that is not `key=value`, a bad percent-encoding, a key given
 * twice or past the bounds (`resourceAttributesProblem`) is refused naming the variable.
 */
export function resourceAttributesFromOtelEnvironment(env: Environment): Record<string, string> | undefined {
  if (otelDisabled(env)) return undefined;
  const raw = env.OTEL_RESOURCE_ATTRIBUTES?.trim();
  if (!raw) return undefined;
  const source = 'OTEL_RESOURCE_ATTRIBUTES';
  const given = pairsOf(
    raw,
    source,
    // Counted once the service's own keys are left out (resourceAttributesProblem); the
    // characters bound the parse.
    { chars: RESOURCE_ATTRIBUTE_BOUNDS.chars, pairs: Number.POSITIVE_INFINITY, what: 'attributes' },
    (key) => (key === '' ? undefined : key),
    'key=value',
  );
  const attributes: Record<string, string> = {};
  for (const key of Object.keys(given)) if (!OWN_RESOURCE_KEYS.includes(key)) attributes[key] = given[key] as string;
  const found = resourceAttributesProblem(attributes);
  if (found !== undefined) throw refused(source, found.key === undefined ? found.problem : `${found.key}: ${found.problem}`);
  return Object.keys(attributes).length > 0 ? attributes : undefined;
}

/** OpenTelemetry's parent-based samplers, by their `OTEL_TRACES_SAMPLER` names: Meshlet's is parent-based. */
const PARENT_BASED = ['parentbased_always_on', 'parentbased_always_off', 'parentbased_traceidratio'];

/**
 * The sample ratio OpenTelemetry's `OTEL_TRACES_SAMPLER` (and `_ARG`) ask for, when they are
 * set: `parentbased_always_on` 1, `parentbased_always_off` 0, `parentbased_traceidratio` its
 * argument (1 when absent, as the specification has it). Meshlet's sampler follows a
 * caller's sampled flag, so a sampler that would not (`always_on`, `traceidratio`…) or one
 * Meshlet does not have (`jaeger_remote`, `xray`) is refused naming the variable.
 * `OTEL_SDK_DISABLED=true` leaves them unread.
 */
export function sampleRatioFromOtelEnvironment(env: Environment): number | undefined {
  if (otelDisabled(env)) return undefined;
  const sampler = env.OTEL_TRACES_SAMPLER?.trim();
  if (!sampler) return undefined;
  if (!PARENT_BASED.includes(sampler))
    throw refused(
      'OTEL_TRACES_SAMPLER',
      `${JSON.stringify(sampler.slice(0, 80))}: Meshlet's sampling follows the caller's sampled flag; use one of ${PARENT_BASED.join(', ')}`,
    );
  if (sampler === 'parentbased_always_on') return 1;
  if (sampler === 'parentbased_always_off') return 0;
  const arg = env.OTEL_TRACES_SAMPLER_ARG?.trim();
  if (!arg) return 1;
  const ratio = decimalNumber(arg);
  if (ratio === undefined || !(ratio >= 0 && ratio <= 1))
    throw refused('OTEL_TRACES_SAMPLER_ARG', `${JSON.stringify(arg.slice(0, 80))} must be a ratio from 0 to 1`);
  return ratio;
}
