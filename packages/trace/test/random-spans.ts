import { randomBytes } from 'node:crypto';
import { type Attributes, type AttributeValue, type SpanContext, SpanStatusCode, TraceFlags } from '@opentelemetry/api';
import { TraceState } from '@opentelemetry/core';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';
import { ClientSpanRecord, type RecordDeps } from '../src/client-span-record.js';
import { keyValuesJson } from '../src/otlp-json.js';

// Random span records for the encoders' equality tests (span-bytes, otlp-proto).

// A seeded generator, so that a failure is reproducible from the seed printed with it.
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ASCII, escapes, controls, 2- and 3-byte characters, a surrogate pair, lone surrogates.
const PIECES = [
  'a',
  'Z',
  '9',
  '/',
  ' ',
  '"',
  '\\',
  '\n',
  '\t',
  '\u0001',
  '\u007f',
  'é',
  'ß',
  '€',
  '\u2028',
  '😀',
  '\ud800',
  '\udfff',
  'x\ud83d',
];

export function text(r: () => number, max: number): string {
  let s = '';
  const n = Math.floor(r() * max);
  for (let i = 0; i < n; i++) s += PIECES[Math.floor(r() * PIECES.length)];
  return s;
}

export function value(r: () => number, depth = 0): AttributeValue {
  switch (Math.floor(r() * (depth === 0 ? 8 : 6))) {
    case 0:
      return text(r, 8);
    case 1:
      return text(r, 90); // past the kept-fragment length sometimes
    case 2:
      return Math.floor((r() - 0.3) * 10 ** Math.floor(r() * 12));
    case 3:
      return (r() - 0.5) * 1e6;
    case 4:
      return r() < 0.5;
    case 5:
      return 200 + Math.floor(r() * 400);
    default: {
      const pick = Math.floor(r() * 3);
      const xs = Array.from({ length: Math.floor(r() * 4) }, () =>
        r() < 0.2 ? null : pick === 0 ? text(r, 6) : pick === 1 ? Math.floor(r() * 1000) : r() < 0.5,
      );
      return xs as AttributeValue;
    }
  }
}

const KEYS = ['http.request.method', 'server.address', 'url.full', 'k', 'é.key', 'q"uote', 'late.one', 'x\ud800'];
export const key = (r: () => number): string => (r() < 0.8 ? (KEYS[Math.floor(r() * KEYS.length)] as string) : `k${text(r, 4)}`);
export const hex = (bytes: number): string => randomBytes(bytes).toString('hex');

/** The made JSON's UTF-8, cut at random places into pieces (as a maker's cached fragments are). */
function pieces(r: () => number, json: string): Uint8Array[] {
  const bytes = Buffer.from(json, 'utf8');
  const out: Uint8Array[] = [];
  let at = 0;
  while (at < bytes.length) {
    const end = r() < 0.5 ? bytes.length : at + 1 + Math.floor(r() * (bytes.length - at));
    out.push(bytes.subarray(at, end));
    at = end;
  }
  return out;
}

/** A random span record; with `links`, some get links (other random draws follow, so a seed gives other records). */
export function randomRecord(r: () => number, deps: RecordDeps, links = false): ReadableSpan {
  const attributes: Attributes = {};
  for (let i = Math.floor(r() * 8); i > 0; i--) attributes[key(r)] = value(r);
  const json = keyValuesJson(attributes);
  const traceState = r() < 0.2 ? new TraceState('congo=t61rcWkgMzE,rojo=00f067aa0ba902b7') : undefined;
  const context: SpanContext = { traceId: hex(16), spanId: hex(8), traceFlags: r() < 0.9 ? TraceFlags.SAMPLED : TraceFlags.NONE };
  if (traceState) context.traceState = traceState;
  const parent: SpanContext | undefined =
    r() < 0.6 ? { traceId: context.traceId, spanId: hex(8), traceFlags: TraceFlags.SAMPLED, isRemote: r() < 0.5 } : undefined;
  const name = r() < 0.7 ? 'GET' : text(r, 10);
  // Most records carry their made JSON and its bytes; some only the string (the generic path), some neither.
  const made = r() < 0.8;
  // Half of them on attributes shared with other records (frozen, as the interceptor's), the rest their own.
  const shared = r() < 0.5;
  const span = new ClientSpanRecord(
    deps,
    name,
    context,
    parent,
    shared ? Object.freeze(attributes) : attributes,
    made ? json : undefined,
    r() < 0.9,
    made ? pieces(r, json) : undefined,
    shared,
  );
  // Late keys: new ones, one set again, an index-like one.
  for (let i = Math.floor(r() * 4); i > 0; i--) span.setAttribute(r() < 0.1 ? String(Math.floor(r() * 9)) : key(r), value(r));
  if (r() < 0.2) span.addEvent(text(r, 6), r() < 0.5 ? { [key(r)]: value(r) } : undefined);
  if (links && r() < 0.15) {
    const linked: SpanContext = { traceId: hex(16), spanId: hex(8), traceFlags: TraceFlags.SAMPLED, isRemote: r() < 0.5 };
    if (r() < 0.3) linked.traceState = new TraceState('vendor=x');
    span.addLink({ context: linked, ...(r() < 0.5 ? { attributes: { [key(r)]: value(r) } } : {}) });
  }
  if (r() < 0.1) span.recordException(new Error(text(r, 12)));
  if (r() < 0.3) span.setStatus(r() < 0.7 ? { code: SpanStatusCode.ERROR, message: text(r, 20) } : { code: SpanStatusCode.ERROR });
  else if (r() < 0.1) span.setStatus({ code: SpanStatusCode.OK });
  const end = r();
  if (end < 0.7) span.end();
  else if (end < 0.8) span.end(performance.now() + 5);
  else if (end < 0.9) span.end(new Date(Date.now() + 1234));
  else span.end([span.startTime[0] + 1, Math.floor(r() * 1e9)]);
  return span;
}
