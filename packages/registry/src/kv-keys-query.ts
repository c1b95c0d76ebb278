import { systemClock, type Unsubscribe } from '@meshlet/core';
import { BlockingWatch, type BlockingWatchOptions } from './blocking-watch.js';
import type { ConsulResponse } from './consul-client.js';
import { decodeKvPair, type KvPair, type KvPrefixFollower, pairsSignature, sortedRun } from './kv-prefix-query.js';

export interface KvKeysQueryOptions extends Omit<BlockingWatchOptions<unknown>, 'query' | 'onChange' | 'signature'> {
  readonly prefix: string;
  /** The keys under the prefix (`?keys=true`), blocking on `index`; undefined when there are none (404). */
  readonly listKeys: (index: number, waitSeconds: number, signal: AbortSignal) => Promise<ConsulResponse<string[] | undefined>>;
  /** Of `known` (key and the ModifyIndex last read), the keys whose ModifyIndex is another now, or that are gone. */
  readonly changed: (known: readonly KvPair[], signal: AbortSignal) => Promise<ReadonlySet<string>>;
  /** The pairs of `keys`, with their values; a key gone since is left out. */
  readonly read: (keys: readonly string[], signal: AbortSignal) => Promise<KvPair[]>;
  /** Called once the last follower has left and the query has stopped: the query is done. */
  readonly onIdle?: () => void;
}

interface Follower extends KvPrefixFollower {
  readonly prefix: string;
  /** `key@ModifyIndex` of the entries last delivered; undefined before the first delivery. */
  signature: string | undefined;
  /** Its own first reads (#join) that failed in a row: the retry's backoff. */
  joinFailures?: number;
}

/** A failed first read of a follower's own keys is tried again after this (ms), doubling… */
const JOIN_RETRY_MIN_MS = 200;
/** …up to this. */
const JOIN_RETRY_MAX_MS = 10_000;

/**
 * One Consul blocking query of a prefix's key list (`?keys=true`) shared by every watch of a
 * key or prefix under it: one connection to the agent, as KvPrefixQuery, but a change brings
 * the key list rather than every document. When the list's index moves (Consul's index of a
 * keys query is the highest ModifyIndex under the prefix, deletes included, so it moves on
 * every write under it), the keys the followers cover are checked (`changed`: a transaction
 * of `check-index`, no values), and only those that changed, or are new to a follower, are
 * read (`read`); a key gone from the list is a delete, read from nothing. A follower is told
 * only when its own keys changed. The reads are part of the query: one that fails is a failed
 * query (backoff, `onError`), and the next query reads again.
 */
export class KvKeysQuery {
  readonly prefix: string;
  readonly #opts: KvKeysQueryOptions;
  readonly #followers = new Set<Follower>();
  #watch: BlockingWatch<undefined> | undefined;
  /** The last key list, sorted; undefined before the first answer. */
  #keys: readonly string[] | undefined;
  /** The index whose key list the followers' keys were last read for. */
  #readAt: number | undefined;
  /** The pairs read, of the keys some follower covers, as of the last read. */
  readonly #pairs = new Map<string, KvPair>();
  /** Reads run one at a time, in order: a step's and a late follower's. */
  #reading: Promise<unknown> = Promise.resolve();
  #failing = false;
  /**
   * The query failed since the last step: the pairs read may be another agent's (a restarted
   * dev agent starts its indexes again), so the next step reads every followed key afresh
   * rather than checking ModifyIndexes that may have come round to the same numbers.
   */
  #unsure = false;
  /** A step is reading: a follower joining now waits for it (#join) rather than being told from pairs it is about to replace. */
  #stepping = false;
  #done = false;
  /** Aborts a late follower's read when the query ends. */
  readonly #stop = new AbortController();

  constructor(options: KvKeysQueryOptions) {
    this.prefix = options.prefix;
    this.#opts = options;
  }

