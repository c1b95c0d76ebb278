import type { Attributes, AttributeValue, HrTime } from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';
import { ClientSpanRecord, writeHrTimeAt } from './client-span-record.js';
import { GrowingBuffer, type RawWrites, SpanBatch } from './encoded-batch.js';
import { SpanRecord } from './span-record.js';

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
  readonly events?: readonly {
    timeUnixNano: string;
    name: string;
    attributes: readonly OtlpKeyValue[];
    droppedAttributesCount?: number;
  }[];
  readonly droppedEventsCount?: number;
  readonly links?: readonly {
    traceId: string;
    spanId: string;
    traceState?: string;
    attributes: readonly OtlpKeyValue[];
    droppedAttributesCount?: number;
    flags: number;
  }[];
  readonly droppedLinksCount?: number;
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
  if (typeof v === 'number') return isInt64(v) ? { intValue: int64Text(v) } : { doubleValue: v };
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

/**
 * An integer OTLP's int64 holds: written as an intValue; any other number (a fraction, or
 * an integer past ±2⁶³, which `String` would write as `1e+21`) as a doubleValue.
 */
export const isInt64 = (v: number): boolean => Number.isInteger(v) && v >= -(2 ** 63) && v < 2 ** 63;

/** An int64's decimal, exact: `String` writes 2⁶⁰ as 1152921504606847000, another int64. */
const int64Text = (v: number): string => (Number.isSafeInteger(v) ? String(v) : BigInt(v).toString());

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
    flags: contextFlags(sc.traceFlags, parent?.isRemote),
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
            ...(e.droppedAttributesCount ? { droppedAttributesCount: e.droppedAttributesCount } : {}),
          })),
        }
      : {}),
    ...(span.droppedEventsCount ? { droppedEventsCount: span.droppedEventsCount } : {}),
    ...(span.links.length
      ? {
          links: span.links.map((l) => {
            const traceState = l.context.traceState?.serialize();
            return {
              traceId: l.context.traceId,
              spanId: l.context.spanId,
              ...(traceState ? { traceState } : {}),
              attributes: keyValues(l.attributes ?? {}),
              ...(l.droppedAttributesCount ? { droppedAttributesCount: l.droppedAttributesCount } : {}),
              flags: contextFlags(l.context.traceFlags, l.context.isRemote),
            };
          }),
        }
      : {}),
    ...(span.droppedLinksCount ? { droppedLinksCount: span.droppedLinksCount } : {}),
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
  if (typeof v === 'number') return isInt64(v) ? `{"intValue":"${int64Text(v)}"}` : `{"doubleValue":${JSON.stringify(v)}}`;
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

/** A span context's OTLP flags: the trace flags, bit 8 (whether it is remote is known), bit 9 (it is). */
export const contextFlags = (traceFlags: number, isRemote: boolean | undefined): number => (traceFlags & 0xff) | (isRemote ? 0x300 : 0x100);

/** A span's events, links and their dropped counts as JSON members, each with its leading comma (empty when it has none). */
function eventsAndLinksJson(span: ReadableSpan): string {
  let json = '';
  if (span.events.length) {
    let events = '';
    for (const e of span.events) {
      const dropped = e.droppedAttributesCount ? `,"droppedAttributesCount":${e.droppedAttributesCount}` : '';
      const event = `{"timeUnixNano":"${hrTimeToNanoString(e.time)}","name":${str(e.name)},"attributes":[${keyValuesJson(e.attributes ?? {})}]${dropped}}`;
      events = events === '' ? event : `${events},${event}`;
    }
    json += `,"events":[${events}]`;
  }
  if (span.droppedEventsCount) json += `,"droppedEventsCount":${span.droppedEventsCount}`;
  if (span.links.length) {
    let links = '';
    for (const l of span.links) {
      const c = l.context;
      const traceState = c.traceState?.serialize();
      const link =
        `{"traceId":${str(c.traceId)},"spanId":${str(c.spanId)}${traceState ? `,"traceState":${str(traceState)}` : ''}` +
        `,"attributes":[${keyValuesJson(l.attributes ?? {})}]${l.droppedAttributesCount ? `,"droppedAttributesCount":${l.droppedAttributesCount}` : ''}` +
        `,"flags":${contextFlags(c.traceFlags, c.isRemote)}}`;
      links = links === '' ? link : `${links},${link}`;
    }
    json += `,"links":[${links}]`;
  }
  if (span.droppedLinksCount) json += `,"droppedLinksCount":${span.droppedLinksCount}`;
  return json;
}

