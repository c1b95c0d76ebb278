import { type Caller, hasControlCharacter, TagLimits } from '@meshlet/core';
import { meshletDialect } from './meshlet-dialect.js';
import { type PolarisDialectOptions, polarisDialect } from './polaris-dialect.js';
import { checkPropagationOptions } from './propagation-options.js';
import { sctDialect } from './sct-dialect.js';
import { sealedEmptyMap } from './sealed-empty.js';
import {
  type DialectDroppedTag,
  type DialectExtract,
  type DialectName,
  type HeaderBag,
  type HeaderWarning,
  headerValue,
  type TagDialect,
  warning,
} from './tag-dialect.js';
import { type TagScope, TagScopes } from './tag-scope.js';
import { putChecked } from './take-tag.js';
import { type TsfDialectOptions, tsfDialect } from './tsf-dialect.js';

export interface TagPropagationOptions {
  /**
   * Dialects read on inbound requests, lowest precedence first: when two carry the same
   * key, the later one's value wins. Default `['tsf', 'sct', 'polaris', 'meshlet']`:
   * Spring Cloud Tencent's own merge order (TSF tags, then SCT-CUSTOM-METADATA, then the
   * per-key prefix headers), with Meshlet's header, sent only by Meshlet hops, last.
   */
  readonly accept?: readonly DialectName[];
  /** Dialects written on outbound calls. Default `['meshlet']`. */
  readonly emit?: readonly DialectName[];
  /** Scope by tag name, for tags whose scope code does not set. Default: every tag transitive. */
  readonly scopes?: Readonly<Record<string, TagScope>>;
  /** Headers passed on to the next hop unchanged (e.g. `x-uid`), for estates that route on plain headers. */
  readonly passThroughHeaders?: readonly string[];
  readonly tsf?: TsfDialectOptions;
  readonly polaris?: PolarisDialectOptions;
}

/** Everything the tag headers of one inbound request said. */
export interface InboundTags {
  /** Custom tags for the request's MeshContext (`createContext({ tags })`). */
  readonly tags: Map<string, string>;
  /** Scopes for the request: tags that arrived one-hop are `local` here. Keep beside the context. */
  readonly scopes: TagScopes;
  /**
   * Raw pass-through headers, by lower-case name. Keep beside the context. Read only: a
   * request that carries none shares one empty Map.
   */
  readonly passThrough: ReadonlyMap<string, string>;
  /** The caller's identity from a dialect that carries one (TSF), for when `x-meshlet-caller` is absent. */
  readonly caller?: Caller;
  readonly dropped: readonly DialectDroppedTag[];
  readonly warnings: readonly HeaderWarning[];
}

export interface OutboundHeaders {
  /** Headers to set on the outbound call (names as the dialects spell them; HTTP names are case-insensitive). */
  readonly headers: Readonly<Record<string, string>>;
  readonly dropped: readonly DialectDroppedTag[];
}

const NO_OPTIONS: { readonly tags?: boolean } = Object.freeze({});
const NO_DIALECTS: readonly TagDialect[] = Object.freeze([]);

/** The pass-through headers of every request that carries none: shared, never changed. */
const NO_PASS_THROUGH: ReadonlyMap<string, string> = sealedEmptyMap();

/**
 * The last headers emitted for one tags Map, with everything they were computed from:
 * every tag, its scope and every pass-through header, in order. A hit compares all of
 * them, so a setTag (even one that replaces a value), a scope set in code or a changed
 * pass-through header is seen; only the encoding is skipped.
 */
interface EmitMemo {
  readonly tags: readonly string[];
  readonly scopes: readonly TagScope[];
  readonly passThrough: ReadonlyMap<string, string> | undefined;
  readonly passed: readonly string[];
  readonly out: OutboundHeaders;
}
/** How the tags of a request that more than one dialect carried arrived. */
interface ArrivedScopes {
  readonly once: Set<string>;
  readonly transitive: Set<string>;
}

function noteArrival(arrived: ArrivedScopes, key: string, arrivedOnce: ReadonlySet<string>): void {
  if (arrivedOnce.has(key)) arrived.once.add(key);
  else arrived.transitive.add(key);
}

/** A request's tags Map with the last headers emitted for it, by TagPropagation instance. */
type Memoized = Map<string, string> & { [memo: symbol]: EmitMemo | undefined };

