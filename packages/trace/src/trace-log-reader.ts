import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import type { OtlpAnyValue, OtlpKeyValue, OtlpTraceRequest } from './otlp-json.js';

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
  const req = JSON.parse(line) as OtlpTraceRequest;
  const out: LoggedSpan[] = [];
  for (const rs of req.resourceSpans ?? []) {
    const service = String(record(rs.resource?.attributes)['service.name'] ?? 'unknown');
    for (const ss of rs.scopeSpans ?? []) {
      for (const s of ss.spans ?? []) {
        const start = BigInt(s.startTimeUnixNano);
        out.push({
          traceId: s.traceId,
          spanId: s.spanId,
          parentSpanId: s.parentSpanId || undefined,
          name: s.name,
          kind: s.kind,
          service,
          startTimeUnixNano: start,
          durationMs: Number(BigInt(s.endTimeUnixNano) - start) / 1e6,
          statusCode: s.status?.code ?? 0,
          attributes: record(s.attributes),
        });
      }
    }
  }
  return out;
}

/** Reads trace-log files (JSON Lines). A line that is not valid OTLP/JSON is counted in `badLines` and skipped. */
export async function readTraceLog(paths: readonly string[]): Promise<{ spans: LoggedSpan[]; badLines: number }> {
  const spans: LoggedSpan[] = [];
  let badLines = 0;
  for (const path of paths) {
    const lines = createInterface({ input: createReadStream(path), crlfDelay: Number.POSITIVE_INFINITY });
    for await (const line of lines) {
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
