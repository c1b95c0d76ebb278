import { BadTagHeaderError, decodeTags, encodeTags, TAG_HEADER } from '@meshlet/core';
import { emptyExtract, type HeaderBag, headerValue, NOTHING_EXTRACTED, type ScopeLookup, type TagDialect, warning } from './tag-dialect.js';
import { takeTag } from './take-tag.js';

/**
 * Header carrying one-hop tags between Meshlet services, in the encoding of core's
 * `x-meshlet-tags` (comma-separated percent-encoded `key=value`). A separate header rather
 * than a marker inside `x-meshlet-tags`, so that an older Meshlet hop that does not know
 * it simply ignores it: the tags are lost one hop early, never carried too far.
 */
export const ONCE_TAG_HEADER = 'x-meshlet-tags-once';

/** Meshlet's own dialect: core's `x-meshlet-tags` (transitive) plus `x-meshlet-tags-once` (one-hop). */
export const meshletDialect: TagDialect = {
  name: 'meshlet',
  extract(headers: HeaderBag) {
    if (!headerValue(headers, ONCE_TAG_HEADER) && !headerValue(headers, TAG_HEADER)) return NOTHING_EXTRACTED;
    const out = emptyExtract();
    // One-hop first: a key in both is transitive.
    for (const [name, once] of [
      [ONCE_TAG_HEADER, true],
      [TAG_HEADER, false],
    ] as const) {
      const raw = headerValue(headers, name);
      if (raw === undefined || raw === '') continue;
      try {
        const { tags, dropped } = decodeTags(raw, name);
        for (const d of dropped) out.dropped.push({ ...d, header: name });
        for (const [k, v] of tags) takeTag(out, name, k, v, once, true);
      } catch (err) {
        if (!(err instanceof BadTagHeaderError)) throw err;
        out.warnings.push(warning(name, err.message));
      }
    }
    return out;
  },
  emit(tags: Iterable<readonly [string, string]>, scope: ScopeLookup) {
    const transitive: [string, string][] = [];
    const once: [string, string][] = [];
    for (const [k, v] of tags) {
      const s = scope(k);
      if (s === 'transitive') transitive.push([k, v]);
      else if (s === 'one-hop') once.push([k, v]);
    }
    const headers: Record<string, string> = {};
    const dropped = [];
    for (const [name, list] of [
      [TAG_HEADER, transitive],
      [ONCE_TAG_HEADER, once],
    ] as const) {
      if (list.length === 0) continue;
      const encoded = encodeTags(list);
      for (const d of encoded.dropped) dropped.push({ ...d, header: name });
      if (encoded.header) headers[name] = encoded.header;
    }
    return { headers, dropped };
  },
};