export const DEFAULT_ACCEPT: readonly DialectName[] = ['tsf', 'sct', 'polaris', 'meshlet'];

/**
 * Reads request tags from every accepted dialect and writes them in every configured one.
 * Built once from configuration; `extract` and `emit` do no set-up per call.
 */
export class TagPropagation {
  readonly #accept: readonly TagDialect[];
  readonly #emit: readonly TagDialect[];
  /**
   * True when a call with no tags still gets headers (TSF's `tsf-metadata` with an
   * identity): callers may skip `emit` for an untagged call only when this is false.
   */
  readonly emitsWithoutTags: boolean;
  readonly #configured: ReadonlyMap<string, TagScope>;
  readonly #passThrough: readonly string[];
  // Kept on the context's tags Map (one per request, so the encoding is done once per
  // request, not once per outbound call; it ends with the request), under this instance's
  // own symbol: not in a WeakMap keyed by the Map, whose entry per request cost ~0.5 µs of
  // CPU and GC work.
  readonly #memo: symbol = Symbol('meshlet.propagation.emit-memo');

  constructor(options: TagPropagationOptions = {}) {
    checkPropagationOptions(options);
    const dialects: Record<DialectName, TagDialect> = {
      meshlet: meshletDialect,
      tsf: tsfDialect(options.tsf),
      polaris: polarisDialect(options.polaris),
      sct: sctDialect,
    };
    const pick = (names: readonly DialectName[]) => names.map((n) => dialects[n]);
    this.#accept = pick(options.accept ?? DEFAULT_ACCEPT);
    this.#emit = pick(options.emit ?? ['meshlet']);
    this.emitsWithoutTags = Object.keys(this.#encode([]).headers).length > 0;
    const configured = new Map<string, TagScope>();
    for (const [k, s] of Object.entries(options.scopes ?? {})) configured.set(k, s);
    this.#configured = configured;
    this.#passThrough = (options.passThroughHeaders ?? []).map((h) => h.toLowerCase());
  }

  /** The scope `key` travels with on a request with `scopes`: set in code, else configured, else transitive. */
  scopeOf(key: string, scopes?: TagScopes): TagScope {
    return scopes?.get(key) ?? this.#configured.get(key) ?? 'transitive';
  }

  /**
   * Reads an inbound request's headers. Never throws: bad headers and tags are reported, not
   * raised. `tags: false` reads only the configured pass-through headers: the tag headers
   * (and the caller a dialect carries) of a sender that is not trusted are not even parsed.
   */
  extract(headers: HeaderBag, options: { readonly tags?: boolean } = NO_OPTIONS): InboundTags {
    // The Map of the first dialect that read tags, taken over: it is that dialect's own, made
    // for this request, and within the bounds. Most requests carry one dialect's tags or none.
    let tags: Map<string, string> | undefined;
    // That dialect's result while it is the only one with tags: its scopes are read at the end.
    let only: DialectExtract | undefined;
    // Made when a second dialect read tags.
    let arrived: ArrivedScopes | undefined;
    const dropped: DialectDroppedTag[] = [];
    const warnings: HeaderWarning[] = [];
    let caller: Caller | undefined;
    for (const dialect of options.tags === false ? NO_DIALECTS : this.#accept) {
      const got = dialect.extract(headers);
      if (got.dropped.length > 0) dropped.push(...got.dropped);
      if (got.warnings.length > 0) warnings.push(...got.warnings);
      if (got.caller && !caller) caller = got.caller;
      if (got.tags.size === 0) continue;
      if (tags === undefined) {
        tags = got.tags as Map<string, string>;
        only = got;
        continue;
      }
      arrived ??= { once: new Set(), transitive: new Set() };
      if (only !== undefined) {
        // A second dialect with tags: the first one's, as if put one by one (none was dropped).
        for (const k of only.tags.keys()) noteArrival(arrived, k, only.arrivedOnce);
        only = undefined;
      }
      for (const [k, v] of got.tags) {
        // Each dialect checked its tags against core's per-tag bounds; the count is left.
        const reason = putChecked(tags, k, v);
        if (reason) {
          dropped.push({ key: k, reason, header: dialect.name });
          continue;
        }
        noteArrival(arrived, k, got.arrivedOnce);
      }
    }
    const scopes = new TagScopes();
    if (only !== undefined) {
      // One dialect's tags: those that arrived one-hop are local here.
      if (only.arrivedOnce.size > 0) for (const k of only.tags.keys()) if (only.arrivedOnce.has(k)) scopes.set(k, 'local');
    } else if (arrived !== undefined) {
      // Sent transitive by any dialect: the sender meant it to travel on.
      for (const k of arrived.once) if (!arrived.transitive.has(k)) scopes.set(k, 'local');
    }
    let passThrough: Map<string, string> | undefined;
    for (const name of this.#passThrough) {
      const v = headerValue(headers, name);
      if (v === undefined) continue;
      if (v.length > TagLimits.maxHeaderBytes || hasControlCharacter(v)) {
        warnings.push(warning(name, 'pass-through header over the header bound or with control characters: not passed on'));
        continue;
      }
      passThrough ??= new Map();
      passThrough.set(name, v);
    }
    return {
      tags: tags ?? new Map(),
      scopes,
      passThrough: passThrough ?? NO_PASS_THROUGH,
      ...(caller ? { caller } : {}),
      dropped,
      warnings,
    };
  }

  /**
   * Headers for an outbound call: the request's tags in every emitted dialect (transitive
   * and one-hop tags; local ones never), and the pass-through headers as they arrived.
   * For a Map of tags (a request's), the result is reused while the tags, their scopes and
   * the pass-through headers stay the same, so it is frozen: copy it to change it.
   */
  emit(tags: Iterable<readonly [string, string]>, scopes?: TagScopes, passThrough?: ReadonlyMap<string, string>): OutboundHeaders {
    if (!(tags instanceof Map)) return this.#encode(tags, scopes, passThrough);
    const memo = (tags as Memoized)[this.#memo];
    if (memo && this.#same(memo, tags, scopes, passThrough)) return memo.out;
    const flat: string[] = [];
    const scoped: TagScope[] = [];
    for (const [k, v] of tags as ReadonlyMap<string, string>) {
      flat.push(k, v);
      scoped.push(this.scopeOf(k, scopes));
    }
    const passed: string[] = [];
    if (passThrough) for (const [k, v] of passThrough) passed.push(k, v);
    const out = this.#encode(tags, scopes, passThrough);
    // Shared by every call that hits: nobody may change it.
    Object.freeze(out.headers);
    Object.freeze(out.dropped);
    // A frozen Map cannot keep it: encoded every time.
    if (Object.isExtensible(tags))
      (tags as Memoized)[this.#memo] = { tags: flat, scopes: scoped, passThrough, passed, out: Object.freeze(out) };
    return out;
  }

  #same(
    memo: EmitMemo,
    tags: ReadonlyMap<string, string>,
    scopes: TagScopes | undefined,
    passThrough: ReadonlyMap<string, string> | undefined,
  ): boolean {
    const flat = memo.tags;
    if (flat.length !== tags.size * 2 || memo.passThrough !== passThrough) return false;
    let i = 0;
    for (const [k, v] of tags) {
      if (flat[i] !== k || flat[i + 1] !== v || memo.scopes[i >> 1] !== this.scopeOf(k, scopes)) return false;
      i += 2;
    }
    if (passThrough) {
      const passed = memo.passed;
      if (passed.length !== passThrough.size * 2) return false;
      i = 0;
      for (const [k, v] of passThrough) {
        if (passed[i] !== k || passed[i + 1] !== v) return false;
        i += 2;
      }
    }
    return true;
  }

  #encode(tags: Iterable<readonly [string, string]>, scopes?: TagScopes, passThrough?: ReadonlyMap<string, string>): OutboundHeaders {
    const list = Array.isArray(tags) ? (tags as readonly (readonly [string, string])[]) : [...tags];
    const lookup = (key: string) => this.scopeOf(key, scopes);
    const headers: Record<string, string> = {};
    const dropped: DialectDroppedTag[] = [];
    if (passThrough) for (const [k, v] of passThrough) headers[k] = v;
    for (const dialect of this.#emit) {
      const out = dialect.emit(list, lookup);
      Object.assign(headers, out.headers);
      dropped.push(...out.dropped);
    }
    return { headers, dropped };
  }
}
