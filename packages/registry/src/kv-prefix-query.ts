import type { KvEntry, Unsubscribe } from '@meshlet/core';
import { BlockingWatch, type BlockingWatchOptions } from './blocking-watch.js';
import { describe } from './consul-client.js';

/** One key as Consul KV answers it. */
export interface KvPair {
  Key: string;
  Value: string | null;
  ModifyIndex: number;
}

/** What is wrong with `p` as a KV pair decodeKvPair reads (`the answer is …` ends), or undefined. */
export function kvPairProblem(p: unknown, where: string): string | undefined {
  if (typeof p !== 'object' || p === null || Array.isArray(p)) return `${describe(p)} at ${where}, not a KV pair`;
  const { Key, Value, ModifyIndex } = p as Record<string, unknown>;
  if (typeof Key !== 'string') return `a KV pair whose Key is ${describe(Key)} at ${where}`;
  if (Value !== null && typeof Value !== 'string') return `a KV pair whose Value is ${describe(Value)} at ${where}`;
  if (!Number.isSafeInteger(ModifyIndex) || (ModifyIndex as number) < 0) return `a KV pair whose ModifyIndex is not an index at ${where}`;
  return undefined;
}

/** What is wrong with a list answer (a `?recurse` read's, a key's) as KV pairs, or undefined. */
export function kvPairListProblem(body: unknown): string | undefined {
  if (!Array.isArray(body)) return undefined; // the client's shape check refuses it
  for (const [n, p] of body.entries()) {
    const problem = kvPairProblem(p, `[${n}]`);
    if (problem) return problem;
  }
  return undefined;
}

export const decodeKvPair = (p: KvPair): KvEntry => ({
  key: p.Key,
  value: p.Value === null ? '' : Buffer.from(p.Value, 'base64').toString('utf8'),
  revision: p.ModifyIndex,
});

/** One watch served by a KvPrefixQuery: the keys under `prefix`, which lies under the query's. */
export interface KvPrefixFollower {
  /**
   * The entries under the follower's prefix, sorted by key: on the query's first answer (or
   * at once, from the last answer, when it had one), then only when one of them was added,
   * written or deleted.
   */
  readonly onEntries: (entries: readonly KvEntry[]) => void;
  /** The first failure of a run of failed queries; also at once for a follower that joins during one, before any answer. */
  readonly onFailure: () => void;
}

export interface KvPrefixQueryOptions extends Omit<BlockingWatchOptions<KvPair[] | undefined>, 'onChange' | 'signature'> {
  /** Called once the last follower has left and the query has stopped: the query is done. */
  readonly onIdle?: () => void;
}

interface Follower extends KvPrefixFollower {
  readonly prefix: string;
  /** `key@ModifyIndex` of the entries last delivered; undefined before the first delivery. */
  signature: string | undefined;
}

const byKey = (a: KvPair, b: KvPair) => (a.Key < b.Key ? -1 : a.Key > b.Key ? 1 : 0);

/**
 * One Consul blocking query of a prefix (recurse) shared by every watch of a key or prefix
 * under it: the rule watchers of a mesh, one per service it calls, hold one connection to
 * the agent instead of one each (whose default `http_max_conns_per_client` is 200). Each
 * answer carries every key under the prefix; a follower is told only when the keys under its
 * own prefix changed (their ModifyIndex), so a change to one service's rules reaches that
 * service's watcher alone, and a wakeup with nothing changed reaches none (the blocking
 * watch compares the whole answer's indexes first). Runs while it has followers.
 */
export class KvPrefixQuery {
  readonly prefix: string;
  readonly #opts: KvPrefixQueryOptions;
  readonly #followers = new Set<Follower>();
  #watch: BlockingWatch<KvPair[] | undefined> | undefined;
  /** The last answer, sorted by key; undefined before the first. */
  #pairs: readonly KvPair[] | undefined;
  #failing = false;
  #done = false;

  constructor(options: KvPrefixQueryOptions & { readonly prefix: string }) {
    this.prefix = options.prefix;
    this.#opts = options;
  }

  /** Follows the keys under `prefix` (the query's own prefix or one under it). */
  follow(prefix: string, follower: KvPrefixFollower): Unsubscribe {
    if (this.#done) throw new Error(`the query of ${this.prefix} has ended`);
    if (!prefix.startsWith(this.prefix)) throw new Error(`${prefix} is not under ${this.prefix}`);
    const f: Follower = { prefix, signature: undefined, onEntries: follower.onEntries, onFailure: follower.onFailure };
    this.#followers.add(f);
    // A follower that joins late starts from the last answer: no query of its own.
    if (this.#pairs !== undefined) this.#tell(f, this.#pairs);
    else if (this.#failing) f.onFailure();
    this.#watch ??= new BlockingWatch<KvPair[] | undefined>({
      ...this.#opts,
      // ModifyIndex per key tells every change; the values need not be compared.
      signature: (pairs) => pairsSignature(pairs ?? []),
      onChange: (pairs) => this.#answer(pairs ?? []),
      onError: (err, consecutive) => {
        this.#failing = true;
        this.#opts.onError?.(err, consecutive);
        if (consecutive === 1) for (const x of [...this.#followers]) x.onFailure();
      },
      onRecover: () => {
        this.#failing = false;
        this.#opts.onRecover?.();
      },
    }).start();
    return () => {
      if (!this.#followers.delete(f) || this.#followers.size > 0) return;
      this.#done = true;
      this.#watch?.stop();
      this.#opts.onIdle?.();
    };
  }

  /** How many watches ride on this query. */
  get followers(): number {
    return this.#followers.size;
  }

  #answer(pairs: KvPair[]): void {
    const sorted = [...pairs].sort(byKey);
    this.#pairs = sorted;
    this.#failing = false;
    for (const f of [...this.#followers]) if (this.#followers.has(f)) this.#tell(f, sorted);
  }

  /** Delivers the entries under `f.prefix` when they differ from what `f` last got. */
  #tell(f: Follower, sorted: readonly KvPair[]): void {
    const mine = sortedRun(sorted, f.prefix, pairKey);
    const signature = pairsSignature(mine);
    if (signature === f.signature) return;
    f.signature = signature;
    // Decoded only for the follower whose keys changed.
    f.onEntries(Object.freeze(mine.map(decodeKvPair)));
  }
}

/**
 * The items of `sorted` (by `keyOf`, in JavaScript's string order) whose key starts with
 * `prefix`: a run found by binary search. Both shared queries' followers find their keys so.
 */
export function sortedRun<T>(sorted: readonly T[], prefix: string, keyOf: (item: T) => string): T[] {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (keyOf(sorted[mid] as T) < prefix) lo = mid + 1;
    else hi = mid;
  }
  const out: T[] = [];
  for (let i = lo; i < sorted.length && keyOf(sorted[i] as T).startsWith(prefix); i++) out.push(sorted[i] as T);
  return out;
}

/** What a follower was last told, as `key@ModifyIndex` lines: ModifyIndex per key tells every change. */
export const pairsSignature = (pairs: readonly KvPair[]): string => pairs.map((p) => `${p.Key}@${p.ModifyIndex}`).join('\n');

const pairKey = (p: KvPair) => p.Key;
