import type { Caller, TagDropReason } from '@meshlet/core';
import { sealedEmptyMap, sealedEmptySet } from './sealed-empty.js';
import type { TagScope } from './tag-scope.js';

/** Request headers as node:http gives them: lower-case names, repeated headers as arrays. */
export type HeaderBag = Readonly<Record<string, string | readonly string[] | undefined>>;

/** Why a tag read from (or meant for) a dialect's header was not taken. */
export type DialectDropReason = TagDropReason | 'not-a-header-name';

export interface DialectDroppedTag {
  readonly key: string;
  readonly reason: DialectDropReason;
  /** The header it came from or was meant for. */
  readonly header: string;
}

/** A problem with a whole header: it was ignored and the request served without it. */
export interface HeaderWarning {
  readonly header: string;
  readonly code: 'MESHLET_BAD_TAG_HEADER';
  readonly reason: string;
}

/**
 * What one dialect read from a request's headers. Read only: a dialect may hand out
 * `NOTHING_EXTRACTED`. A non-empty `tags` is a Map made for this one call, at most
 * `TagLimits.maxTags` tags each within core's per-tag bounds (`takeTag` puts them so):
 * TagPropagation.extract takes it over as the request's Map instead of copying it.
 */
export interface DialectExtract {
  /** Tags, within core's bounds (TagLimits). */
  readonly tags: ReadonlyMap<string, string>;
  /**
   * Keys that arrived one-hop (TSF tags without the transitive flag, SCT disposable
   * metadata, `x-meshlet-tags-once`, and the caller's identity from `tsf-metadata`):
   * this service sees them, the next hop does not.
   */
  readonly arrivedOnce: ReadonlySet<string>;
  /** The calling service's identity, when the dialect carries one (`tsf-metadata`). */
  readonly caller?: Caller;
  readonly dropped: readonly DialectDroppedTag[];
  readonly warnings: readonly HeaderWarning[];
}

/** Headers one dialect writes for an outbound call, and the tags it could not write. */
export interface DialectEmit {
  readonly headers: Record<string, string>;
  readonly dropped: DialectDroppedTag[];
}

/** Reads the scope a tag travels with (see TagScopes). */
export type ScopeLookup = (key: string) => TagScope;

/**
 * One tag header dialect: how a family of services carries request tags between hops.
 * `extract` never throws: a bad header is dropped whole with a warning, a bad tag alone
 * with a drop, so a client's garbage can never turn into a 500.
 */
export interface TagDialect {
  readonly name: DialectName;
  extract(headers: HeaderBag): DialectExtract;
  /** Writes transitive tags to the transitive carrier and one-hop tags to the one-hop carrier; local tags never. */
  emit(tags: Iterable<readonly [string, string]>, scope: ScopeLookup): DialectEmit;
}

export type DialectName = 'meshlet' | 'tsf' | 'polaris' | 'sct';

/** First value of a header (repeated headers are joined as node:http joins them, with `, `). */
export function headerValue(headers: HeaderBag, name: string): string | undefined {
  const v = headers[name];
  if (v === undefined) return undefined;
  return typeof v === 'string' ? v : v.join(', ');
}

/**
 * The `arrivedOnce` of a result with no one-hop tag: shared, never added to (`takeTag`
 * makes a Set of the result's own for its first one-hop tag; deleting from it is a no-op).
 */
export const NONE_ONCE: Set<string> = sealedEmptySet<string>();

/**
 * What a dialect reads from a request that carries none of its headers: one shared,
 * empty result (most requests carry one dialect's headers or none), so that a dialect
 * with nothing to read allocates nothing. Never changed: its collections are empty
 * and read only.
 */
export const NOTHING_EXTRACTED: DialectExtract = Object.freeze({
  tags: sealedEmptyMap<string, string>(),
  arrivedOnce: NONE_ONCE as ReadonlySet<string>,
  dropped: Object.freeze([]) as readonly DialectDroppedTag[],
  warnings: Object.freeze([]) as readonly HeaderWarning[],
});

/**
 * A dialect's result to fill in (it has found one of its headers). Put tags with `takeTag`:
 * `arrivedOnce` starts as the shared NONE_ONCE, and takeTag makes it the result's own.
 */
export function emptyExtract(): {
  tags: Map<string, string>;
  arrivedOnce: Set<string>;
  dropped: DialectDroppedTag[];
  warnings: HeaderWarning[];
} {
  return { tags: new Map(), arrivedOnce: NONE_ONCE, dropped: [], warnings: [] };
}

export function warning(header: string, reason: string): HeaderWarning {
  return { header, code: 'MESHLET_BAD_TAG_HEADER', reason };
}
