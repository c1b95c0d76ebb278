import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import type { OtlpAnyValue, OtlpKeyValue, OtlpTraceRequest } from './otlp-json.js';
import { decodeTraceProto, MAX_PROTO_REQUEST_BYTES, ProtoDecodeError } from './otlp-proto.js';

export type LoggedAttributeValue = string | number | boolean | readonly LoggedAttributeValue[];

/** A span as read back from a trace log, flattened with its resource's service name. */
export interface LoggedSpan {
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId: string | undefined;
  readonly name: string;
  /** OTLP kind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer. */
  readonly kind: number;
  /** `service.name` of the resource that produced it. */
  readonly service: string;
  readonly startTimeUnixNano: bigint;
  readonly durationMs: number;
  /** 0 unset, 1 ok, 2 error. */
  readonly statusCode: number;
  /** The status description (an error's message, e.g. routing's NoInstanceError: which groups were empty); absent when none. */
  readonly statusMessage?: string;
  readonly attributes: Readonly<Record<string, LoggedAttributeValue>>;
}

function value(v: OtlpAnyValue): LoggedAttributeValue {
  if ('stringValue' in v) return v.stringValue;
  if ('boolValue' in v) return v.boolValue;
  if ('intValue' in v) return Number(v.intValue);
  if ('doubleValue' in v) return v.doubleValue;
  if ('arrayValue' in v) return (v.arrayValue.values ?? []).map(value);
  return '';
}

function record(kvs: readonly OtlpKeyValue[] | undefined): Record<string, LoggedAttributeValue> {
  const out: Record<string, LoggedAttributeValue> = {};
  for (const kv of kvs ?? []) out[kv.key] = value(kv.value);
  return out;
}

/** The spans of one trace-log line (an OTLP/JSON ExportTraceServiceRequest). */
export function decodeTraceRequest(line: string): LoggedSpan[] {
  return spansOf(JSON.parse(line) as OtlpTraceRequest);
}

/**
 * A span field of the type OTLP gives it. A trace log is input (a file anyone could have
 * written): a field of another type makes its line a bad one (counted in `badLines`), not
 * a TypeError in whatever reads the span (a number as a status message stopped `meshlet explain`).
 */
function required<T extends 'string' | 'number'>(v: unknown, type: T): T extends 'string' ? string : number {
  if (typeof v !== type) throw new TypeError(`a span field is not a ${type}`);
  return v as T extends 'string' ? string : number;
}

function optional<T extends 'string' | 'number'>(v: unknown, type: T): (T extends 'string' ? string : number) | undefined {
  return v === undefined || v === null ? undefined : required(v, type);
}

/** The spans of one ExportTraceServiceRequest, in its object form (parsed OTLP/JSON, or decoded protobuf). */
function spansOf(req: OtlpTraceRequest): LoggedSpan[] {
  const out: LoggedSpan[] = [];
  for (const rs of req.resourceSpans ?? []) {
    const service = String(record(rs.resource?.attributes)['service.name'] ?? 'unknown');
    for (const ss of rs.scopeSpans ?? []) {
      for (const s of ss.spans ?? []) {
        const start = BigInt(s.startTimeUnixNano);
        const message = optional(s.status?.message, 'string');
        out.push({
          traceId: required(s.traceId, 'string'),
          spanId: required(s.spanId, 'string'),
          parentSpanId: optional(s.parentSpanId, 'string') || undefined,
          name: required(s.name, 'string'),
          kind: required(s.kind, 'number'),
          service,
          startTimeUnixNano: start,
          durationMs: Number(BigInt(s.endTimeUnixNano) - start) / 1e6,
          statusCode: optional(s.status?.code, 'number') ?? 0,
          ...(message ? { statusMessage: message } : {}),
          attributes: record(s.attributes),
        });
      }
    }
  }
  return out;
}

