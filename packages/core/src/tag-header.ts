import { BadTagHeaderError } from './errors.js';
import { type DroppedTag, putTag, TagLimits } from './tags.js';

/**
 * Header that carries custom tags from hop to hop.
 *
 * Encoding (documented in the core README): comma-separated `key=value` entries, each key
 * and value percent-encoded as by `encodeURIComponent` (UTF-8), so commas, `=`, quotes,
 * braces and non-ASCII survive. Whitespace around entries is ignored; a later duplicate
 * key wins. Example: `user-tier=vip,ua.family=Chrome,note=a%2Cb`.
 */
export const TAG_HEADER = 'x-meshlet-tags';

/** Header that carries the calling service's identity (service, version, namespace, instance). */
export const CALLER_HEADER = 'x-meshlet-caller';

export interface EncodedTags {
  /** The header value; empty when there is nothing to send. */
  readonly header: string;
  readonly dropped: readonly DroppedTag[];
}

/** Encodes tags into one header value, dropping the tags that would push it over the header bound. */
export function encodeTags(tags: Iterable<readonly [string, string]>): EncodedTags {
  let header = '';
  const dropped: DroppedTag[] = [];
  let count = 0;
  for (const [key, value] of tags) {
    if (count >= TagLimits.maxTags) {
      dropped.push({ key, reason: 'too-many-tags' });
      continue;
    }
    const entry = `${encodeURIComponent(key)}=${encodeURIComponent(value)}`;
    // Encoded entries are ASCII, so string length is the byte length.
    const next = header.length === 0 ? entry.length : header.length + 1 + entry.length;
    if (next > TagLimits.maxHeaderBytes) {
      dropped.push({ key, reason: 'header-too-long' });
      continue;
    }
    header = header.length === 0 ? entry : `${header},${entry}`;
    count++;
  }
  return { header, dropped };
}

export interface DecodedTags {
  readonly tags: Map<string, string>;
  readonly dropped: readonly DroppedTag[];
}

/**
 * Decodes a tag header. A structurally malformed header (bad percent-encoding, an entry
 * with no `=`, an empty key, over the header bound) is rejected whole with a
 * BadTagHeaderError; single tags over a per-tag bound are dropped and reported.
 * Nothing in the header is evaluated: it is split and percent-decoded, no more.
 */
export function decodeTags(header: string, headerName = TAG_HEADER): DecodedTags {
  const pairs = decodeTagPairs(header, headerName);
  const tags = new Map<string, string>();
  const dropped: DroppedTag[] = [];
  for (let i = 0; i < pairs.length; i += 2) {
    const key = pairs[i] as string;
    const reason = putTag(tags, key, pairs[i + 1] as string);
    if (reason) dropped.push({ key: key.slice(0, TagLimits.maxKeyBytes), reason });
  }
  return { tags, dropped };
}

/**
 * A tag header's entries as they come, in order, flat: `[key0, value0, key1, value1, …]`,
 * split and percent-decoded as `decodeTags` does (whitespace around entries, keys and values
 * ignored; a malformed header rejected whole with a BadTagHeaderError), but neither checked
 * against the per-tag bounds nor merged: a repeated key is there twice. For readers that put
 * the tags somewhere of their own (`putTag` gives them decodeTags's bounds) without a Map
 * per header. Walks the header by index: no string is made for an entry, and a key or value
 * without a `%` is not decoded.
 */
export function decodeTagPairs(header: string, headerName = TAG_HEADER): string[] {
  if (header.length > TagLimits.maxHeaderBytes) {
    throw new BadTagHeaderError(headerName, `longer than ${TagLimits.maxHeaderBytes} bytes (${header.length})`);
  }
  const n = header.length;
  // Sized for the entries there are (commas + 1), rather than grown by push.
  let entries = 1;
  for (let c = header.indexOf(','); c >= 0; c = header.indexOf(',', c + 1)) entries++;
  const pairs: string[] = new Array(entries * 2);
  let count = 0;
  let next = 0;
  // The next `%` at or after where the entries have got to: a key or value before it needs no decoding.
  let percent = header.indexOf('%');
  while (next <= n) {
    let end = header.indexOf(',', next);
    if (end < 0) end = n;
    // The entry, trimmed as String.prototype.trim does.
    let s = next;
    let e = end;
    next = end + 1;
    while (s < e && isSpace(header.charCodeAt(s))) s++;
    while (e > s && isSpace(header.charCodeAt(e - 1))) e--;
    if (s === e) continue;
    const eq = header.indexOf('=', s);
    if (eq <= s || eq >= e) throw new BadTagHeaderError(headerName, `entry "${header.slice(s, e).slice(0, 40)}" is not key=value`);
    let keyEnd = eq;
    while (keyEnd > s && isSpace(header.charCodeAt(keyEnd - 1))) keyEnd--;
    let valueStart = eq + 1;
    while (valueStart < e && isSpace(header.charCodeAt(valueStart))) valueStart++;
    if (percent >= 0 && percent < s) percent = header.indexOf('%', s);
    try {
      const key = header.slice(s, keyEnd);
      const value = header.slice(valueStart, e);
      // A `%` in the entry: decodeURIComponent returns a string without one unchanged.
      pairs[count] = percent >= 0 && percent < keyEnd ? decodeURIComponent(key) : key;
      pairs[count + 1] = percent >= 0 && percent < e ? decodeURIComponent(value) : value;
      count += 2;
    } catch {
      throw new BadTagHeaderError(headerName, `entry "${header.slice(s, e).slice(0, 40)}" is not valid percent-encoding`);
    }
  }
  pairs.length = count;
  return pairs;
}

/** The white space String.prototype.trim removes: ECMAScript's WhiteSpace and LineTerminator. */
function isSpace(c: number): boolean {
  return (
    c === 0x20 ||
    (c >= 0x09 && c <= 0x0d) ||
    c === 0xa0 ||
    c === 0x1680 ||
    (c >= 0x2000 && c <= 0x200a) ||
    c === 0x2028 ||
    c === 0x2029 ||
    c === 0x202f ||
    c === 0x205f ||
    c === 0x3000 ||
    c === 0xfeff
  );
}
