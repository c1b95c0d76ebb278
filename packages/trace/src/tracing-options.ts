import { badOption, onlyOptionKeys, optionObject, shownValue, wholeNumber, withMethods } from '@meshlet/core';
import { OTLP_COMPRESSIONS, OTLP_PROTOCOLS, type OtlpProtocol } from './otlp-exporter-base.js';
import { checkOtlpHeaders, OTLP_HEADER_BOUNDS, OTLP_URL_CHARS, otlpUrlProblem } from './otlp-headers.js';
import { otlpTlsProblem } from './otlp-tls.js';
import { resourceAttributesProblem } from './resource-attributes.js';
import { TRACE_LOG_FORMATS } from './trace-log-exporter.js';

/**
 * The bounds of createTracing's options (and createMesh's `tracing`): what a Meshlet
 * process accepts before anything starts. A value outside them is refused with
 * `MESHLET_BAD_OPTION` naming the field; none is clamped in silence.
 */
export const TRACING_BOUNDS = Object.freeze({
  /** The trace log's path, in characters. */
  logPathChars: 4096,
  /** The trace log's size before it rotates: 1 KiB (a line of a few spans) to 1 TiB. */
  logBytes: { min: 1024, max: 2 ** 40 },
  /** Rotated trace-log files kept. */
  logFiles: { min: 1, max: 100 },
  /** Spans held waiting for export per exporter; each is a few hundred bytes to a few KB. */
  queueSize: { min: 1, max: 1_000_000 },
  /** How long a partial batch waits: 0 (at once) to ten minutes. */
  delayMs: { min: 0, max: 600_000 },
  /** Histogram buckets. */
  buckets: 64,
  /** Distinct APIs kept per service in the call metrics before `_other`. */
  apisPerService: { min: 1, max: 10_000 },
  /** Distinct services (server side: callers) kept in the call metrics before `_other`. */
  services: { min: 1, max: 10_000 },
  /** Series kept in all in each of the client and server call metrics. */
  series: { min: 1, max: 1_000_000 },
  /** The OTLP collector's URL, in characters. */
  urlChars: OTLP_URL_CHARS,
  /** Extra headers sent to the collector, and their characters in all. */
  otlpHeaders: OTLP_HEADER_BOUNDS.headers,
  otlpHeaderChars: OTLP_HEADER_BOUNDS.chars,
  /** One export to the collector. */
  otlpTimeoutMs: { min: 1, max: 600_000 },
  /** Exporters besides the log and the collector. */
  exporters: 16,
});

const TRACING_KEYS = [
  'sampleRatio',
  'propagation',
  'log',
  'otlp',
  'exporters',
  'batch',
  'metrics',
  'meterProvider',
  'idGenerator',
  'resourceAttributes',
] as const;
/** What createTracing takes besides; createMesh sets them from its own options (`service`, `version`, `namespace`, `clock`). */
const OWN_KEYS = ['service', 'version', 'namespace', 'instanceId', 'clock', 'logger'] as const;
const LOG_KEYS = ['path', 'maxBytes', 'maxFiles', 'format'] as const;
const OTLP_KEYS = ['url', 'headers', 'timeoutMs', 'protocol', 'compression', 'tls'] as const;
const BATCH_KEYS = ['maxQueueSize', 'maxBatchSize', 'delayMs'] as const;
const METRICS_KEYS = ['buckets', 'maxApisPerService', 'maxServices', 'maxSeries'] as const;
const PROPAGATION_KEYS = ['emit', 'baggage'] as const;
const FORMATS = ['w3c', 'b3', 'b3multi'];

/**
 * Checks tracing options before anything starts: MeshletError `MESHLET_BAD_OPTION`, the
 * message starting with the field (`tracing.log.maxBytes: …` under createMesh, whose
 * `prefix` is `tracing`; `log.maxBytes: …` for createTracing). Unknown keys are refused, so
 * that a misspelt option is not silently off. `prefix` set means createMesh's option, which
 * takes the service's name, version, namespace and instance from the mesh.
 */
