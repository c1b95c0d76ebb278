import type { Attributes, AttributeValue, HrTime, Link } from '@opentelemetry/api';
import type { ReadableSpan, TimedEvent } from '@opentelemetry/sdk-trace';
import { ClientSpanRecord, writeHrTimeAt } from './client-span-record.js';
import { GrowingBuffer, type RawWrites, SpanBatch } from './encoded-batch.js';
import { contextFlags, isInt64, type OtlpAnyValue, type OtlpKeyValue, type OtlpTraceRequest } from './otlp-json.js';

// The OTLP protobuf encoding of spans (opentelemetry-proto's trace.proto and common.proto),
// as the trace log writes it with `format: 'proto'`: each batch one ExportTraceServiceRequest
// (the same message as TracesData), preceded by its size as a 4-byte big-endian unsigned
// integer, as the OpenTelemetry Collector's file exporter writes with `format: proto`.
// Ids are bytes, times fixed64 nanoseconds: a span takes about a quarter of its OTLP/JSON
// bytes. `decodeTraceProto` reads a request back into the object OTLP/JSON parses to (a
// test holds them equal), for the trace log's reader.

/** The largest request the reader takes (a trace-log batch is 512 spans, under 1 MiB). */
export const MAX_PROTO_REQUEST_BYTES = 64 * 1024 * 1024;
/** How deep an attribute value's arrays and lists may nest in what the reader takes. */
const MAX_VALUE_DEPTH = 16;

const TWO_32 = 0x1_0000_0000;

/** A protobuf field's key: the field number and the wire type (0 varint, 1 64-bit, 2 length-delimited, 5 32-bit). */
const key = (field: number, wire: number): number => field * 8 + wire;

/** Appends protobuf to a buffer, growing it as needed. */
class ProtoWriter extends GrowingBuffer {
  constructor(size: number) {
    super(Buffer.allocUnsafe(size));
  }

  /** A non-negative safe integer as a varint. */
  varint(n: number): void {
    this.room(10);
    const buf = this.buf;
    let at = this.at;
    while (n >= TWO_32) {
      buf[at++] = (n % 128) | 0x80;
      n = Math.floor(n / 128);
    }
    while (n > 127) {
      buf[at++] = (n & 0x7f) | 0x80;
      n >>>= 7;
    }
    buf[at++] = n;
    this.at = at;
  }

  /** A 64-bit value as a varint, from its two 32-bit halves. */
  varint64(hi: number, lo: number): void {
    if (hi === 0) {
      this.varint(lo);
      return;
    }
    this.room(10);
    const buf = this.buf;
    let at = this.at;
    // The low 28 bits in four groups, then the 64-bit value shifted right by 28 from here on.
    for (let i = 0; i < 4; i++) {
      buf[at++] = (lo & 0x7f) | 0x80;
      lo >>>= 7;
    }
    let rest = lo | ((hi & 0x7) << 4);
    let high = hi >>> 3;
    while (high !== 0) {
      buf[at++] = rest | 0x80;
      rest = high & 0x7f;
      high >>>= 7;
    }
    buf[at++] = rest;
    this.at = at;
  }

  fixed32(v: number): void {
    this.room(4);
    this.buf.writeUInt32LE(v >>> 0, this.at);
    this.at += 4;
  }

  /** `hrTimeToNanoString([s, ns])` as fixed64: s × 10⁹ + ns in exact 32-bit halves. */
  nanos(s: number, ns: number): void {
    this.room(8);
    if (!(s >= 0 && s < TWO_32 && s >>> 0 === s && ns >= 0 && ns < 1e9 && ns >>> 0 === ns)) {
      // Not an HrTime the clocks make: exact all the same, by BigInt (0 when out of range).
      let t = BigInt(Math.trunc(s)) * 1_000_000_000n + BigInt(Math.trunc(ns));
      if (t < 0n || t >= 1n << 64n) t = 0n;
      this.buf.writeBigUInt64LE(t, this.at);
      this.at += 8;
      return;
    }
    // s = hi16 × 2¹⁶ + lo16: lo16 × 10⁹ + ns < 2⁴⁷ and hi16 × 10⁹ < 2⁴⁶ are exact doubles.
    const low = (s & 0xffff) * 1e9 + ns;
    const high = (s >>> 16) * 1e9; // to be shifted left by 16
    const highLo = (high % 0x1_0000) * 0x1_0000; // its bits that land in the low word
    const lowSum = (low % TWO_32) + highLo;
    const carry = lowSum >= TWO_32 ? 1 : 0;
    const lo = lowSum - carry * TWO_32;
    const hi = Math.floor(low / TWO_32) + Math.floor(high / 0x1_0000) + carry;
    const buf = this.buf;
    const at = this.at;
    buf[at] = lo;
    buf[at + 1] = lo >>> 8;
    buf[at + 2] = lo >>> 16;
    buf[at + 3] = lo >>> 24;
    buf[at + 4] = hi;
    buf[at + 5] = hi >>> 8;
    buf[at + 6] = hi >>> 16;
    buf[at + 7] = hi >>> 24;
    this.at = at + 8;
  }

  /** A length-delimited string field's length and UTF-8 (its key written by the caller). */
  string(s: string): void {
    const n = Buffer.byteLength(s, 'utf8');
    this.varint(n);
    this.room(n);
    this.at += (this.buf as unknown as RawWrites).utf8Write(s, this.at);
  }

