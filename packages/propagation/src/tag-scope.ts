/**
 * How far a tag travels:
 * - `transitive`: to every downstream hop (the default, as core's custom tags do);
 * - `one-hop`: to the next service only, which sees it and does not pass it on;
 * - `local`: never leaves this process.
 */
export type TagScope = 'transitive' | 'one-hop' | 'local';

export const TAG_SCOPES: readonly TagScope[] = ['transitive', 'one-hop', 'local'];

/**
 * Scopes set for one request's tags: by code (`set`), and for tags that arrived one-hop
 * (recorded as `local`: this service reads them, and they stop here). A tag with no scope
 * here takes the configured one (TagPropagation's `scopes` option), else `transitive`.
 *
 * The SDK keeps one per request beside the MeshContext, as a context extension (see
 * `attachRequestTags`); a child context made by withTags gets a fork.
 */
export class TagScopes {
  // Made by the first `set`: most requests set no scope, and then no Map is made for them.
  #own: Map<string, TagScope> | undefined;

  constructor(entries?: Iterable<readonly [string, TagScope]>) {
    if (entries) for (const [k, s] of entries) this.set(k, s);
  }

  /** The scope set for `key` on this request, if any. */
  get(key: string): TagScope | undefined {
    return this.#own?.get(key);
  }

  /** Sets the scope of one tag for this request. */
  set(key: string, scope: TagScope): void {
    this.#own ??= new Map();
    this.#own.set(key, scope);
  }

  /** A copy for a child context: later changes to either do not reach the other. */
  fork(): TagScopes {
    return new TagScopes(this.#own);
  }

  get size(): number {
    return this.#own?.size ?? 0;
  }
}
