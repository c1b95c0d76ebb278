import { TagLimits } from '@meshlet/core';
import { formDecode, formEncode } from './form-encoding.js';
import { oversized } from './take-tag.js';

export type JsonHeader = { ok: true; value: unknown } | { ok: false; reason: string };

/**
 * Reads a URL-encoded JSON header (TSF, Spring Cloud Tencent). Raw JSON is accepted too,
 * as tsf-go accepts it (it tries JSON first, then unescapes). Refused whole when over
 * core's header bound, not valid percent-encoding, or not valid JSON.
 */
export function readJsonHeader(raw: string): JsonHeader {
  if (oversized(raw)) return { ok: false, reason: `longer than the header bound (${raw.length} characters)` };
  const trimmed = raw.trim();
  let text: string | undefined = trimmed;
  if (!trimmed.startsWith('[') && !trimmed.startsWith('{')) {
    text = formDecode(trimmed);
    if (text === undefined) return { ok: false, reason: 'not valid percent-encoding' };
  }
  try {
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch {
    return { ok: false, reason: 'not valid JSON' };
  }
}

/**
 * Builds a URL-encoded JSON list or object from pre-serialised entries, leaving out the
 * entries over core's tag count and those that would push it over `maxBytes`. Percent-encoding works character by
 * character, so the encoding of the whole is the concatenation of the encoded parts.
 */
export function encodeJsonEntries(
  open: '[' | '{',
  entries: readonly { readonly key: string; readonly json: string }[],
  maxBytes: number,
): { value: string; left: { key: string; reason: 'too-many-tags' | 'header-too-long' }[] } {
  const close = open === '[' ? '%5D' : '%7D';
  const comma = '%2C';
  let body = '';
  const left: { key: string; reason: 'too-many-tags' | 'header-too-long' }[] = [];
  const frame = 3 + close.length;
  let count = 0;
  for (const e of entries) {
    if (count >= TagLimits.maxTags) {
      left.push({ key: e.key, reason: 'too-many-tags' });
      continue;
    }
    const enc = formEncode(e.json);
    const next = body.length + (body ? comma.length : 0) + enc.length + frame;
    if (next > maxBytes) {
      left.push({ key: e.key, reason: 'header-too-long' });
      continue;
    }
    body = body ? `${body}${comma}${enc}` : enc;
    count++;
  }
  return { value: `${open === '[' ? '%5B' : '%7B'}${body}${close}`, left };
}