export function checkTracingOptions(options: unknown, prefix = ''): void {
  const at = (field: string) => (prefix === '' ? field : `${prefix}.${field}`);
  const o = optionObject(options, prefix === '' ? 'options' : prefix);
  onlyOptionKeys(o, prefix === '' ? 'options' : prefix, prefix === '' ? [...OWN_KEYS, ...TRACING_KEYS] : TRACING_KEYS);
  if (prefix === '') {
    if (typeof o.service !== 'string' || o.service === '')
      throw badOption('service', `${shownValue(o.service)} must be the service's name`);
    for (const key of ['version', 'namespace', 'instanceId'] as const)
      if (o[key] !== undefined && typeof o[key] !== 'string') throw badOption(key, `${shownValue(o[key])} must be a string`);
    if (o.clock !== undefined) withMethods(o.clock, 'clock', ['now', 'setTimeout'], 'a Clock');
    if (o.logger !== undefined) withMethods(o.logger, 'logger', ['debug', 'info', 'warn', 'error'], 'a Logger');
  }
  const ratio = o.sampleRatio;
  if (ratio !== undefined && !(typeof ratio === 'number' && ratio >= 0 && ratio <= 1))
    throw badOption(at('sampleRatio'), `${shownValue(ratio)} — give a number from 0 (no new traces) to 1 (every trace)`);
  if (o.propagation !== undefined) checkPropagation(o.propagation, at('propagation'));
  if (o.log !== undefined) checkLog(o.log, at('log'));
  if (o.otlp !== undefined) checkOtlp(o.otlp, at('otlp'));
  if (o.batch !== undefined) checkBatch(o.batch, at('batch'));
  if (o.metrics !== undefined && o.metrics !== false) checkMetrics(o.metrics, at('metrics'));
  if (o.exporters !== undefined) {
    const exporters = o.exporters;
    if (!Array.isArray(exporters) || exporters.length > TRACING_BOUNDS.exporters)
      throw badOption(at('exporters'), `${shownValue(exporters)} must be an array of at most ${TRACING_BOUNDS.exporters} span exporters`);
    exporters.forEach((e, i) => {
      withMethods(e, at(`exporters[${i}]`), ['export', 'shutdown'], 'a span exporter');
    });
  }
  if (o.meterProvider !== undefined) withMethods(o.meterProvider, at('meterProvider'), ['getMeter'], 'an OpenTelemetry MeterProvider');
  if (o.idGenerator !== undefined)
    withMethods(o.idGenerator, at('idGenerator'), ['generateTraceId', 'generateSpanId'], 'an OpenTelemetry IdGenerator');
  if (o.resourceAttributes !== undefined) {
    const path = at('resourceAttributes');
    const found = resourceAttributesProblem(optionObject(o.resourceAttributes, path));
    if (found !== undefined) throw badOption(found.key === undefined ? path : `${path}.${found.key}`, found.problem);
  }
}

function checkPropagation(value: unknown, path: string): void {
  const p = optionObject(value, path);
  onlyOptionKeys(p, path, PROPAGATION_KEYS);
  const emit = p.emit;
  if (emit !== undefined) {
    if (!Array.isArray(emit) || emit.length === 0 || emit.length > FORMATS.length)
      throw badOption(`${path}.emit`, `${shownValue(emit)} must be a list of 1 to ${FORMATS.length} of ${FORMATS.join(', ')}`);
    emit.forEach((f, i) => {
      if (!FORMATS.includes(f as string)) throw badOption(`${path}.emit[${i}]`, `${shownValue(f)} must be one of ${FORMATS.join(', ')}`);
    });
  }
  if (p.baggage !== undefined && typeof p.baggage !== 'boolean')
    throw badOption(`${path}.baggage`, `${shownValue(p.baggage)} must be true or false`);
}

function checkLog(value: unknown, path: string): void {
  const log = optionObject(value, path);
  onlyOptionKeys(log, path, LOG_KEYS);
  const file = log.path;
  if (typeof file !== 'string' || file === '' || file.length > TRACING_BOUNDS.logPathChars || file.includes('\0'))
    throw badOption(`${path}.path`, `${shownValue(file)} must be a file path of 1 to ${TRACING_BOUNDS.logPathChars} characters`);
  whole(log.maxBytes, `${path}.maxBytes`, TRACING_BOUNDS.logBytes, 'bytes');
  whole(log.maxFiles, `${path}.maxFiles`, TRACING_BOUNDS.logFiles, 'files');
  if (log.format !== undefined && !(TRACE_LOG_FORMATS as readonly unknown[]).includes(log.format))
    throw badOption(`${path}.format`, `${shownValue(log.format)} must be one of ${TRACE_LOG_FORMATS.map((f) => `'${f}'`).join(', ')}`);
}

