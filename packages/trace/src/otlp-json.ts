import type { Attributes, AttributeValue, HrTime } from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';
import { ClientSpanRecord } from './client-span-record.js';

// The OTLP/JSON encoding (opentelemetry-proto, JSON mapping): ids as lower-case hex,
// 64-bit integers as decimal strings, enums as their numbers, field names lowerCamelCase.

export type OtlpAnyValue =
  | { readonly stringValue: string }
  | { readonly boolValue: boolean }
  | { readonly intValue: string }
  | { readonly doubleValue: number }
  | { readonly arrayValue: { readonly values: readonly OtlpAnyValue[] } };

export interface OtlpKeyValue {
  readonly key: string;
  readonly value: OtlpAnyValue;
}

export interface OtlpSpan {
  readonly traceId: string;
  readonly spanId: string;
  readonly traceState?: string;
  readonly parentSpanId?: string;
  readonly flags?: number;
  readonly name: string;
  /** 1 internal, 2 server, 3 client, 4 producer, 5 consumer. */
  readonly kind: number;
  readonly startTimeUnixNano: string;
  readonly endTimeUnixNano: string;
  readonly attributes: readonly OtlpKeyValue[];
  readonly droppedAttributesCount?: number;
  readonly events?: readonly { timeUnixNano: string; name: string; attributes: readonly OtlpKeyValue[] }[];
  /** code: 0 unset, 1 ok, 2 error. */
  readonly status: { readonly code: number; readonly message?: string };
}

/** One line of the trace log: an ExportTraceServiceRequest. */
export interface OtlpTraceRequest {
  readonly resourceSpans: readonly {
    readonly resource: { readonly attributes: readonly OtlpKeyValue[] };
    readonly scopeSpans: readonly {
      readonly scope: { readonly name: string; readonly version?: string };
      readonly spans: readonly OtlpSpan[];
    }[];
  }[];
}

/** The OTLP span kind numbers. */
export const OtlpSpanKind = { internal: 1, server: 2, client: 3, producer: 4, consumer: 5 } as const;

function anyValue(v: AttributeValue): OtlpAnyValue {
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  if (typeof v === 'number') return Number.isInteger(v) ? { intValue: String(v) } : { doubleValue: v };
  return {
    arrayValue: {
      values: (v as readonly unknown[]).filter((x) => x !== null && x !== undefined).map((x) => anyValue(x as AttributeValue)),
    },
  };
}

function keyValues(attrs: Attributes): OtlpKeyValue[] {
  const out: OtlpKeyValue[] = [];
  for (const key in attrs) {
    const v = attrs[key];
    if (v !== undefined && v !== null) out.push({ key, value: anyValue(v) });
  }
  return out;
}

const NINE_ZEROS = '000000000';

// Span times fall within a few seconds of each other: the last seconds' decimal is kept.
let lastSeconds = 0;
let lastSecondsText = '0';

/** HrTime as unsigned nanoseconds since the epoch, in decimal. */
export function hrTimeToNanoString([seconds, nanos]: HrTime): string {
  if (seconds === 0) return String(nanos);
  if (seconds !== lastSeconds) {
    lastSeconds = seconds;
    lastSecondsText = String(seconds);
  }
  // String(nanos).padStart(9, '0'), without the padding string made each time.
  const ns = String(nanos);
  return ns.length >= 9 ? `${lastSecondsText}${ns}` : `${lastSecondsText}${NINE_ZEROS.slice(ns.length)}${ns}`;
}

