import { BadTagHeaderError, decodeTagPairs, decodeTags, encodeTags, TAG_HEADER, TagLimits } from '@meshlet/core';
import { emptyExtract, type HeaderBag, headerValue, NOTHING_EXTRACTED, type ScopeLookup, type TagDialect, warning } from './tag-dialect.js';
import { takeTag } from './take-tag.js';

/**
 * Header carrying one-hop tags between Meshlet services, in the encoding of core's
 * `x-meshlet-tags` (comma-separated percent-encoded `key=value`). A separate header rather
 * than a marker inside `x-meshlet-tags`, so that an older Meshlet hop that does not know
 * it simply ignores it: the tags are lost one hop early, never carried too far.
 */
export const ONCE_TAG_HEADER = 'x-meshlet-tags-once';

/** Puts one of the dialect's headers into `out`; a malformed header is dropped whole with a warning. */
function read(out: ReturnType<typeof emptyExtract>, name: string, raw: string, once: boolean): void {
  try {
    const pairs = decodeTagPairs(raw, name);
    if (pairs.length <= 2 * TagLimits.maxTags) {
      // No more entries than the count bound: the tags go straight into `out`, under the
      // bounds decodeTags would apply, without a Map for the header.
      for (let i = 0; i < pairs.length; i += 2) takeTag(out, name, pairs[i] as string, pairs[i + 1] as string, once);
      return;
    }
    // More: decodeTags counts the header's own tags against the bound first.
    const { tags, dropped } = decodeTags(raw, name);
    for (const d of dropped) out.dropped.push({ ...d, header: name });
    for (const [k, v] of tags) takeTag(out, name, k, v, once, true);
  } catch (err) {
    if (!(err instanceof BadTagHeaderError)) throw err;
    out.warnings.push(warning(name, err.message));
  }
}

/** Meshlet's own dialect: core's `x-meshlet-tags` (transitive) plus `x-meshlet-tags-once` (one-hop). */
export const meshletDialect: TagDialect = {
  name: 'meshlet',
  extract(headers: HeaderBag) {
    const onceRaw = headerValue(headers, ONCE_TAG_HEADER);
    const raw = headerValue(headers, TAG_HEADER);
    if (!onceRaw && !raw) return NOTHING_EXTRACTED;
    const out = emptyExtract();
    // One-hop first: a key in both is transitive.
    if (onceRaw) read(out, ONCE_TAG_HEADER, onceRaw, true);
    if (raw) read(out, TAG_HEADER, raw, false);
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