function spanJson(span: ReadableSpan): string {
  const sc = span.spanContext();
  const parent = span.parentSpanContext;
  const traceState = sc.traceState?.serialize();
  // A Meshlet span record (itself, not a wrapper that may answer other ids) whose ids are
  // known hex needs no escaping of them.
  const proto = Object.getPrototypeOf(span);
  const id = (proto === ClientSpanRecord.prototype || proto === SpanRecord.prototype) && (span as ClientSpanRecord).hexIds ? quoted : str;
  let json = `{"traceId":${id(sc.traceId)},"spanId":${id(sc.spanId)}`;
  if (traceState) json += `,"traceState":${str(traceState)}`;
  if (parent) json += `,"parentSpanId":${id(parent.spanId)}`;
  json +=
    `,"flags":${contextFlags(sc.traceFlags, parent?.isRemote)},"name":${nameJson(span.name)},"kind":${span.kind + 1}` +
    `,"startTimeUnixNano":"${hrTimeToNanoString(span.startTime)}","endTimeUnixNano":"${hrTimeToNanoString(span.endTime)}"` +
    `,"attributes":[${attributesJson(span)}]`;
  if (span.droppedAttributesCount) json += `,"droppedAttributesCount":${span.droppedAttributesCount}`;
  json += eventsAndLinksJson(span);
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

// Buffers a line builder starts its first group with: the trace log exporter hands one
// back once its line is written (see `reusableLine`), so that a line needs no new buffer.
const lineBuffers = new WeakSet<ArrayBufferLike>();

/** A buffer for a line: when `reusable`, never from Node's shared pool (the whole ArrayBuffer is the line's) and marked as a line's. */
function lineBuffer(size: number, reusable: boolean): Buffer {
  if (!reusable) return Buffer.allocUnsafe(size);
  const buf = Buffer.allocUnsafeSlow(size);
  lineBuffers.add(buf.buffer);
  return buf;
}

/** Appends to a buffer, growing it as needed: strings as UTF-8, known-ASCII strings, bytes, decimal digits. */
class ByteWriter extends GrowingBuffer {
  readonly #reusable: boolean;

  constructor(size: number, reusable = false, buf?: Buffer) {
    super(buf ?? lineBuffer(size, reusable));
    this.#reusable = reusable;
  }

  protected override allocate(size: number): Buffer {
    return lineBuffer(size, this.#reusable);
  }

  write(s: string): void {
    // A UTF-16 code unit takes at most 3 bytes in UTF-8.
    this.room(s.length * 3);
    this.at += (this.buf as unknown as RawWrites).utf8Write(s, this.at);
  }

  /** `s` known to be ASCII (hex ids, digits). */
  ascii(s: string): void {
    this.room(s.length);
    this.at += (this.buf as unknown as RawWrites).latin1Write(s, this.at);
  }

  /** `s` known to be ASCII (a lower-case hex id), room already made: its character codes written one by one. */
  hex(s: string): void {
    const buf = this.buf;
    const at = this.at;
    const n = s.length;
    for (let i = 0; i < n; i++) buf[at + i] = s.charCodeAt(i);
    this.at = at + n;
  }

  /** A non-negative safe integer in decimal. */
  uint(n: number): void {
    if (n > 0x7fffffff) {
      this.ascii(String(n));
      return;
    }
    this.room(10);
    this.#int(n);
  }

  /** 0 ≤ n < 2^31 in decimal, room made: integer arithmetic only. */
  #int(n: number): void {
    let digits = 1;
    for (let x = n; x >= 10; x = (x / 10) | 0) digits++;
    const buf = this.buf;
    let at = this.at + digits;
    this.at = at;
    let x = n;
    do {
      const q = (x / 10) | 0;
      buf[--at] = 48 + x - q * 10;
      x = q;
    } while (x > 0);
  }

  /** `hrTimeToNanoString([s, ns])`, digits written straight in (no string made for the usual time). */
  nanos(s: number, ns: number): void {
    this.room(24);
    if (!(s > 0 && s <= 0x7fffffff && (s | 0) === s && ns >= 0 && ns < 1e9 && (ns | 0) === ns)) {
      this.ascii(hrTimeToNanoString([s, ns]));
      return;
    }
    // Span times fall within a few seconds of each other: the last seconds' digits are kept.
    if (s === lastSecondsWritten) this.put(lastSecondsDigits);
    else {
      const from = this.at;
      this.#int(s);
      lastSecondsWritten = s;
      lastSecondsDigits = Uint8Array.prototype.slice.call(this.buf, from, this.at);
    }
    const buf = this.buf;
    let at = this.at + 9;
    this.at = at;
    let x = ns;
    for (let i = 0; i < 9; i++) {
      const q = (x / 10) | 0;
      buf[--at] = 48 + x - q * 10;
      x = q;
    }
  }
}

let lastSecondsWritten = 0;
let lastSecondsDigits = new Uint8Array(0);

/**
 * One trace-log line with its newline, as UTF-8: the bytes of `encodeTraceLine(spans) + '\n'`
 * (a test holds them equal), each span written into one buffer as it is encoded (a Meshlet
 * span record piecewise as bytes), so that no string of the whole batch is built and flattened.
 */
export function encodeTraceLineBytes(spans: readonly ReadableSpan[]): Buffer {
  const out = new ByteWriter(1024 + spans.length * 1024);
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
        if (!firstSpan) out.byte(COMMA);
        if (!writeRecord(out, span)) out.write(spanJson(span));
        firstSpan = false;
      }
    }
  }
  out.write(first ? '{"resourceSpans":[]}\n' : ']}]}]}\n');
  return out.buf.subarray(0, out.at);
}