function encodeSpan(span: ReadableSpan): OtlpSpan {
  const sc = span.spanContext();
  const parent = span.parentSpanContext;
  const traceState = sc.traceState?.serialize();
  return {
    traceId: sc.traceId,
    spanId: sc.spanId,
    ...(traceState ? { traceState } : {}),
    ...(parent ? { parentSpanId: parent.spanId } : {}),
    // Bits 8-9 of flags say whether the parent is known to be remote (proto SpanFlags).
    flags: sc.traceFlags | (parent?.isRemote ? 0x300 : 0x100),
    name: span.name,
    kind: span.kind + 1,
    startTimeUnixNano: hrTimeToNanoString(span.startTime),
    endTimeUnixNano: hrTimeToNanoString(span.endTime),
    attributes: keyValues(span.attributes),
    ...(span.droppedAttributesCount ? { droppedAttributesCount: span.droppedAttributesCount } : {}),
    ...(span.events.length
      ? {
          events: span.events.map((e) => ({
            timeUnixNano: hrTimeToNanoString(e.time),
            name: e.name,
            attributes: keyValues(e.attributes ?? {}),
          })),
        }
      : {}),
    status: span.status.message ? { code: span.status.code, message: span.status.message } : { code: span.status.code },
  };
}

/** Encodes spans as one ExportTraceServiceRequest, grouped by resource and instrumentation scope. */
export function encodeTraceRequest(spans: readonly ReadableSpan[]): OtlpTraceRequest {
  const byResource = new Map<ReadableSpan['resource'], Map<string, { scope: { name: string; version?: string }; spans: OtlpSpan[] }>>();
  for (const span of spans) {
    let scopes = byResource.get(span.resource);
    if (!scopes) {
      scopes = new Map();
      byResource.set(span.resource, scopes);
    }
    const { name, version } = span.instrumentationScope;
    const key = `${name}@${version ?? ''}`;
    let group = scopes.get(key);
    if (!group) {
      group = { scope: version ? { name, version } : { name }, spans: [] };
      scopes.set(key, group);
    }
    group.spans.push(encodeSpan(span));
  }
  return {
    resourceSpans: [...byResource].map(([resource, scopes]) => ({
      resource: { attributes: keyValues(resource.attributes as Attributes) },
      scopeSpans: [...scopes.values()],
    })),
  };
}

// The trace log's line, written as a string: the same bytes as JSON.stringify over
// encodeTraceRequest (a test holds them equal), without building the object form first.
// Fragments that repeat (a resource's attributes, a scope, an attribute key) are built once.

const str = JSON.stringify as (s: string) => string;

/**
 * `s` as one flat string. A fragment built by concatenation is a rope; one that is kept
 * and written into many lines would otherwise be walked again each time a line is
 * flattened for writing. Lossless for JSON text (JSON.stringify escapes lone surrogates).
 */
export function flat(s: string): string {
  return Buffer.from(s, 'utf8').toString('utf8');
}

// Attribute keys are few (the conventions' names, Meshlet's): their `{"key":…,"value":`
// prefix is kept. Bounded all the same.
const KEYS_KEPT = 1024;
const keyPrefixes = new Map<string, string>();

function keyPrefix(key: string): string {
  let prefix = keyPrefixes.get(key);
  if (prefix === undefined) {
    prefix = flat(`{"key":${str(key)},"value":`);
    if (keyPrefixes.size >= KEYS_KEPT) keyPrefixes.clear();
    keyPrefixes.set(key, prefix);
  }
  return prefix;
}

function anyValueJson(v: AttributeValue): string {
  if (typeof v === 'string') return `{"stringValue":${str(v)}}`;
  if (typeof v === 'boolean') return v ? '{"boolValue":true}' : '{"boolValue":false}';
  if (typeof v === 'number') return Number.isInteger(v) ? `{"intValue":"${v}"}` : `{"doubleValue":${JSON.stringify(v)}}`;
  let values = '';
  for (const x of v as readonly unknown[]) {
    if (x === null || x === undefined) continue;
    values += values === '' ? anyValueJson(x as AttributeValue) : `,${anyValueJson(x as AttributeValue)}`;
  }
  return `{"arrayValue":{"values":[${values}]}}`;
}

// Short string values repeat (method, host, peer service, instance, rule, lane): their
// whole key-value JSON is kept per key, a bounded number per key.
const VALUES_KEPT = 256;
const MAX_KEPT_LENGTH = 64;
const stringKeyValues = new Map<string, Map<string, string>>();