function checkOtlp(value: unknown, path: string): void {
  const otlp = optionObject(value, path);
  onlyOptionKeys(otlp, path, OTLP_KEYS);
  const problem = otlpUrlProblem(otlp.url);
  if (problem !== undefined) throw badOption(`${path}.url`, problem);
  // A function gives them before each attempt: the exporter checks what it gives.
  if (otlp.headers !== undefined && typeof otlp.headers !== 'function')
    checkOtlpHeaders(otlp.headers, `${path}.headers`, otlp.protocol as OtlpProtocol | undefined);
  whole(otlp.timeoutMs, `${path}.timeoutMs`, TRACING_BOUNDS.otlpTimeoutMs, 'milliseconds');
  if (otlp.protocol !== undefined && !(OTLP_PROTOCOLS as readonly unknown[]).includes(otlp.protocol))
    throw badOption(`${path}.protocol`, `${shownValue(otlp.protocol)} must be one of ${OTLP_PROTOCOLS.map((p) => `'${p}'`).join(', ')}`);
  if (otlp.compression !== undefined && !(OTLP_COMPRESSIONS as readonly unknown[]).includes(otlp.compression))
    throw badOption(
      `${path}.compression`,
      `${shownValue(otlp.compression)} must be one of ${OTLP_COMPRESSIONS.map((c) => `'${c}'`).join(', ')}`,
    );
  if (otlp.tls !== undefined) {
    const found = otlpTlsProblem(otlp.tls, otlp.url as string);
    if (found !== undefined) throw badOption(found.field === undefined ? `${path}.tls` : `${path}.tls.${found.field}`, found.problem);
  }
}

function checkBatch(value: unknown, path: string): void {
  const batch = optionObject(value, path);
  onlyOptionKeys(batch, path, BATCH_KEYS);
  whole(batch.maxQueueSize, `${path}.maxQueueSize`, TRACING_BOUNDS.queueSize, 'spans');
  whole(batch.maxBatchSize, `${path}.maxBatchSize`, TRACING_BOUNDS.queueSize, 'spans');
  whole(batch.delayMs, `${path}.delayMs`, TRACING_BOUNDS.delayMs, 'milliseconds');
}

function checkMetrics(value: unknown, path: string): void {
  const metrics = optionObject(value, path);
  onlyOptionKeys(metrics, path, METRICS_KEYS);
  const buckets = metrics.buckets;
  if (buckets !== undefined) {
    if (!Array.isArray(buckets) || buckets.length === 0 || buckets.length > TRACING_BOUNDS.buckets)
      throw badOption(
        `${path}.buckets`,
        `${shownValue(buckets)} must be a list of 1 to ${TRACING_BOUNDS.buckets} bucket bounds in seconds`,
      );
    const seen = new Set<number>();
    buckets.forEach((b, i) => {
      if (typeof b !== 'number' || !Number.isFinite(b) || b <= 0 || seen.has(b))
        throw badOption(`${path}.buckets[${i}]`, `${shownValue(b)} must be a number of seconds above 0, each bound once`);
      seen.add(b);
    });
  }
  whole(metrics.maxApisPerService, `${path}.maxApisPerService`, TRACING_BOUNDS.apisPerService, 'APIs');
  whole(metrics.maxServices, `${path}.maxServices`, TRACING_BOUNDS.services, 'services');
  whole(metrics.maxSeries, `${path}.maxSeries`, TRACING_BOUNDS.series, 'series');
}

/** Absent, or a whole number within `range`. */
function whole(value: unknown, field: string, range: { readonly min: number; readonly max: number }, unit: string): void {
  if (value !== undefined && !wholeNumber(value, range.min, range.max))
    throw badOption(field, `${shownValue(value)} must be a whole number of ${unit} from ${range.min} to ${range.max}`);
}