// A Meshlet span record's JSON, written piecewise: fixed ASCII parts as bytes made once,
// hex ids and digits as ASCII, its attributes from the bytes its maker cached. The same
// bytes as `spanJson` encoded as UTF-8 (a randomized test holds them equal).
const ascii = (s: string): Buffer => Buffer.from(s, 'latin1');
const TRACE_ID = ascii('{"traceId":"');
const SPAN_ID = ascii('","spanId":"');
const PARENT_SPAN_ID = ascii('","parentSpanId":"');
const END = ascii('","endTimeUnixNano":"');
const ATTRIBUTES = ascii('","attributes":[');
const STATUS = ascii(',"status":{"code":');
const MESSAGE = ascii(',"message":');
const COMMA = 0x2c;
const CLOSE_BRACKET = 0x5d;
const CLOSE_BRACE = 0x7d;

// The byte forms of cached JSON fragments, by the fragment (names, short string attributes, key prefixes).
const fragmentBytes = new Map<string, Buffer>();

function bytesOf(json: string): Buffer {
  let b = fragmentBytes.get(json);
  if (b === undefined) {
    b = Buffer.from(json, 'utf8');
    if (fragmentBytes.size >= KEYS_KEPT * 4) fragmentBytes.clear();
    fragmentBytes.set(json, b);
  }
  return b;
}

// Per span name, the part from the flags to the start time's opening quote, by flags, kind and leading quote.
const heads = new Map<string, Map<number, Buffer>>();

function headOf(name: string, flags: number, kind: number, quote: boolean): Buffer {
  let byFlags = heads.get(name);
  if (byFlags === undefined) {
    if (heads.size >= NAMES_KEPT) heads.clear();
    byFlags = new Map();
    heads.set(name, byFlags);
  }
  const key = flags * 16 + kind * 2 + (quote ? 1 : 0);
  let head = byFlags.get(key);
  if (head === undefined) {
    head = Buffer.from(`${quote ? '"' : ''},"flags":${flags},"name":${nameJson(name)},"kind":${kind},"startTimeUnixNano":"`, 'utf8');
    if (byFlags.size >= 64) byFlags.clear();
    byFlags.set(key, head);
  }
  return head;
}

// Small integers set late (a status code, a resend count): their whole key-value bytes, per key.
const smallInts = new Map<string, (Buffer | undefined)[]>();

