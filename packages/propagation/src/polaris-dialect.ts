import { isHeaderName, TagLimits } from '@meshlet/core';
import { formDecode, formEncode } from './form-encoding.js';
import {
  type DialectDroppedTag,
  type DialectExtract,
  emptyExtract,
  type HeaderBag,
  NOTHING_EXTRACTED,
  type ScopeLookup,
  type TagDialect,
  warning,
} from './tag-dialect.js';
import { takeTag } from './take-tag.js';

/** PolarisMesh's transitive metadata: one header per key, `X-Polaris-Metadata-Transitive-<key>: <URL-encoded value>`. */
export const POLARIS_TRANSITIVE_PREFIX = 'X-Polaris-Metadata-Transitive-';
/** Spring Cloud Tencent's older prefix, read (never written) as Spring Cloud Tencent itself reads it. */
export const SCT_TRANSITIVE_PREFIX = 'X-SCT-Metadata-Transitive-';
/** Polaris's lane ("traffic stain") key; its value is `<lane group>/<lane>`. */
export const POLARIS_LANE_KEY = 'service-lane';

const POLARIS_LOWER = POLARIS_TRANSITIVE_PREFIX.toLowerCase();
const SCT_LOWER = SCT_TRANSITIVE_PREFIX.toLowerCase();
// RFC 9110 token: what a header name may contain.

export interface PolarisDialectOptions {
  /** The tag Meshlet's router reads the lane from (route's LANE_TAG). Default `lane`. */
  readonly laneTag?: string;
  /**
   * Lane group to write `service-lane` with when a request has a lane tag but no
   * `service-lane` tag (a lane set by Meshlet, not received from Polaris). Absent: not written.
   */
  readonly laneGroup?: string;
}

/**
 * The PolarisMesh dialect. Node lower-cases header names, so keys read here are lower
 * case whatever case the sender used (Polaris matches keys case-sensitively unless told
 * otherwise: use lower-case keys across the estate). Polaris headers are transitive only:
 * one-hop tags are not written here (Spring Cloud Tencent's disposable header carries them).
 * `service-lane: <group>/<lane>` also sets the lane tag to `<lane>`, so Meshlet's router
 * follows a Polaris lane.
 */
/** `s` in lower case; `s` itself when it is lower case already (node:http's header names are). */
function lowerCase(s: string): string {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if ((c >= 0x41 && c <= 0x5a) || c > 0x7f) return s.toLowerCase();
  }
  return s;
}

export function polarisDialect(options: PolarisDialectOptions = {}): TagDialect {
  const laneTag = options.laneTag ?? 'lane';
  return {
    name: 'polaris',
    extract(headers: HeaderBag): DialectExtract {
      // Made when the first prefixed header is found: a request without one allocates nothing here.
      let out: ReturnType<typeof emptyExtract> | undefined;
      for (const rawName in headers) {
        const rawValue = headers[rawName];
        if (rawValue === undefined) continue;
        // Both prefixes start `x-`: any other name is passed over without a lower-case copy
        // (toLowerCase makes one per call, and a request has a dozen headers or more).
        const c0 = rawName.charCodeAt(0);
        if ((c0 !== 0x78 && c0 !== 0x58) || rawName.charCodeAt(1) !== 0x2d) continue;
        const name = lowerCase(rawName);
        const prefix = name.startsWith(POLARIS_LOWER) ? POLARIS_LOWER : name.startsWith(SCT_LOWER) ? SCT_LOWER : undefined;
        // The request's own headers only (for…in also walks inherited enumerable names: a
        // polluted Object.prototype must not put a tag on every request).
        if (!prefix || !Object.hasOwn(headers, rawName)) continue;
        out ??= emptyExtract();
        const key = name.slice(prefix.length);
        const raw = typeof rawValue === 'string' ? rawValue : rawValue[0];
        if (key === '' || raw === undefined || raw.trim() === '') continue;
        if (raw.length > TagLimits.maxHeaderBytes) {
          out.warnings.push(warning(name, 'longer than the header bound'));
          continue;
        }
        const value = formDecode(raw);
        if (value === undefined) {
          out.warnings.push(warning(name, 'not valid percent-encoding'));
          continue;
        }
        takeTag(out, name, key, value, false);
      }
      if (out === undefined) return NOTHING_EXTRACTED;
      const stain = out.tags.get(POLARIS_LANE_KEY);
      const slash = stain?.indexOf('/') ?? -1;
      if (stain !== undefined && slash >= 0 && !out.tags.has(laneTag)) {
        const lane = stain.slice(slash + 1).split('/')[0] ?? '';
        if (lane !== '') takeTag(out, `${POLARIS_LOWER}${POLARIS_LANE_KEY}`, laneTag, lane, false);
      }
      return out;
    },
    emit(tags: Iterable<readonly [string, string]>, scope: ScopeLookup) {
      const headers: Record<string, string> = {};
      const dropped: DialectDroppedTag[] = [];
      let total = 0;
      let count = 0;
      let lane: string | undefined;
      let hasStain = false;
      const put = (key: string, value: string) => {
        const name = `${POLARIS_TRANSITIVE_PREFIX}${key}`;
        if (!isHeaderName(key)) {
          dropped.push({ key, reason: 'not-a-header-name', header: POLARIS_TRANSITIVE_PREFIX });
          return;
        }
        if (count >= TagLimits.maxTags) {
          dropped.push({ key, reason: 'too-many-tags', header: POLARIS_TRANSITIVE_PREFIX });
          return;
        }
        const encoded = formEncode(value);
        // Bound the sum of the headers, as core bounds its one tag header.
        const size = name.length + 2 + encoded.length;
        if (total + size > TagLimits.maxHeaderBytes) {
          dropped.push({ key, reason: 'header-too-long', header: name });
          return;
        }
        total += size;
        count++;
        headers[name] = encoded;
      };
      for (const [k, v] of tags) {
        if (scope(k) !== 'transitive') continue;
        if (k === laneTag) lane = v;
        if (k === POLARIS_LANE_KEY) hasStain = true;
        put(k, v);
      }
      if (!hasStain && lane !== undefined && options.laneGroup !== undefined) put(POLARIS_LANE_KEY, `${options.laneGroup}/${lane}`);
      return { headers, dropped };
    },
  };
}
