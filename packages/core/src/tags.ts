/**
 * Tags are string key/value pairs that describe a request (who is calling, which user
 * tier, which browser). They steer routing, limits and auth, and custom tags travel
 * with the request to every downstream hop. Every bound here is enforced: a tag over a
 * bound is dropped with a warning, never an exception or a 500.
 */
import { hasControlCharacter } from './option-checks.js';
export const TagLimits = {
  /** Most tags one request may carry. */
  maxTags: 64,
  /** Longest key, in UTF-8 bytes. */
  maxKeyBytes: 128,
  /** Longest value, in UTF-8 bytes. */
  maxValueBytes: 512,
  /** Longest encoded tag header, in bytes. */
  maxHeaderBytes: 8 * 1024,
} as const;

/** Why a tag was not taken. */
export type TagDropReason =
  | 'too-many-tags'
  | 'empty-key'
  | 'key-too-long'
  | 'value-too-long'
  | 'control-character'
  | 'malformed-unicode'
  | 'header-too-long';

export interface DroppedTag {
  readonly key: string;
  readonly reason: TagDropReason;
}

/** System tags: computed by Meshlet for every request, readable by rules, never propagated as custom tags. */
export const SystemTag = {
  sourceService: 'source.service',
  sourceVersion: 'source.version',
  sourceNamespace: 'source.namespace',
  sourceInstance: 'source.instance',
  destinationService: 'destination.service',
  requestMethod: 'request.method',
  requestPath: 'request.path',
} as const;
export type SystemTagName = (typeof SystemTag)[keyof typeof SystemTag];

// A surrogate without its pair: not well-formed UTF-16 (String.prototype.isWellFormed).
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
/** True when `s` fits in `max` UTF-8 bytes. A UTF-16 unit is at most 3 bytes, so short strings need no count. */
const fits = (s: string, max: number) => s.length * 3 <= max || Buffer.byteLength(s, 'utf8') <= max;

/** Checks one tag against the per-tag bounds; returns why it must be dropped, or undefined. */
export function checkTag(key: string, value: string): TagDropReason | undefined {
  if (key.length === 0) return 'empty-key';
  if (!fits(key, TagLimits.maxKeyBytes)) return 'key-too-long';
  if (!fits(value, TagLimits.maxValueBytes)) return 'value-too-long';
  if (hasControlCharacter(key) || hasControlCharacter(value)) return 'control-character';
  // A lone surrogate (JSON's "\ud800", which tsf-tags and sct headers may carry) has no UTF-8
  // form: every dialect that percent-encodes a tag threw on it, failing each outbound call.
  if (LONE_SURROGATE.test(key) || LONE_SURROGATE.test(value)) return 'malformed-unicode';
  return undefined;
}

/**
 * Sets `key` in `tags` if the bounds allow it. Returns the reason when it does not.
 * Replacing an existing key never counts against the tag-count bound.
 */
export function putTag(tags: Map<string, string>, key: string, value: string): TagDropReason | undefined {
  const bad = checkTag(key, value);
  if (bad) return bad;
  if (!tags.has(key) && tags.size >= TagLimits.maxTags) return 'too-many-tags';
  tags.set(key, value);
  return undefined;
}