  /** Follows the keys under `prefix` (the query's own prefix or one under it). */
  follow(prefix: string, follower: KvPrefixFollower): Unsubscribe {
    if (this.#done) throw new Error(`the query of ${this.prefix} has ended`);
    if (!prefix.startsWith(this.prefix)) throw new Error(`${prefix} is not under ${this.prefix}`);
    const f: Follower = { prefix, signature: undefined, onEntries: follower.onEntries, onFailure: follower.onFailure };
    this.#followers.add(f);
    if (this.#keys !== undefined) this.#join(f, this.#keys);
    else if (this.#failing) f.onFailure();
    this.#watch ??= new BlockingWatch<undefined>({
      ...this.#opts,
      // The reads happen inside the query, so that a failed one is a failed query: nothing
      // is left for onChange.
      query: async (index, wait, signal) => {
        const res = await this.#opts.listKeys(index, wait, signal);
        const keys = [...(res.body ?? [])].sort();
        // A wait that ended with nothing written keeps its index: nothing to read, unless a
        // follower has not had its first delivery (its own read failed).
        const untold = [...this.#followers].some((x) => x.signature === undefined);
        if (res.index !== this.#readAt || untold) await this.#serially(() => this.#step(keys, res.index, signal));
        return { ...res, body: undefined };
      },
      signature: () => '',
      onChange: () => {},
      onError: (err, consecutive) => {
        this.#failing = true;
        // The next answer is read whatever its index (it may equal the last one read, from another agent).
        this.#readAt = undefined;
        this.#unsure = true;
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
      this.#stop.abort();
      this.#watch?.stop();
      this.#opts.onIdle?.();
    };
  }

  /** How many watches ride on this query. */
  get followers(): number {
    return this.#followers.size;
  }

  #serially<T>(work: () => Promise<T>): Promise<T> {
    const run = this.#reading.then(work);
    this.#reading = run.catch(() => {});
    return run;
  }

  /**
   * A follower that joins after an answer: told at once when the keys under its prefix in the
   * last list are all read already (another follower covers them); else they are read first.
   */
  #join(f: Follower, keys: readonly string[]): void {
    if (!this.#stepping && under(keys, f.prefix).every((k) => this.#pairs.has(k))) {
      this.#tell(f);
      return;
    }
    void this.#serially(async () => {
      if (!this.#followers.has(f) || f.signature !== undefined || this.#keys === undefined) return;
      const missing = under(this.#keys, f.prefix).filter((k) => !this.#pairs.has(k));
      for (const p of await this.#opts.read(missing, this.#stop.signal)) this.#pairs.set(p.Key, p);
      // Unwatched, or told by a step, while it read: nothing more for it.
      if (this.#followers.has(f) && f.signature === undefined) this.#tell(f);
    }).catch(() => {
      if (!this.#followers.has(f) || f.signature !== undefined || this.#done) return;
      // Its snapshot meanwhile, if any; read again after a backoff, not only once the blocking list next answers.
      f.onFailure();
      f.joinFailures = (f.joinFailures ?? 0) + 1;
      const backoff = Math.min(JOIN_RETRY_MAX_MS, JOIN_RETRY_MIN_MS * 2 ** (f.joinFailures - 1));
      (this.#opts.clock ?? systemClock).setTimeout(() => {
        if (this.#followers.has(f) && f.signature === undefined && this.#keys !== undefined && !this.#done) this.#join(f, this.#keys);
      }, backoff);
    });
  }

  /** Reads what changed for the followers since the last step, and tells each whose keys changed. */
  async #step(keys: readonly string[], index: number, signal: AbortSignal): Promise<void> {
    this.#stepping = true;
    try {
      await this.#readAndTell(keys, index, signal);
    } finally {
      this.#stepping = false;
    }
  }

  /** The step: its reads, then (`#stepping` over, the state whole) the followers told. */
  async #readAndTell(keys: readonly string[], index: number, signal: AbortSignal): Promise<void> {
    // The followers as the step starts: it reads for these and tells these; one that joins
    // meanwhile is read for after it (#join), since the keys it covers may be dropped here.
    const followers = [...this.#followers];
    const covered = new Set<string>();
    for (const f of followers) for (const k of under(keys, f.prefix)) covered.add(k);
    const known = [...this.#pairs.values()].filter((p) => covered.has(p.Key));
    const unsure = this.#unsure;
    const changed =
      unsure || known.length === 0 ? new Set<string>(unsure ? known.map((p) => p.Key) : []) : await this.#opts.changed(known, signal);
    const toRead = [...covered].filter((k) => changed.has(k) || !this.#pairs.has(k));
    const read = toRead.length > 0 ? await this.#opts.read(toRead, signal) : [];
    // Changed all at once, after the reads: a follower joining meanwhile sees the last step's state whole.
    // Keys gone from the list (deleted, or the token may no longer read them), or no longer followed, are dropped.
    // After a failed query the keys were read afresh (`unsure`): one whose value differs at the
    // same ModifyIndex (an agent that came back with its indexes begun again) is news, though
    // its followers' `key@ModifyIndex` signatures do not show it.
    const rewritten = new Set<string>();
    if (unsure)
      for (const p of read) {
        const had = this.#pairs.get(p.Key);
        if (had !== undefined && had.ModifyIndex === p.ModifyIndex && had.Value !== p.Value) rewritten.add(p.Key);
      }
    for (const k of [...this.#pairs.keys()]) if (!covered.has(k) || changed.has(k)) this.#pairs.delete(k);
    for (const p of read) this.#pairs.set(p.Key, p);
    this.#keys = keys;
    this.#readAt = index;
    this.#failing = false;
    if (unsure) this.#unsure = false;
    // A follower told here may start another watch at once: it is told from this state.
    this.#stepping = false;
    for (const f of followers) {
      if (!this.#followers.has(f)) continue;
      if (rewritten.size > 0 && under(keys, f.prefix).some((k) => rewritten.has(k))) f.signature = undefined;
      this.#tell(f);
    }
    // Those that came while it read (the first step's included: no list to join then) are read for now.
    const started = new Set(followers);
    for (const f of [...this.#followers]) if (f.signature === undefined && !started.has(f)) this.#join(f, keys);
  }

  /** Delivers the entries under `f.prefix` when they differ from what `f` last got. */
  #tell(f: Follower): void {
    const mine = under(this.#keys ?? [], f.prefix)
      .map((k) => this.#pairs.get(k))
      .filter((p): p is KvPair => p !== undefined);
    const signature = pairsSignature(mine);
    if (signature === f.signature) return;
    f.signature = signature;
    f.onEntries(Object.freeze(mine.map(decodeKvPair)));
  }
}

/** The keys of `sorted` that start with `prefix`. */
const under = (sorted: readonly string[], prefix: string): string[] => sortedRun(sorted, prefix, (k) => k);