function smallIntKeyValue(key: string, v: number): Buffer {
  let byValue = smallInts.get(key);
  if (byValue === undefined) {
    if (smallInts.size >= KEYS_KEPT) smallInts.clear();
    byValue = [];
    smallInts.set(key, byValue);
  }
  let kv = byValue[v];
  if (kv === undefined) {
    kv = Buffer.from(keyValueJson(key, v), 'utf8');
    byValue[v] = kv;
  }
  return kv;
}

/** One attribute set after the record was made, as `keyValueJson` gives it. */
function writeLateKey(out: ByteWriter, key: string, v: AttributeValue): void {
  if (typeof v === 'string' && v.length <= MAX_KEPT_LENGTH) out.bytes(bytesOf(stringKeyValue(key, v)));
  else if (typeof v === 'number' && v >= 0 && v < 1000 && (v | 0) === v) out.bytes(smallIntKeyValue(key, v));
  else out.write(keyValueJson(key, v));
}

/** Writes a span record made with its attributes' bytes (`madeBytes`) and known-hex ids; false (nothing written) for any other span. */
function writeRecord(out: ByteWriter, span: ReadableSpan): boolean {
  if (Object.getPrototypeOf(span) !== ClientSpanRecord.prototype) return false;
  const r = span as ClientSpanRecord;
  const made = r.madeBytes;
  // Its own attributes or shared ones (read without making them its own).
  if (made === undefined || !r.hexIds || r.madeJson === undefined || r.madeFor !== r.attrs) return false;
  const sc = r.spanContext();
  const parent = r.parentSpanContext;
  const traceState = sc.traceState?.serialize();
  const name = r.name;
  // Room for everything up to the attributes' end at once: fixed parts, ids, digits, the name's JSON.
  let need = 256 + name.length * 6;
  for (let i = 0; i < made.length; i++) need += (made[i] as Uint8Array).length;
  out.room(need);
  if (traceState) {
    out.ascii(`{"traceId":"${sc.traceId}","spanId":"${sc.spanId}","traceState":`);
    out.write(str(traceState));
    if (parent) out.ascii(`,"parentSpanId":"${parent.spanId}`);
    out.room(need);
  } else {
    // Character by character from the id strings (room made): a rope of them would be
    // built and flattened per span (about 200 bytes of garbage a span).
    out.put(TRACE_ID);
    out.hex(sc.traceId);
    out.put(SPAN_ID);
    out.hex(sc.spanId);
    if (parent) {
      out.put(PARENT_SPAN_ID);
      out.hex(parent.spanId);
    }
  }
  // `","flags":…,"name":…,"kind":…,"startTimeUnixNano":"` (its leading quote only after an id), kept per name.
  out.put(headOf(name, contextFlags(sc.traceFlags, parent?.isRemote), r.kind + 1, parent !== undefined || !traceState));
  // Times from the performance clock's ms when the record has them (no HrTime made), else its HrTime.
  writeHrTimeAt(r.startMs, r.anchor, out);
  out.put(END);
  if (!Number.isNaN(r.endMs)) writeHrTimeAt(r.endMs, r.anchor, out);
  else {
    const endTime = r.endTime;
    out.nanos(endTime[0], endTime[1]);
  }
  out.put(ATTRIBUTES);
  let empty = true;
  for (let i = 0; i < made.length; i++) {
    const b = made[i] as Uint8Array;
    if (b.length > 0) empty = false;
    out.bytes(b);
  }
  const late = r.lateKeys;
  if (late !== undefined) {
    const attrs = r.attrs;
    const values = r.shared ? r.lateValues : undefined;
    for (let i = 0; i < late.length; i++) {
      const key = late[i] as string;
      const v = values !== undefined ? values[i] : attrs[key];
      if (v === undefined || v === null) continue;
      if (!empty) out.byte(COMMA);
      empty = false;
      writeLateKey(out, key, v);
    }
  }
  out.byte(CLOSE_BRACKET);
  if (r.droppedAttributesCount) out.ascii(`,"droppedAttributesCount":${r.droppedAttributesCount}`);
  if (r.events.length || r.links.length) out.write(eventsAndLinksJson(r));
  const { code, message } = r.status;
  out.bytes(STATUS);
  out.uint(code);
  if (message) {
    out.bytes(MESSAGE);
    out.write(str(message));
  }
  out.byte(CLOSE_BRACE);
  out.byte(CLOSE_BRACE);
  return true;
}