function stringKeyValue(key: string, v: string): string {
  let values = stringKeyValues.get(key);
  if (values === undefined) {
    if (stringKeyValues.size >= KEYS_KEPT) stringKeyValues.clear();
    values = new Map();
    stringKeyValues.set(key, values);
  }
  let kv = values.get(v);
  if (kv === undefined) {
    kv = flat(`${keyPrefix(key)}{"stringValue":${str(v)}}}`);
    if (values.size >= VALUES_KEPT) values.clear();
    values.set(v, kv);
  }
  return kv;
}

/** One attribute's OTLP JSON, `{"key":…,"value":…}`, as `keyValuesJson` writes it among others. */
export function keyValueJson(key: string, v: AttributeValue): string {
  return typeof v === 'string' && v.length <= MAX_KEPT_LENGTH ? stringKeyValue(key, v) : `${keyPrefix(key)}${anyValueJson(v)}}`;
}

/** The attributes' OTLP JSON: their `{"key":…,"value":…}`, comma separated, in enumeration order. */
export function keyValuesJson(attrs: Attributes): string {
  let out = '';
  for (const key in attrs) {
    const v = attrs[key];
    if (v === undefined || v === null) continue;
    const kv = typeof v === 'string' && v.length <= MAX_KEPT_LENGTH ? stringKeyValue(key, v) : `${keyPrefix(key)}${anyValueJson(v)}}`;
    out = out === '' ? kv : `${out},${kv}`;
  }
  return out;
}

/** A span's attributes as JSON: what its maker already encoded (a Meshlet span record's), else encoded here. */
function attributesJson(span: ReadableSpan): string {
  const made = span as Partial<Pick<ClientSpanRecord, 'madeJson' | 'madeFor' | 'lateKeys'>>;
  const attrs = span.attributes;
  let json = made.madeJson;
  if (json === undefined || made.madeFor !== attrs) return keyValuesJson(attrs);
  const late = made.lateKeys;
  if (late !== undefined)
    for (const key of late) {
      const v = attrs[key];
      if (v === undefined || v === null) continue;
      json = json === '' ? keyValueJson(key, v) : `${json},${keyValueJson(key, v)}`;
    }
  return json;
}

// Span names repeat (a method, `METHOD route`): their JSON is kept. Bounded all the same.
const NAMES_KEPT = 1024;
const nameJsons = new Map<string, string>();

function nameJson(name: string): string {
  let json = nameJsons.get(name);
  if (json === undefined) {
    json = str(name);
    if (nameJsons.size >= NAMES_KEPT) nameJsons.clear();
    nameJsons.set(name, json);
  }
  return json;
}

const quoted = (hex: string): string => `"${hex}"`;

function spanJson(span: ReadableSpan): string {
  const sc = span.spanContext();
  const parent = span.parentSpanContext;
  const traceState = sc.traceState?.serialize();
  // A Meshlet span record (itself, not a wrapper that may answer other ids) whose ids are
  // known hex needs no escaping of them.
  const id = Object.getPrototypeOf(span) === ClientSpanRecord.prototype && (span as ClientSpanRecord).hexIds ? quoted : str;
  let json = `{"traceId":${id(sc.traceId)},"spanId":${id(sc.spanId)}`;
  if (traceState) json += `,"traceState":${str(traceState)}`;
  if (parent) json += `,"parentSpanId":${id(parent.spanId)}`;
  json +=
    `,"flags":${sc.traceFlags | (parent?.isRemote ? 0x300 : 0x100)},"name":${nameJson(span.name)},"kind":${span.kind + 1}` +
    `,"startTimeUnixNano":"${hrTimeToNanoString(span.startTime)}","endTimeUnixNano":"${hrTimeToNanoString(span.endTime)}"` +
    `,"attributes":[${attributesJson(span)}]`;
  if (span.droppedAttributesCount) json += `,"droppedAttributesCount":${span.droppedAttributesCount}`;
  if (span.events.length) {
    let events = '';
    for (const e of span.events) {
      const event = `{"timeUnixNano":"${hrTimeToNanoString(e.time)}","name":${str(e.name)},"attributes":[${keyValuesJson(e.attributes ?? {})}]}`;
      events = events === '' ? event : `${events},${event}`;
    }
    json += `,"events":[${events}]`;
  }
  const { code, message } = span.status;
  return `${json},"status":${message ? `{"code":${code},"message":${str(message)}}` : `{"code":${code}}`}}`;
}

