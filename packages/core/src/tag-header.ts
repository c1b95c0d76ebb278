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
  const tags = new Map<string, string>();
  const dropped: DroppedTag[] = [];
  if (header.length > TagLimits.maxHeaderBytes) {
    throw new BadTagHeaderError(headerName, `longer than ${TagLimits.maxHeaderBytes} bytes (${header.length})`);
  }
  for (const raw of header.split(',')) {
    const entry = raw.trim();
    if (entry.length === 0) continue;
    const eq = entry.indexOf('=');
    if (eq <= 0) throw new BadTagHeaderError(headerName, `entry "${entry.slice(0, 40)}" is not key=value`);
    let key: string;
    let value: string;
    try {
      key = decodeURIComponent(entry.slice(0, eq).trim());
      value = decodeURIComponent(entry.slice(eq + 1).trim());
    } catch {
      throw new BadTagHeaderError(headerName, `entry "${entry.slice(0, 40)}" is not valid percent-encoding`);
    }
    const reason = putTag(tags, key, value);
    if (reason) dropped.push({ key: key.slice(0, TagLimits.maxKeyBytes), reason });
  }
  return { tags, dropped };
}