/**
 * Reads trace-log files, each in either format (`TraceLogOptions.format`): JSON Lines, or
 * size-prefixed OTLP protobuf requests (a file whose first byte is not `{` or white space).
 * A line that is not valid OTLP/JSON, or a protobuf request that does not decode, is
 * counted in `badLines` and skipped; a protobuf file cut short (or whose next size is over
 * `MAX_PROTO_REQUEST_BYTES`) is counted once and read no further, as no next request can
 * be found after it.
 */
export async function readTraceLog(paths: readonly string[]): Promise<{ spans: LoggedSpan[]; badLines: number }> {
  const spans: LoggedSpan[] = [];
  let badLines = 0;
  for (const path of paths) {
    if (await isProto(path)) {
      badLines += await readProtoLog(path, spans);
      continue;
    }
    for await (const line of jsonLines(path)) {
      if (line === undefined) {
        badLines++;
        continue;
      }
      if (line.trim() === '') continue;
      try {
        for (const s of decodeTraceRequest(line)) spans.push(s);
      } catch {
        badLines++;
      }
    }
  }
  return { spans, badLines };
}

/**
 * A JSON Lines file's lines, split at `\n` only: JSON text may hold U+2028 and U+2029
 * unescaped (JSON.stringify leaves them), which readline would take for line ends. A line
 * over `MAX_PROTO_REQUEST_BYTES` is given as undefined (counted bad) and not held.
 */
async function* jsonLines(path: string): AsyncGenerator<string | undefined> {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let tooLong = false;
  for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024 }) as AsyncIterable<Buffer>) {
    let from = 0;
    for (let nl = chunk.indexOf(0x0a); nl !== -1; nl = chunk.indexOf(0x0a, from)) {
      if (tooLong) yield undefined;
      else {
        const tail = chunk.subarray(from, nl);
        yield (pending.length === 0 ? tail : Buffer.concat([...pending, tail])).toString('utf8');
      }
      pending = [];
      pendingBytes = 0;
      tooLong = false;
      from = nl + 1;
    }
    if (from < chunk.length && !tooLong) {
      pending.push(chunk.subarray(from));
      pendingBytes += chunk.length - from;
      if (pendingBytes > MAX_PROTO_REQUEST_BYTES) {
        tooLong = true;
        pending = [];
      }
    }
  }
  if (tooLong) yield undefined;
  else if (pending.length > 0) yield Buffer.concat(pending).toString('utf8');
}

/** Whether a trace-log file holds protobuf: its first byte is neither `{` nor JSON's white space (an empty file is JSON). */
async function isProto(path: string): Promise<boolean> {
  const file = await open(path, 'r');
  try {
    const first = Buffer.alloc(1);
    const { bytesRead } = await file.read(first, 0, 1, 0);
    const b = first[0] as number;
    return bytesRead === 1 && b !== 0x7b && b !== 0x20 && b !== 0x0a && b !== 0x0d && b !== 0x09;
  } finally {
    await file.close();
  }
}

/** Reads a protobuf trace log's requests into `spans`, a request at a time; answers the requests counted bad. */
async function readProtoLog(path: string, spans: LoggedSpan[]): Promise<number> {
  let bad = 0;
  let pending: Buffer = Buffer.alloc(0);
  for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024 })) {
    pending = pending.length === 0 ? (chunk as Buffer) : Buffer.concat([pending, chunk as Buffer]);
    let at = 0;
    while (pending.length - at >= 4) {
      const n = pending.readUInt32BE(at);
      if (n > MAX_PROTO_REQUEST_BYTES) return bad + 1;
      if (pending.length - at - 4 < n) break;
      try {
        for (const s of spansOf(decodeTraceProto(pending.subarray(at + 4, at + 4 + n)))) spans.push(s);
      } catch (error) {
        if (!(error instanceof ProtoDecodeError)) throw error;
        bad++;
      }
      at += 4 + n;
    }
    pending = pending.subarray(at);
  }
  return pending.length > 0 ? bad + 1 : bad;
}