// A resource's JSON, built once per resource (one per Tracing).
const resourceJson = new WeakMap<ReadableSpan['resource'], string>();

function resourceOpening(resource: ReadableSpan['resource']): string {
  let json = resourceJson.get(resource);
  if (json === undefined) {
    json = flat(`{"resource":{"attributes":[${keyValuesJson(resource.attributes as Attributes)}]},"scopeSpans":[`);
    // Attributes still being detected may change: cached only once settled.
    if (!resource.asyncAttributesPending) resourceJson.set(resource, json);
  }
  return json;
}

// A scope's opening, by scope object: a tracer gives all its spans the same object.
const scopeJson = new WeakMap<ReadableSpan['instrumentationScope'], string>();

function scopeOpening(scope: ReadableSpan['instrumentationScope']): string {
  let json = scopeJson.get(scope);
  if (json === undefined) {
    const { name, version } = scope;
    json = flat(`{"scope":${JSON.stringify(version ? { name, version } : { name })},"spans":[`);
    scopeJson.set(scope, json);
  }
  return json;
}

/** Spans grouped by resource, then by scope (name and version), each in order of first appearance. */
function groupSpans(spans: readonly ReadableSpan[]): Map<ReadableSpan['resource'], Map<string, ReadableSpan[]>> {
  const byResource = new Map<ReadableSpan['resource'], Map<string, ReadableSpan[]>>();
  // Runs of spans from one tracer share the resource and scope objects: no lookup for them.
  let lastResource: ReadableSpan['resource'] | undefined;
  let lastScope: ReadableSpan['instrumentationScope'] | undefined;
  let lastGroup: ReadableSpan[] = [];
  for (const span of spans) {
    const scope = span.instrumentationScope;
    if (span.resource === lastResource && scope === lastScope) {
      lastGroup.push(span);
      continue;
    }
    let scopes = byResource.get(span.resource);
    if (!scopes) {
      scopes = new Map();
      byResource.set(span.resource, scopes);
    }
    const key = `${scope.name}@${scope.version ?? ''}`;
    let group = scopes.get(key);
    if (group === undefined) {
      group = [];
      scopes.set(key, group);
    }
    group.push(span);
    lastResource = span.resource;
    lastScope = scope;
    lastGroup = group;
  }
  return byResource;
}

/** One trace-log line (without the newline): `JSON.stringify(encodeTraceRequest(spans))`, built as a string. */
export function encodeTraceLine(spans: readonly ReadableSpan[]): string {
  let resources = '';
  for (const [resource, scopes] of groupSpans(spans)) {
    let scopeSpans = '';
    for (const group of scopes.values()) {
      let spansJson = '';
      for (const span of group) spansJson = spansJson === '' ? spanJson(span) : `${spansJson},${spanJson(span)}`;
      const g = `${scopeOpening((group[0] as ReadableSpan).instrumentationScope)}${spansJson}]}`;
      scopeSpans = scopeSpans === '' ? g : `${scopeSpans},${g}`;
    }
    const r = `${resourceOpening(resource)}${scopeSpans}]}`;
    resources = resources === '' ? r : `${resources},${r}`;
  }
  return `{"resourceSpans":[${resources}]}`;
}

/** Appends strings to a buffer as UTF-8, growing it as needed. */
class Utf8Writer {
  buf: Buffer;
  at = 0;

  constructor(size: number) {
    this.buf = Buffer.allocUnsafe(size);
  }

  write(s: string): void {
    // A UTF-16 code unit takes at most 3 bytes in UTF-8.
    const need = this.at + s.length * 3;
    if (need > this.buf.length) {
      const bigger = Buffer.allocUnsafe(Math.max(need, this.buf.length * 2));
      this.buf.copy(bigger, 0, 0, this.at);
      this.buf = bigger;
    }
    this.at += this.buf.write(s, this.at);
  }
}

