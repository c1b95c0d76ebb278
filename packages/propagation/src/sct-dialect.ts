import { TagLimits } from '@meshlet/core';
import { encodeJsonEntries, readJsonHeader } from './json-header.js';
import {
  type DialectDroppedTag,
  emptyExtract,
  type HeaderBag,
  headerValue,
  NOTHING_EXTRACTED,
  type ScopeLookup,
  type TagDialect,
  warning,
} from './tag-dialect.js';
import { takeTag } from './take-tag.js';

/** Spring Cloud Tencent's transitive custom metadata: URL-encoded JSON object `{"key": "value"}`. */
export const SCT_METADATA_HEADER = 'sct-custom-metadata';
/** Spring Cloud Tencent's one-hop ("disposable") custom metadata, same encoding. */
export const SCT_DISPOSABLE_HEADER = 'sct-custom-disposable-metadata';

/** The Spring Cloud Tencent dialect: `SCT-CUSTOM-METADATA` and `SCT-CUSTOM-DISPOSABLE-METADATA`. */
export const sctDialect: TagDialect = {
  name: 'sct',
  extract(headers: HeaderBag) {
    if (!headerValue(headers, SCT_DISPOSABLE_HEADER) && !headerValue(headers, SCT_METADATA_HEADER)) return NOTHING_EXTRACTED;
    const out = emptyExtract();
    // Disposable first: a key in both maps is transitive.
    for (const [name, once] of [
      [SCT_DISPOSABLE_HEADER, true],
      [SCT_METADATA_HEADER, false],
    ] as const) {
      const raw = headerValue(headers, name);
      if (!raw) continue;
      const parsed = readJsonHeader(raw);
      if (!parsed.ok) {
        out.warnings.push(warning(name, parsed.reason));
        continue;
      }
      if (typeof parsed.value !== 'object' || parsed.value === null || Array.isArray(parsed.value)) {
        out.warnings.push(warning(name, 'not a JSON object'));
        continue;
      }
      let bad = 0;
      for (const [k, v] of Object.entries(parsed.value as Record<string, unknown>)) {
        // Jackson reads the map as Map<String, String>, coercing numbers and booleans.
        if (typeof v === 'string') takeTag(out, name, k, v, once);
        else if (typeof v === 'number' || typeof v === 'boolean') takeTag(out, name, k, String(v), once);
        else bad++;
      }
      if (bad > 0) out.warnings.push(warning(name, `${bad} values are not strings`));
    }
    return out;
  },
  emit(tags: Iterable<readonly [string, string]>, scope: ScopeLookup) {
    const transitive: { key: string; json: string }[] = [];
    const once: { key: string; json: string }[] = [];
    for (const [k, v] of tags) {
      const s = scope(k);
      if (s === 'local') continue;
      (s === 'transitive' ? transitive : once).push({ key: k, json: `${JSON.stringify(k)}:${JSON.stringify(v)}` });
    }
    const headers: Record<string, string> = {};
    const dropped: DialectDroppedTag[] = [];
    for (const [name, entries] of [
      [SCT_METADATA_HEADER, transitive],
      [SCT_DISPOSABLE_HEADER, once],
    ] as const) {
      if (entries.length === 0) continue;
      const { value, left } = encodeJsonEntries('{', entries, TagLimits.maxHeaderBytes);
      for (const { key, reason } of left) dropped.push({ key, reason, header: name });
      if (left.length < entries.length) headers[name] = value;
    }
    return { headers, dropped };
  },
};