  /** A hex id (of either case) as its bytes, with its length first; refused (TypeError) unless hex of an even length. */
  hexBytes(hex: string): void {
    const n = hex.length;
    if (n % 2 !== 0) throw new TypeError(`an id of ${n} hex digits`);
    this.varint(n / 2);
    this.room(n / 2);
    this.at = putId(this.buf, this.at, hex, n);
  }

  /** Starts a length-delimited field's content (its key written): two bytes kept for the length. */
  begin(): number {
    this.room(2);
    const start = this.at;
    this.at += 2;
    return start;
  }

  /** Ends what `begin` started: its length put before it, the content moved when the length takes other than two bytes. */
  end(start: number): void {
    const n = this.at - start - 2;
    const size = varintSize(n);
    if (size !== 2) {
      if (size > 2) this.room(size - 2);
      this.buf.copyWithin(start + size, start + 2, this.at);
      this.at += size - 2;
    }
    let at = start;
    let v = n;
    while (v > 127) {
      this.buf[at++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    this.buf[at] = v;
  }
}

function varintSize(n: number): number {
  let size = 1;
  while (n > 127) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

// --- Attributes -------------------------------------------------------------------------

/** An AnyValue's content (the message, without its key and length). */
function writeAnyValue(w: ProtoWriter, v: AttributeValue): void {
  if (typeof v === 'string') {
    w.byte(key(1, 2));
    w.string(v);
  } else if (typeof v === 'boolean') {
    w.byte(key(2, 0));
    w.byte(v ? 1 : 0);
  } else if (typeof v === 'number') {
    if (isInt64(v)) {
      w.byte(key(3, 0));
      if (v >= 0 && v < TWO_32) w.varint(v);
      else {
        // int64 as its two's complement (10 bytes when negative).
        const u = BigInt.asUintN(64, BigInt(v));
        w.varint64(Number(u >> 32n), Number(u & 0xffffffffn));
      }
    } else {
      // A fraction, NaN, ±Infinity, or an integer past int64: a double, as OTLP/JSON writes it.
      w.byte(key(4, 1));
      w.room(8);
      w.buf.writeDoubleLE(v, w.at);
      w.at += 8;
    }
  } else {
    w.byte(key(5, 2));
    const array = w.begin();
    for (const x of v as readonly unknown[]) {
      if (x === null || x === undefined) continue;
      w.byte(key(1, 2));
      const item = w.begin();
      writeAnyValue(w, x as AttributeValue);
      w.end(item);
    }
    w.end(array);
  }
}

/** A KeyValue field (its key byte, length and content) under `field`. */
function writeKeyValue(w: ProtoWriter, field: number, k: string, v: AttributeValue): void {
  w.byte(key(field, 2));
  const kv = w.begin();
  w.byte(key(1, 2));
  w.string(k);
  w.byte(key(2, 2));
  const value = w.begin();
  writeAnyValue(w, v);
  w.end(value);
  w.end(kv);
}

/** The bytes `write` puts into a new writer (for a fragment kept: made once, so a writer each time). */
function bytesOf(write: (w: ProtoWriter) => void): Buffer {
  const w = new ProtoWriter(256);
  write(w);
  return w.buf.subarray(0, w.at);
}

// Short string values repeat (method, host, peer service, instance, rule, lane): their whole
// KeyValue field as a Span's attribute is kept per key, a bounded number per key; small
// integers (a status code, a resend count) too.
const KEYS_KEPT = 1024;
const VALUES_KEPT = 256;
const MAX_KEPT_LENGTH = 64;
const keptStrings = new Map<string, Map<string, Buffer>>();
const keptInts = new Map<string, (Buffer | undefined)[]>();

/** One attribute as a Span's `attributes` field (9), its bytes kept when they will repeat. */
function writeSpanAttribute(w: ProtoWriter, k: string, v: AttributeValue): void {
  if (typeof v === 'string' && v.length <= MAX_KEPT_LENGTH) {
    let values = keptStrings.get(k);
    if (values === undefined) {
      if (keptStrings.size >= KEYS_KEPT) keptStrings.clear();
      values = new Map();
      keptStrings.set(k, values);
    }
    let kv = values.get(v);
    if (kv === undefined) {
      kv = bytesOf((s) => writeKeyValue(s, 9, k, v));
      if (values.size >= VALUES_KEPT) values.clear();
      values.set(v, kv);
    }
    w.bytes(kv);
  } else if (typeof v === 'number' && v >= 0 && v < 1000 && (v | 0) === v) {
    let values = keptInts.get(k);
    if (values === undefined) {
      if (keptInts.size >= KEYS_KEPT) keptInts.clear();
      values = [];
      keptInts.set(k, values);
    }
    let kv = values[v];
    if (kv === undefined) {
      kv = bytesOf((s) => writeKeyValue(s, 9, k, v));
      values[v] = kv;
    }
    w.bytes(kv);
  } else writeKeyValue(w, 9, k, v);
}

/** Attributes as repeated KeyValue fields under `field`, in enumeration order, null and undefined values left out. */
function writeAttributes(w: ProtoWriter, field: number, attrs: Attributes): void {
  for (const k in attrs) {
    const v = attrs[k];
    if (v === undefined || v === null) continue;
    if (field === 9) writeSpanAttribute(w, k, v);
    else writeKeyValue(w, field, k, v);
  }
}

/** The OTLP/JSON KeyValues of a span record's made attributes as the Span's fields: made once per made JSON. */
function madeAttributesOf(made: readonly Uint8Array[], json: string): Buffer {
  let bytes = madeAttributes.get(made);
  if (bytes === undefined) {
    const kvs = JSON.parse(`[${json}]`) as OtlpKeyValue[];
    bytes = bytesOf((w) => {
      for (const kv of kvs) writeSpanAttribute(w, kv.key, attributeOf(kv.value));
    });
    madeAttributes.set(made, bytes);
  }
  return bytes;
}

// By the pieces of a record's made JSON (shared by the records of one URL and kind of attempt).
const madeAttributes = new WeakMap<readonly Uint8Array[], Buffer>();

/** The attribute value an OTLP/JSON AnyValue was written from. */
function attributeOf(v: OtlpAnyValue): AttributeValue {
  if ('stringValue' in v) return v.stringValue;
  if ('boolValue' in v) return v.boolValue;
  if ('intValue' in v) return Number(v.intValue);
  if ('doubleValue' in v) return v.doubleValue;
  return v.arrayValue.values.map(attributeOf) as AttributeValue;
}

// --- Spans ------------------------------------------------------------------------------

// Per span name and kind, the name and kind fields' bytes. Bounded all the same.
const NAMES_KEPT = 1024;
const heads = new Map<string, (Buffer | undefined)[]>();

function headOf(name: string, kind: number): Buffer {
  let byKind = heads.get(name);
  if (byKind === undefined) {
    if (heads.size >= NAMES_KEPT) heads.clear();
    byKind = [];
    heads.set(name, byKind);
  }
  let head = byKind[kind];
  if (head === undefined) {
    head = bytesOf((w) => {
      w.byte(key(5, 2));
      w.string(name);
      w.byte(key(6, 0));
      w.varint(kind + 1);
    });
    if (kind >= 0 && kind < 8) byKind[kind] = head;
  }
  return head;
}

const FLAGS_KEY = [0x85, 0x01]; // field 16, fixed32: the key's varint takes two bytes

function writeTime(w: ProtoWriter, field: number, t: HrTime): void {
  w.byte(key(field, 1));
  w.nanos(t[0], t[1]);
}

function writeEvent(w: ProtoWriter, e: TimedEvent): void {
  w.byte(key(11, 2));
  const start = w.begin();
  writeTime(w, 1, e.time);
  w.byte(key(2, 2));
  w.string(e.name);
  if (e.attributes) writeAttributes(w, 3, e.attributes);
  if (e.droppedAttributesCount) {
    w.byte(key(4, 0));
    w.varint(e.droppedAttributesCount);
  }
  w.end(start);
}

function writeLink(w: ProtoWriter, link: Link): void {
  w.byte(key(13, 2));
  const start = w.begin();
  const c = link.context;
  w.byte(key(1, 2));
  w.hexBytes(c.traceId);
  w.byte(key(2, 2));
  w.hexBytes(c.spanId);
  const traceState = c.traceState?.serialize();
  if (traceState) {
    w.byte(key(3, 2));
    w.string(traceState);
  }
  if (link.attributes) writeAttributes(w, 4, link.attributes);
  if (link.droppedAttributesCount) {
    w.byte(key(5, 0));
    w.varint(link.droppedAttributesCount);
  }
  w.byte(key(6, 5));
  w.fixed32(contextFlags(c.traceFlags, c.isRemote));
  w.end(start);
}

/**
 * One span as a ScopeSpans' `spans` field (2): what `spanJson` writes, as protobuf. A
 * Meshlet span record made with its attributes' JSON writes them from bytes kept per
 * made JSON, and its times from its performance-clock readings.
 */
function writeSpan(w: ProtoWriter, span: ReadableSpan): void {
  if (Object.getPrototypeOf(span) === ClientSpanRecord.prototype && writeRecord(w, span as ClientSpanRecord)) return;
  w.byte(key(2, 2));
  const start = w.begin();
  const sc = span.spanContext();
  const parent = span.parentSpanContext;
  w.byte(key(1, 2));
  w.hexBytes(sc.traceId);
  w.byte(key(2, 2));
  w.hexBytes(sc.spanId);
  const traceState = sc.traceState?.serialize();
  if (traceState) {
    w.byte(key(3, 2));
    w.string(traceState);
  }
  if (parent) {
    w.byte(key(4, 2));
    w.hexBytes(parent.spanId);
  }
  w.bytes(headOf(span.name, span.kind));
  const record = Object.getPrototypeOf(span) === ClientSpanRecord.prototype ? (span as ClientSpanRecord) : undefined;
  if (record !== undefined) {
    w.byte(key(7, 1));
    writeHrTimeAt(record.startMs, record.anchor, w);
    if (!Number.isNaN(record.endMs)) {
      w.byte(key(8, 1));
      writeHrTimeAt(record.endMs, record.anchor, w);
    } else writeTime(w, 8, record.endTime);
  } else {
    writeTime(w, 7, span.startTime);
    writeTime(w, 8, span.endTime);
  }
  writeAttributes(w, 9, span.attributes);
  writeRest(w, span, contextFlags(sc.traceFlags, parent?.isRemote));
  w.end(start);
}

/**
 * A Meshlet span record made with its attributes' JSON (the usual sampled attempt): its
 * attributes from bytes kept per made JSON, its times from its performance-clock readings,
 * the fixed parts written with room made once. False (nothing written) for a record this
 * does not cover (a tracestate, attributes no longer as made): the general path writes it.
 */
function writeRecord(w: ProtoWriter, r: ClientSpanRecord): boolean {
  const made = r.madeBytes;
  const json = r.madeJson;
  if (made === undefined || json === undefined || r.madeFor !== r.attrs) return false;
  const sc = r.spanContext();
  if (sc.traceState !== undefined && sc.traceState.serialize() !== '') return false;
  const parent = r.parentSpanContext;
  const head = headOf(r.name, r.kind);
  const attributes = madeAttributesOf(made, json);
  // The span's key, its length (two bytes, fixed up at the end), ids, head, times, attributes.
  w.room(3 + 18 + 10 + 10 + head.length + 18 + attributes.length);
  const buf = w.buf;
  let at = w.at;
  buf[at] = key(2, 2);
  const start = at + 1;
  at += 3;
  buf[at++] = key(1, 2);
  buf[at++] = 16;
  at = putId(buf, at, sc.traceId, 32);
  buf[at++] = key(2, 2);
  buf[at++] = 8;
  at = putId(buf, at, sc.spanId, 16);
  if (parent) {
    buf[at++] = key(4, 2);
    buf[at++] = 8;
    at = putId(buf, at, parent.spanId, 16);
  }
  w.at = at;
  w.put(head);
  w.buf[w.at++] = key(7, 1);
  writeHrTimeAt(r.startMs, r.anchor, w);
  if (!Number.isNaN(r.endMs)) {
    w.buf[w.at++] = key(8, 1);
    writeHrTimeAt(r.endMs, r.anchor, w);
  } else writeTime(w, 8, r.endTime);
  w.put(attributes);
  const late = r.lateKeys;
  if (late !== undefined) {
    const values = r.shared ? r.lateValues : undefined;
    for (let i = 0; i < late.length; i++) {
      const k = late[i] as string;
      const v = values !== undefined ? values[i] : r.attrs[k];
      if (v !== undefined && v !== null) writeSpanAttribute(w, k, v);
    }
  }
  writeRest(w, r, contextFlags(sc.traceFlags, parent?.isRemote));
  w.end(start);
  return true;
}

/** `hex` (`n` hex digits) as bytes at `at`; the next free index. Refused (TypeError) unless hex. */
function putId(buf: Buffer, at: number, hex: string, n: number): number {
  if (hex.length !== n) throw new TypeError(`an id of ${hex.length} hex digits, not ${n}`);
  // Node's hex decoding stops at the first pair that is not hex: fewer bytes written.
  if ((buf as unknown as RawWrites).hexWrite(hex, at, n / 2) !== n / 2) throw new TypeError('an id that is not hex');
  return at + n / 2;
}

/** After the attributes: dropped counts, events, links, the status and the flags (the usual status and flags as bytes kept). */
function writeRest(w: ProtoWriter, span: ReadableSpan, flags: number): void {
  if (span.droppedAttributesCount) {
    w.byte(key(10, 0));
    w.varint(span.droppedAttributesCount);
  }
  for (const e of span.events) writeEvent(w, e);
  if (span.droppedEventsCount) {
    w.byte(key(12, 0));
    w.varint(span.droppedEventsCount);
  }
  for (const link of span.links) writeLink(w, link);
  if (span.droppedLinksCount) {
    w.byte(key(14, 0));
    w.varint(span.droppedLinksCount);
  }
  const { code, message } = span.status;
  if (!message && code >= 0 && code < 4 && flags >= 0 && flags < 0x400) {
    w.bytes(tailOf(code, flags));
    return;
  }
  w.byte(key(15, 2));
  const status = w.begin();
  if (message) {
    w.byte(key(2, 2));
    w.string(message);
  }
  if (code) {
    w.byte(key(3, 0));
    w.varint(code);
  }
  w.end(status);
  w.bytes(FLAGS_BYTES);
  w.fixed32(flags);
}

// The status (a code, no message) and flags fields as bytes, by code and flags.
const tails: (Buffer | undefined)[] = [];

function tailOf(code: number, flags: number): Buffer {
  const i = code * 0x400 + flags;
  let tail = tails[i];
  if (tail === undefined) {
    tail = bytesOf((w) => {
      w.byte(key(15, 2));
      const status = w.begin();
      if (code) {
        w.byte(key(3, 0));
        w.varint(code);
      }
      w.end(status);
      w.bytes(FLAGS_BYTES);
      w.fixed32(flags);
    });
    tails[i] = tail;
  }
  return tail;
}

const FLAGS_BYTES = Uint8Array.from(FLAGS_KEY);

// --- Requests ---------------------------------------------------------------------------

// A resource's Resource message (its content), built once per resource once its attributes are settled.
const resourceBytes = new WeakMap<ReadableSpan['resource'], Buffer>();

function resourceOf(resource: ReadableSpan['resource']): Buffer {
  let b = resourceBytes.get(resource);
  if (b === undefined) {
    b = bytesOf((w) => writeAttributes(w, 1, resource.attributes as Attributes));
    if (!resource.asyncAttributesPending) resourceBytes.set(resource, b);
  }
  return b;
}

// A scope's InstrumentationScope message (its content), by scope object.
const scopeBytes = new WeakMap<ReadableSpan['instrumentationScope'], Buffer>();

function scopeOf(scope: ReadableSpan['instrumentationScope']): Buffer {
  let b = scopeBytes.get(scope);
  if (b === undefined) {
    b = bytesOf((w) => {
      w.byte(key(1, 2));
      w.string(scope.name);
      if (scope.version) {
        w.byte(key(2, 2));
        w.string(scope.version);
      }
    });
    scopeBytes.set(scope, b);
  }
  return b;
}

interface ProtoGroup {
  readonly resource: ReadableSpan['resource'];
  readonly scope: ReadableSpan['instrumentationScope'];
  /** The group's spans, each a `spans` field, from `start`. */
  readonly out: ProtoWriter;
  /** Where its spans begin: after room kept for the batch's size and the messages around them (the first group's). */
  readonly start: number;
}

/** Most bytes a varint of a 32-bit length takes. */
const MAX_LENGTH_BYTES = 5;

/** The room the first group keeps before its spans: the size, then the request's, the ResourceSpans' and the ScopeSpans' openings. */
const openingRoom = (resource: Buffer, scope: Buffer): number =>
  4 + (1 + MAX_LENGTH_BYTES) * 2 + resource.length + (1 + MAX_LENGTH_BYTES) * 2 + scope.length;

/**
 * A batch of the protobuf trace log built while spans end, as the JSON log's
 * `TraceLineBuilder` is: each span written at once into its resource's and scope's buffer,
 * so that a batch waiting to be written holds bytes, not spans. `take()` gives the size
 * prefix and the ExportTraceServiceRequest, spans grouped by resource then scope, in the
 * order added (what `encodeTraceProto` gives for the same spans). The first group's buffer
 * keeps room for the batch's opening, so that a batch of one group (the usual) is taken
 * without a copy.
 */
export class TraceProtoBuilder extends SpanBatch<ProtoGroup> {
  readonly #sizeHint: number;

  /** @param sizeHint bytes the first group's buffer starts with (the last batch's size, say). */
  constructor(sizeHint = 16 * 1024) {
    super();
    this.#sizeHint = Math.max(1024, sizeHint);
  }

  protected makeGroup(span: ReadableSpan, first: boolean): ProtoGroup {
    const { resource, instrumentationScope: scope } = span;
    let start = 0;
    let out: ProtoWriter;
    if (first) {
      // Room for the opening, unless the resource's attributes may still change.
      if (!resource.asyncAttributesPending) start = openingRoom(resourceOf(resource), scopeOf(scope));
      out = new ProtoWriter(this.#sizeHint + start);
      out.at = start;
    } else out = new ProtoWriter(4096);
    return { resource, scope, out, start };
  }

  protected write(group: ProtoGroup, span: ReadableSpan): void {
    writeSpan(group.out, span);
  }

  /** The batch: its size as 4 bytes, big-endian, then the request. */
  take(): Buffer {
    const only = this.last;
    if (this.groups === 1 && only !== undefined && only.start > 0) return openInPlace(only);
    return frame(this.byResource, (group) => group.out.buf.subarray(group.start, group.out.at));
  }
}

/** A one-group batch: its opening written into the room kept before its spans, ending where they begin. */
function openInPlace(group: ProtoGroup): Buffer {
  const { out, start } = group;
  const resource = resourceOf(group.resource);
  const scope = scopeOf(group.scope);
  const scopeSpans = 1 + varintSize(scope.length) + scope.length + (out.at - start);
  const resourceSpans = 1 + varintSize(resource.length) + resource.length + 1 + varintSize(scopeSpans) + scopeSpans;
  const request = 1 + varintSize(resourceSpans) + resourceSpans;
  const opening = 4 + request - (out.at - start);
  const end = out.at;
  out.at = start - opening;
  const from = out.at;
  out.buf.writeUInt32BE(request, from);
  out.at += 4;
  out.byte(key(1, 2)); // resource_spans
  out.varint(resourceSpans);
  out.byte(key(1, 2)); // resource
  out.varint(resource.length);
  out.bytes(resource);
  out.byte(key(2, 2)); // scope_spans
  out.varint(scopeSpans);
  out.byte(key(1, 2)); // scope
  out.varint(scope.length);
  out.bytes(scope);
  if (out.at !== start) throw new Error(`the batch's opening took ${out.at - from} bytes, not ${opening}`);
  return out.buf.subarray(from, end);
}

/** The size prefix and an ExportTraceServiceRequest of groups of spans already encoded, into a buffer of its exact size. */
function frame<G extends { readonly scope: ReadableSpan['instrumentationScope'] }>(
  byResource: Map<ReadableSpan['resource'], Map<string, G>>,
  spansOf: (group: G) => Uint8Array,
): Buffer {
  // Sizes first (lengths come before what they measure), then one buffer of the whole.
  let request = 0;
  const sizes: number[] = [];
  for (const [resource, scopes] of byResource) {
    const r = resourceOf(resource);
    let resourceSpans = 1 + varintSize(r.length) + r.length;
    for (const group of scopes.values()) {
      const sc = scopeOf(group.scope);
      const scopeSpans = 1 + varintSize(sc.length) + sc.length + spansOf(group).length;
      resourceSpans += 1 + varintSize(scopeSpans) + scopeSpans;
    }
    sizes.push(resourceSpans);
    request += 1 + varintSize(resourceSpans) + resourceSpans;
  }
  const w = new ProtoWriter(4 + request);
  w.buf.writeUInt32BE(request, 0);
  w.at = 4;
  let i = 0;
  for (const [resource, scopes] of byResource) {
    const r = resourceOf(resource);
    w.byte(key(1, 2)); // resource_spans
    w.varint(sizes[i++] as number);
    w.byte(key(1, 2)); // resource
    w.varint(r.length);
    w.bytes(r);
    for (const group of scopes.values()) {
      const spans = spansOf(group);
      const sc = scopeOf(group.scope);
      w.byte(key(2, 2)); // scope_spans
      w.varint(1 + varintSize(sc.length) + sc.length + spans.length);
      w.byte(key(1, 2)); // scope
      w.varint(sc.length);
      w.bytes(sc);
      w.bytes(spans); // each a `spans` field already
    }
  }
  return w.buf.subarray(0, w.at);
}

/** One batch of spans as the protobuf trace log writes it: the 4-byte big-endian size, then the ExportTraceServiceRequest. */
export function encodeTraceProto(spans: readonly ReadableSpan[]): Buffer {
  const builder = new TraceProtoBuilder(1024 + spans.length * 256);
  for (const span of spans) builder.add(span);
  return builder.take();
}

// --- Reading ----------------------------------------------------------------------------

/** What does not parse as the message it should be. */
export class ProtoDecodeError extends Error {
  override readonly name = 'ProtoDecodeError';
}

/** Reads protobuf fields from a slice of bytes, bounds checked. */
class ProtoReader {
  at: number;

  constructor(
    readonly buf: Uint8Array,
    start: number,
    readonly end: number,
  ) {
    this.at = start;
  }

  get more(): boolean {
    return this.at < this.end;
  }

  varint(): number {
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.at >= this.end) throw new ProtoDecodeError('a varint past the end');
      const b = this.buf[this.at++] as number;
      result += (b & 0x7f) * scale;
      if (b < 0x80) return result;
      scale *= 128;
    }
    throw new ProtoDecodeError('a varint of more than 10 bytes');
  }

  /** A varint as 64 bits, exactly. */
  varint64(): bigint {
    let result = 0n;
    let shift = 0n;
    for (let i = 0; i < 10; i++) {
      if (this.at >= this.end) throw new ProtoDecodeError('a varint past the end');
      const b = this.buf[this.at++] as number;
      result |= BigInt(b & 0x7f) << shift;
      if (b < 0x80) return BigInt.asUintN(64, result);
      shift += 7n;
    }
    throw new ProtoDecodeError('a varint of more than 10 bytes');
  }

  /** A length-delimited field's content: [start, end). */
  slice(): [number, number] {
    const n = this.varint();
    const start = this.at;
    if (n > this.end - start) throw new ProtoDecodeError('a field longer than its message');
    this.at = start + n;
    return [start, start + n];
  }

  sub(): ProtoReader {
    const [start, end] = this.slice();
    return new ProtoReader(this.buf, start, end);
  }

  string(): string {
    const [start, end] = this.slice();
    return Buffer.from(this.buf.buffer, this.buf.byteOffset + start, end - start).toString('utf8');
  }

  hex(): string {
    const [start, end] = this.slice();
    return Buffer.from(this.buf.buffer, this.buf.byteOffset + start, end - start).toString('hex');
  }

  fixed64(): bigint {
    if (this.end - this.at < 8) throw new ProtoDecodeError('a fixed64 past the end');
    const v = Buffer.from(this.buf.buffer, this.buf.byteOffset + this.at, 8).readBigUInt64LE(0);
    this.at += 8;
    return v;
  }

  double(): number {
    if (this.end - this.at < 8) throw new ProtoDecodeError('a double past the end');
    const v = Buffer.from(this.buf.buffer, this.buf.byteOffset + this.at, 8).readDoubleLE(0);
    this.at += 8;
    return v;
  }

  fixed32(): number {
    if (this.end - this.at < 4) throw new ProtoDecodeError('a fixed32 past the end');
    const v = Buffer.from(this.buf.buffer, this.buf.byteOffset + this.at, 4).readUInt32LE(0);
    this.at += 4;
    return v;
  }

  /** Passes over a field of this wire type. */
  skip(wire: number): void {
    if (wire === 0) this.varint();
    else if (wire === 1) this.at += 8;
    else if (wire === 2) this.slice();
    else if (wire === 5) this.at += 4;
    else throw new ProtoDecodeError(`wire type ${wire}`);
    if (this.at > this.end) throw new ProtoDecodeError('a field past the end');
  }
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

function readAnyValue(r: ProtoReader, depth: number): OtlpAnyValue {
  if (depth > MAX_VALUE_DEPTH) throw new ProtoDecodeError(`values nested more than ${MAX_VALUE_DEPTH} deep`);
  // An empty AnyValue (no value set) is `{}`, as in OTLP/JSON.
  let value = {} as OtlpAnyValue;
  while (r.more) {
    const k = r.varint();
    const field = Math.floor(k / 8);
    const wire = k % 8;
    if (field === 1 && wire === 2) value = { stringValue: r.string() };
    else if (field === 2 && wire === 0) value = { boolValue: r.varint() !== 0 };
    else if (field === 3 && wire === 0) value = { intValue: BigInt.asIntN(64, r.varint64()).toString() };
    else if (field === 4 && wire === 1) value = { doubleValue: r.double() };
    else if ((field === 5 || field === 6) && wire === 2) {
      // ArrayValue's values (1) are AnyValues; KeyValueList's values (1) are KeyValues.
      const list = r.sub();
      const values: unknown[] = [];
      while (list.more) {
        const lk = list.varint();
        if (lk === key(1, 2)) values.push(field === 5 ? readAnyValue(list.sub(), depth + 1) : readKeyValue(list.sub(), depth + 1));
        else list.skip(lk % 8);
      }
      value = (field === 5 ? { arrayValue: { values } } : { kvlistValue: { values } }) as unknown as OtlpAnyValue;
    } else if (field === 7 && wire === 2) {
      const [start, end] = r.slice();
      value = { bytesValue: Buffer.from(r.buf.subarray(start, end)).toString('base64') } as unknown as OtlpAnyValue;
    } else r.skip(wire);
  }
  return value;
}

function readKeyValue(r: ProtoReader, depth = 0): OtlpKeyValue {
  let k = '';
  let value = {} as OtlpAnyValue;
  while (r.more) {
    const t = r.varint();
    if (t === key(1, 2)) k = r.string();
    else if (t === key(2, 2)) value = readAnyValue(r.sub(), depth + 1);
    else r.skip(t % 8);
  }
  return { key: k, value };
}

/** The object form of one ExportTraceServiceRequest (or TracesData): what its OTLP/JSON parses to. */
export function decodeTraceProto(bytes: Uint8Array): OtlpTraceRequest {
  if (bytes.length > MAX_PROTO_REQUEST_BYTES) throw new ProtoDecodeError(`a request of ${bytes.length} bytes`);
  const r = new ProtoReader(bytes, 0, bytes.length);
  const resourceSpans: unknown[] = [];
  while (r.more) {
    const t = r.varint();
    if (t === key(1, 2)) resourceSpans.push(readResourceSpans(r.sub()));
    else r.skip(t % 8);
  }
  return { resourceSpans } as OtlpTraceRequest;
}

/**
 * A collector's ExportTraceServiceResponse: its partial success, the spans it rejected
 * (0 when it took them all) and why. Bounded as the request's decoder is.
 */
export function decodeTraceResponseProto(bytes: Uint8Array): { rejectedSpans: number; errorMessage: string } {
  if (bytes.length > MAX_PROTO_REQUEST_BYTES) throw new ProtoDecodeError(`a response of ${bytes.length} bytes`);
  const out = { rejectedSpans: 0, errorMessage: '' };
  const r = new ProtoReader(bytes, 0, bytes.length);
  while (r.more) {
    const t = r.varint();
    if (t !== key(1, 2)) {
      r.skip(t % 8);
      continue;
    }
    const p = r.sub();
    while (p.more) {
      const f = p.varint();
      if (f === key(1, 0)) out.rejectedSpans = Number(BigInt.asIntN(64, p.varint64()));
      else if (f === key(2, 2)) out.errorMessage = p.string();
      else p.skip(f % 8);
    }
  }
  return out;
}

const RETRY_INFO_TYPE = 'type.googleapis.com/google.rpc.RetryInfo';
/** A server's retry delay read at most (a longer one is taken as this). */
const MAX_RETRY_DELAY_MS = 600_000;

/**
 * The retry delay a gRPC server put in its status details (`grpc-status-details-bin`: a
 * google.rpc.Status whose details hold a google.rpc.RetryInfo), in ms, or undefined when
 * it gave none. The OTLP specification's gRPC counterpart of HTTP's Retry-After: the
 * exporter waits it, and retries a RESOURCE_EXHAUSTED only when it is there. Bounded (a
 * detail of at most 64 KiB, a delay of at most ten minutes); a malformed detail is none.
 */
export function retryDelayOfStatusDetails(bytes: Uint8Array): number | undefined {
  if (bytes.length > 64 * 1024) return undefined;
  try {
    const status = new ProtoReader(bytes, 0, bytes.length);
    while (status.more) {
      const t = status.varint();
      // Status.details (3): repeated google.protobuf.Any.
      if (t !== key(3, 2)) {
        status.skip(t % 8);
        continue;
      }
      const any = status.sub();
      let type = '';
      let value: ProtoReader | undefined;
      while (any.more) {
        const f = any.varint();
        if (f === key(1, 2)) type = any.string();
        else if (f === key(2, 2)) value = any.sub();
        else any.skip(f % 8);
      }
      if (type !== RETRY_INFO_TYPE || value === undefined) continue;
      let ms = 0;
      while (value.more) {
        const f = value.varint();
        // RetryInfo.retry_delay (1): google.protobuf.Duration { seconds (1), nanos (2) }.
        if (f !== key(1, 2)) {
          value.skip(f % 8);
          continue;
        }
        const d = value.sub();
        while (d.more) {
          const g = d.varint();
          if (g === key(1, 0)) ms += Number(BigInt.asIntN(64, d.varint64())) * 1000;
          else if (g === key(2, 0)) ms += Number(BigInt.asIntN(32, d.varint64())) / 1e6;
          else d.skip(g % 8);
        }
      }
      return Math.min(MAX_RETRY_DELAY_MS, Math.max(0, Math.round(ms)));
    }
  } catch {
    return undefined;
  }
  return undefined;
}

function readResourceSpans(r: ProtoReader): unknown {
  const resource: { attributes: OtlpKeyValue[]; droppedAttributesCount?: number } = { attributes: [] };
  const scopeSpans: unknown[] = [];
  let schemaUrl = '';
  while (r.more) {
    const t = r.varint();
    if (t === key(1, 2)) {
      const rr = r.sub();
      while (rr.more) {
        const rt = rr.varint();
        if (rt === key(1, 2)) resource.attributes.push(readKeyValue(rr.sub()));
        else if (rt === key(2, 0)) {
          const n = rr.varint();
          if (n) resource.droppedAttributesCount = n;
        } else rr.skip(rt % 8);
      }
    } else if (t === key(2, 2)) scopeSpans.push(readScopeSpans(r.sub()));
    else if (t === key(3, 2)) schemaUrl = r.string();
    else r.skip(t % 8);
  }
  return schemaUrl ? { resource, scopeSpans, schemaUrl } : { resource, scopeSpans };
}

function readScopeSpans(r: ProtoReader): unknown {
  const scope: { name: string; version?: string } = { name: '' };
  const spans: unknown[] = [];
  let schemaUrl = '';
  while (r.more) {
    const t = r.varint();
    if (t === key(1, 2)) {
      const sr = r.sub();
      while (sr.more) {
        const st = sr.varint();
        if (st === key(1, 2)) scope.name = sr.string();
        else if (st === key(2, 2)) {
          const version = sr.string();
          if (version) scope.version = version;
        } else sr.skip(st % 8);
      }
    } else if (t === key(2, 2)) spans.push(readSpan(r.sub()));
    else if (t === key(3, 2)) schemaUrl = r.string();
    else r.skip(t % 8);
  }
  return schemaUrl ? { scope, spans, schemaUrl } : { scope, spans };
}

function readSpan(r: ProtoReader): unknown {
  const span: Record<string, unknown> = {};
  let traceId = '';
  let spanId = '';
  let name = '';
  let kind = 0;
  let start = 0n;
  let end = 0n;
  const attributes: OtlpKeyValue[] = [];
  const events: unknown[] = [];
  const links: unknown[] = [];
  let status: { code: number; message?: string } = { code: 0 };
  let flags = 0;
  const counts: Record<string, number> = {};
  while (r.more) {
    const t = r.varint();
    switch (t) {
      case key(1, 2):
        traceId = r.hex();
        break;
      case key(2, 2):
        spanId = r.hex();
        break;
      case key(3, 2):
        span.traceState = r.string();
        break;
      case key(4, 2):
        span.parentSpanId = r.hex();
        break;
      case key(5, 2):
        name = r.string();
        break;
      case key(6, 0):
        kind = r.varint();
        break;
      case key(7, 1):
        start = r.fixed64();
        break;
      case key(8, 1):
        end = r.fixed64();
        break;
      case key(9, 2):
        attributes.push(readKeyValue(r.sub()));
        break;
      case key(10, 0):
        counts.droppedAttributesCount = r.varint();
        break;
      case key(11, 2):
        events.push(readEvent(r.sub()));
        break;
      case key(12, 0):
        counts.droppedEventsCount = r.varint();
        break;
      case key(13, 2):
        links.push(readLink(r.sub()));
        break;
      case key(14, 0):
        counts.droppedLinksCount = r.varint();
        break;
      case key(15, 2):
        status = readStatus(r.sub());
        break;
      case key(16, 5):
        flags = r.fixed32();
        break;
      default:
        r.skip(t % 8);
    }
  }
  const out: Record<string, unknown> = { traceId, spanId };
  if (span.traceState) out.traceState = span.traceState;
  if (span.parentSpanId) out.parentSpanId = span.parentSpanId;
  if (flags) out.flags = flags;
  out.name = name;
  out.kind = kind;
  out.startTimeUnixNano = start.toString();
  out.endTimeUnixNano = end.toString();
  out.attributes = attributes;
  if (counts.droppedAttributesCount) out.droppedAttributesCount = counts.droppedAttributesCount;
  if (events.length) out.events = events;
  if (counts.droppedEventsCount) out.droppedEventsCount = counts.droppedEventsCount;
  if (links.length) out.links = links;
  if (counts.droppedLinksCount) out.droppedLinksCount = counts.droppedLinksCount;
  out.status = status;
  return out;
}

function readEvent(r: ProtoReader): unknown {
  let time = 0n;
  let name = '';
  const attributes: OtlpKeyValue[] = [];
  let dropped = 0;
  while (r.more) {
    const t = r.varint();
    if (t === key(1, 1)) time = r.fixed64();
    else if (t === key(2, 2)) name = r.string();
    else if (t === key(3, 2)) attributes.push(readKeyValue(r.sub()));
    else if (t === key(4, 0)) dropped = r.varint();
    else r.skip(t % 8);
  }
  const event: Mutable<{ timeUnixNano: string; name: string; attributes: OtlpKeyValue[]; droppedAttributesCount?: number }> = {
    timeUnixNano: time.toString(),
    name,
    attributes,
  };
  if (dropped) event.droppedAttributesCount = dropped;
  return event;
}

function readLink(r: ProtoReader): unknown {
  const link: Record<string, unknown> = { traceId: '', spanId: '' };
  const attributes: OtlpKeyValue[] = [];
  let dropped = 0;
  let flags = 0;
  while (r.more) {
    const t = r.varint();
    if (t === key(1, 2)) link.traceId = r.hex();
    else if (t === key(2, 2)) link.spanId = r.hex();
    else if (t === key(3, 2)) {
      const traceState = r.string();
      if (traceState) link.traceState = traceState;
    } else if (t === key(4, 2)) attributes.push(readKeyValue(r.sub()));
    else if (t === key(5, 0)) dropped = r.varint();
    else if (t === key(6, 5)) flags = r.fixed32();
    else r.skip(t % 8);
  }
  link.attributes = attributes;
  if (dropped) link.droppedAttributesCount = dropped;
  if (flags) link.flags = flags;
  return link;
}

function readStatus(r: ProtoReader): { code: number; message?: string } {
  let code = 0;
  let message = '';
  while (r.more) {
    const t = r.varint();
    if (t === key(2, 2)) message = r.string();
    else if (t === key(3, 0)) code = r.varint();
    else r.skip(t % 8);
  }
  return message ? { code, message } : { code };
}