/**
 * One trace-log line with its newline, as UTF-8: the bytes of `encodeTraceLine(spans) + '\n'`
 * (a test holds them equal), each span written into one buffer as it is encoded, so that no
 * string of the whole batch is built and flattened.
 */
export function encodeTraceLineBytes(spans: readonly ReadableSpan[]): Buffer {
  const out = new Utf8Writer(1024 + spans.length * 1024);
  let first = true;
  for (const [resource, scopes] of groupSpans(spans)) {
    out.write(first ? `{"resourceSpans":[${resourceOpening(resource)}` : `]}]},${resourceOpening(resource)}`);
    first = false;
    let firstScope = true;
    for (const group of scopes.values()) {
      const opening = scopeOpening((group[0] as ReadableSpan).instrumentationScope);
      out.write(firstScope ? opening : `]},${opening}`);
      firstScope = false;
      let firstSpan = true;
      for (const span of group) {
        out.write(firstSpan ? spanJson(span) : `,${spanJson(span)}`);
        firstSpan = false;
      }
    }
  }
  out.write(first ? '{"resourceSpans":[]}\n' : ']}]}]}\n');
  return out.buf.subarray(0, out.at);
}

interface LineGroup {
  readonly scope: ReadableSpan['instrumentationScope'];
  readonly out: Utf8Writer;
  empty: boolean;
}

/**
 * A trace-log line built while spans end: each span's JSON is written at once into the
 * buffer of its resource and scope, so that a batch waiting to be written holds bytes, not
 * spans (nothing of them is left to the garbage collector's copying), and no batch is
 * encoded in one go on the event loop. `take()` gives the bytes `encodeTraceLineBytes`
 * gives for the spans added, in the order added (a test holds them equal).
 */
export class TraceLineBuilder {
  readonly #sizeHint: number;
  #count = 0;
  readonly #groups = new Map<ReadableSpan['resource'], Map<string, LineGroup>>();
  #lastResource: ReadableSpan['resource'] | undefined;
  #lastScope: ReadableSpan['instrumentationScope'] | undefined;
  #last: LineGroup | undefined;

  /** @param sizeHint bytes the first group's buffer starts with (the last line's size, say), so that it seldom grows. */
  constructor(sizeHint = 64 * 1024) {
    this.#sizeHint = Math.max(1024, sizeHint);
  }

  /** Spans added. */
  get count(): number {
    return this.#count;
  }

  /** Encodes `span` into the line (an encoding error leaves the line as it was). */
  add(span: ReadableSpan): void {
    const json = spanJson(span);
    const scope = span.instrumentationScope;
    let group = span.resource === this.#lastResource && scope === this.#lastScope ? this.#last : undefined;
    if (group === undefined) {
      let scopes = this.#groups.get(span.resource);
      if (scopes === undefined) {
        scopes = new Map();
        this.#groups.set(span.resource, scopes);
      }
      const key = `${scope.name}@${scope.version ?? ''}`;
      group = scopes.get(key);
      if (group === undefined) {
        group = { scope, out: new Utf8Writer(this.#groups.size === 1 && scopes.size === 0 ? this.#sizeHint : 16 * 1024), empty: true };
        scopes.set(key, group);
      }
      this.#lastResource = span.resource;
      this.#lastScope = scope;
      this.#last = group;
    }
    group.out.write(group.empty ? json : `,${json}`);
    group.empty = false;
    this.#count++;
  }

  /** The line with its newline. */
  take(): Buffer {
    const parts: Buffer[] = [];
    let text = '{"resourceSpans":[';
    let firstResource = true;
    for (const [resource, scopes] of this.#groups) {
      text += firstResource ? resourceOpening(resource) : `]}]},${resourceOpening(resource)}`;
      firstResource = false;
      let firstScope = true;
      for (const group of scopes.values()) {
        const opening = scopeOpening(group.scope);
        text += firstScope ? opening : `]},${opening}`;
        firstScope = false;
        parts.push(Buffer.from(text), group.out.buf.subarray(0, group.out.at));
        text = '';
      }
    }
    parts.push(Buffer.from(firstResource ? `${text}]}\n` : ']}]}]}\n'));
    return Buffer.concat(parts);
  }
}
