import type { Attributes, AttributeValue, HrTime } from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';

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

/** HrTime as unsigned nanoseconds since the epoch, in decimal. */
export function hrTimeToNanoString([seconds, nanos]: HrTime): string {
  if (seconds === 0) return String(nanos);
  return `${seconds}${String(nanos).padStart(9, '0')}`;
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

/** One trace-log line (without the newline): V8's JSON.stringify over the object form measured faster than building the string by hand. */
export function encodeTraceLine(spans: readonly ReadableSpan[]): string {
  return JSON.stringify(encodeTraceRequest(spans));
}