interface LineGroup {
  readonly scope: ReadableSpan['instrumentationScope'];
  readonly out: ByteWriter;
  /** Where its spans begin in `out` (after the line's opening, when the group's buffer starts with it). */
  readonly start: number;
  empty: boolean;
}

/**
 * A trace-log line built while spans end: each span is written at once into the buffer of
 * its resource and scope (a Meshlet span record piecewise as bytes, any other span as its
 * JSON), so that a batch waiting to be written holds bytes, not spans (nothing of them is
 * left to the garbage collector's copying), and no batch is encoded in one go on the event
 * loop. `take()` gives the bytes `encodeTraceLineBytes` gives for the spans added, in the
 * order added (a test holds them equal). The first group's buffer starts with the line's
 * opening, so that a line of one group (the usual) is taken without a copy; it may be a
 * buffer handed back by the exporter once its last line was written (`reusableLine`).
 */
export class TraceLineBuilder extends SpanBatch<LineGroup> {
  readonly #sizeHint: number;
  readonly #spare: Buffer | undefined;

  /**
   * @param sizeHint bytes the first group's buffer starts with (the last line's size, say), so that it seldom grows.
   * @param spare a buffer to start the first group with (one `reusableLine` gave back); nothing else may hold it.
   */
  constructor(sizeHint = 64 * 1024, spare?: Buffer) {
    super();
    this.#sizeHint = Math.max(1024, sizeHint);
    this.#spare = spare;
  }

  protected makeGroup(span: ReadableSpan, first: boolean): LineGroup {
    let out: ByteWriter;
    let start = 0;
    if (first) {
      out = new ByteWriter(this.#sizeHint, true, this.#spare);
      // The line's opening first, unless the resource's attributes may still change.
      if (!span.resource.asyncAttributesPending) {
        out.write(`{"resourceSpans":[${resourceOpening(span.resource)}${scopeOpening(span.instrumentationScope)}`);
        start = out.at;
      }
    } else out = new ByteWriter(16 * 1024);
    return { scope: span.instrumentationScope, out, start, empty: true };
  }

  protected write(group: LineGroup, span: ReadableSpan): void {
    const out = group.out;
    if (!group.empty) out.byte(COMMA);
    if (!writeRecord(out, span)) out.write(spanJson(span));
    group.empty = false;
  }

  /** The line with its newline. */
  take(): Buffer {
    if (this.groups === 1) {
      const only = this.last as LineGroup;
      if (only.start > 0) {
        // The usual line: one resource, one scope, its opening already in the buffer.
        only.out.ascii(']}]}]}\n');
        return only.out.buf.subarray(0, only.out.at);
      }
    }
    const parts: Buffer[] = [];
    let text = '{"resourceSpans":[';
    let firstResource = true;
    for (const [resource, scopes] of this.byResource) {
      text += firstResource ? resourceOpening(resource) : `]}]},${resourceOpening(resource)}`;
      firstResource = false;
      let firstScope = true;
      for (const group of scopes.values()) {
        const opening = scopeOpening(group.scope);
        text += firstScope ? opening : `]},${opening}`;
        firstScope = false;
        // The first group's buffer starts with the line's opening (all of `text` so far).
        if (group.start > 0) parts.push(group.out.buf.subarray(0, group.out.at));
        else parts.push(Buffer.from(text), group.out.buf.subarray(0, group.out.at));
        text = '';
      }
    }
    parts.push(Buffer.from(firstResource ? `${text}]}\n` : ']}]}]}\n'));
    return Buffer.concat(parts);
  }
}

/**
 * The buffer under `line` when a line builder made it for its first group (nothing else
 * shares its memory), to start the next builder with once `line` is written; undefined
 * for any other buffer. The caller must no longer read `line` once it hands the buffer on.
 */
export function reusableLine(line: Buffer): Buffer | undefined {
  return line.byteOffset === 0 && lineBuffers.has(line.buffer) ? Buffer.from(line.buffer) : undefined;
}
