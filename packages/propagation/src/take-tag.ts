import { putTag, type TagDropReason, TagLimits } from '@meshlet/core';
import { type emptyExtract, NONE_ONCE } from './tag-dialect.js';

type Extracting = ReturnType<typeof emptyExtract>;

/**
 * Puts one extracted tag under core's bounds, recording a drop when it is refused.
 * `checked`: the tag already passed core's per-tag checks (decodeTags did them), so only
 * the count bound is left to test.
 */
export function takeTag(out: Extracting, header: string, key: string, value: string, once: boolean, checked = false): void {
  const reason = checked ? putChecked(out.tags, key, value) : putTag(out.tags, key, value);
  if (reason) {
    out.dropped.push({ key: key.slice(0, TagLimits.maxKeyBytes), reason, header });
    return;
  }
  if (once) {
    // The shared empty set until the result's first one-hop tag.
    if (out.arrivedOnce === NONE_ONCE) out.arrivedOnce = new Set();
    out.arrivedOnce.add(key);
  } else out.arrivedOnce.delete(key);
}

/** True when a header value is over core's header bound; such a header is refused whole. */
export function oversized(value: string): boolean {
  // UTF-16 length undercounts UTF-8 bytes; the bound is on bytes.
  return value.length > TagLimits.maxHeaderBytes || Buffer.byteLength(value, 'utf8') > TagLimits.maxHeaderBytes;
}

/** putTag for a tag that already passed checkTag: only the count bound is tested. */
export function putChecked(tags: Map<string, string>, key: string, value: string): TagDropReason | undefined {
  if (!tags.has(key) && tags.size >= TagLimits.maxTags) return 'too-many-tags';
  tags.set(key, value);
  return undefined;
}
