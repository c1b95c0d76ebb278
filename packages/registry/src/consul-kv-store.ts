import { mkdir, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import {
  AdoptableLogger,
  type AdoptsLogger,
  badOption,
  type Clock,
  callListener,
  consoleLogger,
  failureReason,
  type KvEntry,
  type KvStore,
  type KvWrite,
  type Logger,
  MeshletError,
  type PutOptions,
  RULES_PREFIX,
  readBoundedFile,
  shownValue,
  systemClock,
  type Unsubscribe,
} from '@meshlet/core';
import { CONSUL_MAX_BODY_BYTES, ConsulClient, type ConsulClientOptions, ConsulError, describe } from './consul-client.js';
import { KvKeysQuery, type KvKeysQueryOptions } from './kv-keys-query.js';
import { decodeKvPair as decode, type KvPair, KvPrefixQuery, kvPairListProblem, kvPairProblem } from './kv-prefix-query.js';

export interface ConsulKvStoreOptions extends ConsulClientOptions {
  readonly waitSeconds?: number;
  readonly logger?: Logger;
  /**
   * A file where the last entries of every watched prefix are kept (the rules in force,
   * config), so that a process started while Consul is down applies them. Put it beside
   * the registry's `snapshotFile`. Default: none.
   */
  readonly snapshotFile?: string;
  /**
   * With a `snapshotFile` that has the prefix: how long a new watch waits for Consul's
   * first answer before the snapshot's entries are delivered (Consul's answer follows when
   * it comes). An agent that refuses connections falls back at once. The mesh's first call
   * to a service waits for its rules at most this long when the snapshot has them. Default 100 ms.
   */
  readonly snapshotWaitMs?: number;
  /** Time for the snapshot wait; tests pass a ManualClock. Default systemClock. */
  readonly clock?: Clock;
  /**
   * Prefixes whose watches share one blocking query: every watch of a key or prefix under
   * one of them rides on one query of it (recurse), and hears only of changes to its own
   * keys. A mesh's rule watchers, one per service it calls, then hold one connection to the
   * agent instead of one each (what a change brings: `sharedQuery`).
   * Each must end with `/`; at most 16. `[]` gives every watch its own query. Default
   * `['meshlet/rules/']` (core's RULES_PREFIX).
   */
  readonly sharedPrefixes?: readonly string[];
  /**
   * What a shared query asks for. `'keys'`: the key list alone (`?keys=true`); when it moves,
   * one transaction of `check-index` finds which of the watched keys changed and another
   * reads those, so a change brings the list and the changed documents this process follows,
   * not every document. `'recurse'`: every document under the prefix on each change, in one
   * round trip (a process that follows nearly all of them and wants each change one round trip
   * sooner). Default `'keys'`.
   */
  readonly sharedQuery?: 'keys' | 'recurse';
}

/** The most `sharedPrefixes` a store takes: a handful of roots, each one query. */
const MAX_SHARED_PREFIXES = 16;
/** Characters of one shared prefix: a bound on the option, well past any key path in use. */
const MAX_SHARED_PREFIX_LENGTH = 512;

function checkSharedPrefixes(given: unknown): readonly string[] {
  if (given === undefined) return [RULES_PREFIX];
  if (!Array.isArray(given) || given.length > MAX_SHARED_PREFIXES)
    throw badOption('sharedPrefixes', `must be an array of at most ${MAX_SHARED_PREFIXES} prefixes`);
  for (const p of given) {
    if (typeof p !== 'string' || p.length < 2 || p.length > MAX_SHARED_PREFIX_LENGTH || !p.endsWith('/') || p.startsWith('/'))
      throw badOption(
        'sharedPrefixes',
        `${shownValue(p)} must be a key prefix of 2 to ${MAX_SHARED_PREFIX_LENGTH} characters ending with / (not starting with it)`,
      );
  }
  return Object.freeze([...given]);
}

function checkSharedQuery(given: unknown): 'keys' | 'recurse' {
  if (given === undefined) return 'keys';
  if (given !== 'keys' && given !== 'recurse') throw badOption('sharedQuery', `${shownValue(given)} must be 'keys' or 'recurse'`);
  return given;
}

/** What `snapshotFile` holds. */
interface KvSnapshot {
  readonly savedAt: string;
  readonly prefixes: Record<string, KvEntry[]>;
}

const path = (key: string) => `/v1/kv/${key.split('/').map(encodeURIComponent).join('/')}`;

/** What is wrong with a `?keys=true` answer as a key list, or undefined. */
function keyListProblem(body: unknown): string | undefined {
  if (!Array.isArray(body)) return undefined; // the client's shape check refuses it
  const n = body.findIndex((k) => typeof k !== 'string');
  return n < 0 ? undefined : `a list holding ${describe(body[n])} at [${n}], not a list of keys`;
}

/** What is wrong with a transaction's answer (200 or 409): Results of KV pairs, Errors naming operations; or undefined. */
function txnAnswerProblem(body: unknown): string | undefined {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return undefined; // the client's shape check refuses it
  const { Results, Errors } = body as Record<string, unknown>;
  if (Results !== undefined && Results !== null) {
    if (!Array.isArray(Results)) return `an object whose Results is ${describe(Results)}, not a list`;
    for (const [n, r] of Results.entries()) {
      if (typeof r !== 'object' || r === null || Array.isArray(r)) return `${describe(r)} at Results[${n}], not a result`;
      const kv = (r as { KV?: unknown }).KV;
      const problem = kv === undefined || kv === null ? undefined : kvPairProblem(kv, `Results[${n}].KV`);
      if (problem) return problem;
    }
  }
  if (Errors !== undefined && Errors !== null) {
    if (!Array.isArray(Errors)) return `an object whose Errors is ${describe(Errors)}, not a list`;
    for (const [n, e] of Errors.entries()) {
      if (typeof e !== 'object' || e === null || Array.isArray(e)) return `${describe(e)} at Errors[${n}], not an error`;
      const { OpIndex, What } = e as Record<string, unknown>;
      if (!Number.isSafeInteger(OpIndex) || typeof What !== 'string')
        return `an error without a whole OpIndex and a string What at Errors[${n}]`;
    }
  }
  return undefined;
}

/** Consul's limit on operations in one transaction. */
const TXN_MAX_OPS = 64;

/** A KvWrite as a Consul transaction operation, with the same compare-and-set meaning as put and delete. */
function txnOp(w: KvWrite): { KV: { Verb: string; Key: string; Value?: string; Index?: number } } {
  if (w.value !== null) {
    const Value = Buffer.from(w.value, 'utf8').toString('base64');
    return {
      KV: w.ifRevision === undefined ? { Verb: 'set', Key: w.key, Value } : { Verb: 'cas', Key: w.key, Value, Index: w.ifRevision },
    };
  }
  if (w.ifRevision === undefined) return { KV: { Verb: 'delete', Key: w.key } };
  // delete with ifRevision 0 means "only if the key does not exist", as in delete().
  if (w.ifRevision === 0) return { KV: { Verb: 'check-not-exists', Key: w.key } };
  return { KV: { Verb: 'delete-cas', Key: w.key, Index: w.ifRevision } };
}

/**
 * The KvStore port on Consul KV: where rules and config live in production. Revisions
 * are Consul's ModifyIndex, so compare-and-set is Consul's `?cas=`. Watches are blocking
 * queries on the prefix, one shared by every watch under a `sharedPrefixes` entry (the rule
 * documents); during an outage a watch stays quiet (the last state holds) and resyncs when
 * Consul returns.
 */
export class ConsulKvStore implements KvStore, AdoptsLogger {
  readonly client: ConsulClient;
  readonly #opts: ConsulKvStoreOptions;
  readonly #logger: AdoptableLogger;
  /** The prefixes whose blocking query is failing now (Consul unreachable): the last state holds. */
  readonly #failing = new Set<string>();
  #snapshot: Promise<Record<string, KvEntry[]>> | undefined;
  #snapshotWrite: Promise<void> = Promise.resolve();
  #snapshotLogged = false;
  readonly #sharedPrefixes: readonly string[];
  readonly #sharedQuery: 'keys' | 'recurse';
  readonly #queries = new Map<string, KvPrefixQuery | KvKeysQuery>();

  constructor(options: ConsulKvStoreOptions = {}) {
    this.#sharedPrefixes = checkSharedPrefixes(options.sharedPrefixes);
    this.#sharedQuery = checkSharedQuery(options.sharedQuery);
    this.client = new ConsulClient(options);
    this.#opts = options;
    this.#logger = new AdoptableLogger(options.logger, consoleLogger('warn', 'meshlet-kv'));
  }

  /** Logs through `logger` from now on (its client too), when built without a `logger` (AdoptsLogger). */
  adoptLogger(logger: Logger): void {
    this.#logger.adoptLogger(logger);
    this.client.adoptLogger(logger);
  }

  /** Gives `logger` back (its mesh closed): the one adopted before it, or this store's own, logs again. */
  releaseLogger(logger: Logger): void {
    this.#logger.releaseLogger(logger);
    this.client.releaseLogger(logger);
  }

  /** While a watch's query is failing (KvStore's `degraded`): the rules and config last read stay in force. */
  get degraded(): boolean {
    return this.#failing.size > 0;
  }

  async get(key: string): Promise<KvEntry | undefined> {
    const res = await this.client.request<KvPair[] | undefined>('GET', path(key), {
      notFound: true,
      expect: 'list',
      check: kvPairListProblem,
    });
    const pair = res.body?.[0];
    return pair ? decode(pair) : undefined;
  }

  async list(prefix: string): Promise<readonly KvEntry[]> {
    const res = await this.client.request<KvPair[] | undefined>('GET', `${path(prefix)}?recurse=true`, {
      notFound: true,
      expect: 'list',
      check: kvPairListProblem,
    });
    return (res.body ?? []).map(decode).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async put(key: string, value: string, options?: PutOptions): Promise<boolean> {
    const cas = options?.ifRevision === undefined ? '' : `?cas=${options.ifRevision}`;
    const res = await this.client.request<boolean>('PUT', `${path(key)}${cas}`, { body: value });
    return res.body === true;
  }

  async delete(key: string, options?: PutOptions): Promise<boolean> {
    if (options?.ifRevision === 0) return (await this.get(key)) === undefined;
    const cas = options?.ifRevision === undefined ? '' : `?cas=${options.ifRevision}`;
    const res = await this.client.request<boolean>('DELETE', `${path(key)}${cas}`);
    return res.body === true;
  }

  /**
   * One Consul transaction (`PUT /v1/txn`). Consul rolls it back with 409 for a failed
   * check and for a refused permission alike: only the first is a `false`.
   */
  async putAll(writes: readonly KvWrite[]): Promise<boolean> {
    if (writes.length > TXN_MAX_OPS)
      throw new MeshletError(
        'MESHLET_KV_TOO_MANY_WRITES',
        `putAll: at most ${TXN_MAX_OPS} writes in one Consul transaction (got ${writes.length})`,
      );
    const res = await this.client.request<{ Errors?: { OpIndex: number; What: string }[] | null }>('PUT', '/v1/txn', {
      body: JSON.stringify(writes.map(txnOp)),
      accept: [409],
      expect: 'object',
      check: txnAnswerProblem,
    });
    if (res.status !== 409) return true;
    const denied = res.body?.Errors?.find((e) => /permission denied|acl not found/i.test(e.What));
    if (denied) throw new ConsulError(`consul PUT /v1/txn: HTTP 403: ${denied.What}`, 403);
    return false;
  }

  watch(prefix: string, listener: (entries: readonly KvEntry[]) => unknown): Unsubscribe {
    let live = false;
    let fromSnapshot = false;
    let stopped = false;
    let cancelWait = () => {};
    /** Consul has not answered yet: the snapshot's entries for the prefix (with `orEmpty`, none known means none). */
    /**
     * Calls the listener: its fault (a throw, an async listener's rejection) is not Consul's,
     * so the query and the other watches go on; true when it accepted the entries (kept).
     */
    const tell = (entries: readonly KvEntry[]): boolean => {
      let accepted = false;
      callListener(
        () => {
          const result = listener(entries);
          accepted = result !== false;
          return result;
        },
        (err) => {
          accepted = false;
          this.#logger.warn('a KV watch listener failed', {
            code: 'MESHLET_KV_LISTENER_FAILED',
            watch: prefix,
            error: failureReason(err).slice(0, 200),
          });
        },
      );
      return accepted;
    };
    const fallBack = async (why: string, orEmpty: boolean) => {
      if (live || fromSnapshot || stopped || !this.#opts.snapshotFile) return;
      const saved = (await this.#loadSnapshot())[prefix];
      if (live || fromSnapshot || stopped || (saved === undefined && !orEmpty)) return;
      fromSnapshot = true;
      if (!this.#snapshotLogged) {
        this.#snapshotLogged = true;
        this.#logger.warn('rules and config from the KV snapshot file until consul answers', {
          code: 'MESHLET_KV_SNAPSHOT',
          file: this.#opts.snapshotFile,
          why,
        });
      }
      tell(Object.freeze([...(saved ?? [])]));
    };
    const unfollow = this.#queryFor(prefix).follow(prefix, {
      onEntries: (entries) => {
        if (stopped) return;
        live = true;
        cancelWait();
        const accepted = tell(entries);
        // Only what the listener accepted is kept for a restart during an outage (per watched prefix, as asked).
        if (accepted) this.#remember(prefix, [...entries]);
      },
      onFailure: () => void fallBack('a consul query failed', true),
    });
    if (this.#opts.snapshotFile && !live)
      cancelWait = (this.#opts.clock ?? systemClock).setTimeout(
        () => void fallBack(`consul has not answered within ${this.#opts.snapshotWaitMs ?? 100} ms`, false),
        this.#opts.snapshotWaitMs ?? 100,
      );
    return () => {
      stopped = true;
      cancelWait();
      unfollow();
    };
  }

  /**
   * The blocking query that serves a watch of `prefix`: the one of the shared prefix it lies
   * under (`sharedPrefixes`), else its own; made on the first watch, ended with the last.
   */
  #queryFor(prefix: string): KvPrefixQuery | KvKeysQuery {
    const shared = this.#sharedPrefixes.find((p) => prefix.startsWith(p));
    const root = shared ?? prefix;
    const running = this.#queries.get(root);
    if (running) return running;
    const blocking = <T>(what: 'keys' | 'recurse', index: number, wait: number, signal: AbortSignal) =>
      this.client.request<T>('GET', `${path(root)}?${what}=true&index=${index}&wait=${wait}s`, {
        signal,
        notFound: true,
        expect: 'list',
        check: what === 'keys' ? keyListProblem : kvPairListProblem,
        timeoutMs: (wait + wait / 16 + 5) * 1000,
      });
    const common: Omit<KvKeysQueryOptions, 'listKeys' | 'changed' | 'read'> = {
      prefix: root,
      waitSeconds: this.#opts.waitSeconds ?? 25,
      probe: (signal) => this.client.probe.wait(signal),
      // Once per query, not per watch riding on it.
      onError: (err, consecutive) => {
        if (consecutive !== 1) return;
        this.#failing.add(root);
        this.#logger.warn('consul KV query failed: the last rules and config stay in force', {
          code: 'MESHLET_KV_DEGRADED',
          prefix: root,
          error: (err as Error).message,
        });
      },
      onRecover: () => {
        if (this.#failing.delete(root)) this.#logger.warn('consul KV reachable again', { code: 'MESHLET_KV_RECOVERED', prefix: root });
      },
      onIdle: () => {
        if (this.#queries.get(root) !== query) return;
        this.#queries.delete(root);
        // Nothing follows the prefix any more: its outage is no one's.
        this.#failing.delete(root);
      },
    };
    const query =
      shared !== undefined && this.#sharedQuery === 'keys'
        ? new KvKeysQuery({
            ...common,
            listKeys: (index, wait, signal) => blocking<string[] | undefined>('keys', index, wait, signal),
            changed: (known, signal) => this.#changed(known, signal),
            read: (keys, signal) => this.#read(keys, signal),
          })
        : new KvPrefixQuery({ ...common, query: (index, wait, signal) => blocking<KvPair[] | undefined>('recurse', index, wait, signal) });
    this.#queries.set(root, query);
    return query;
  }

  /**
   * Of `known`, the keys whose ModifyIndex is another now or that are gone: transactions of
   * `check-index` (no values), 64 operations each (Consul's documented bound).
   */
  async #changed(known: readonly KvPair[], signal: AbortSignal): Promise<ReadonlySet<string>> {
    const changed = new Set<string>();
    for (let i = 0; i < known.length; i += TXN_MAX_OPS - 1) {
      const chunk = known.slice(i, i + TXN_MAX_OPS - 1);
      const ops = chunk.map((p) => ({ KV: { Verb: 'check-index', Key: p.Key, Index: p.ModifyIndex } }));
      // A check that never holds (no key's ModifyIndex is 0): Consul then answers with the failed
      // checks alone, where a transaction that held would bring every key's metadata back.
      ops.push({ KV: { Verb: 'check-index', Key: (chunk[0] as KvPair).Key, Index: 0 } });
      const { failed } = await this.#readTxn(ops, signal);
      for (const opIndex of failed.keys()) if (opIndex < chunk.length) changed.add((chunk[opIndex] as KvPair).Key);
    }
    return changed;
  }

  /** The pairs of `keys` (transactions of `get`, 64 operations each); a key gone since the list is left out. */
  async #read(keys: readonly string[], signal: AbortSignal): Promise<KvPair[]> {
    const pairs: KvPair[] = [];
    for (let i = 0; i < keys.length; i += TXN_MAX_OPS) {
      let chunk = keys.slice(i, i + TXN_MAX_OPS);
      // A `get` of a key deleted since the list fails the whole transaction: asked again without it.
      while (chunk.length > 0) {
        const { results, failed } = await this.#readTxn(
          chunk.map((Key) => ({ KV: { Verb: 'get', Key } })),
          signal,
        );
        if (failed.size === 0) {
          pairs.push(...results);
          break;
        }
        chunk = chunk.filter((_, n) => !failed.has(n));
      }
    }
    return pairs;
  }

  /**
   * One read-only transaction (Consul answers it without Raft, as other reads). Consul rolls
   * it back with 409 naming every operation that failed; a refused permission is thrown.
   */
  async #readTxn(
    ops: readonly { KV: { Verb: string; Key: string; Index?: number } }[],
    signal: AbortSignal,
  ): Promise<{ results: KvPair[]; failed: ReadonlyMap<number, string> }> {
    const res = await this.client.request<{
      Results?: { KV?: KvPair }[] | null;
      Errors?: { OpIndex: number; What: string }[] | null;
    }>('PUT', '/v1/txn', { body: JSON.stringify(ops), signal, accept: [409], expect: 'object', check: txnAnswerProblem });
    if (res.status !== 409) return { results: (res.body.Results ?? []).flatMap((r) => (r.KV ? [r.KV] : [])), failed: new Map() };
    const errors = res.body.Errors ?? [];
    const denied = errors.find((e) => /permission denied|acl not found/i.test(e.What));
    if (denied) throw new ConsulError(`consul PUT /v1/txn: HTTP 403: ${denied.What}`, 403);
    const failed = new Map(
      errors.filter((e) => Number.isInteger(e.OpIndex) && e.OpIndex >= 0 && e.OpIndex < ops.length).map((e) => [e.OpIndex, e.What]),
    );
    // A 409 that names no operation of ours would make the caller loop: refused as a bad answer.
    if (failed.size === 0) throw new ConsulError(`consul PUT /v1/txn: HTTP 409 naming no operation`, 409);
    return { results: [], failed };
  }

  /** The blocking queries running now, by prefix, with how many watches ride on each (for tests and benchmarks). */
  get queries(): ReadonlyMap<string, number> {
    return new Map([...this.#queries].map(([prefix, q]) => [prefix, q.followers]));
  }

  /** The entries `snapshotFile` holds for `prefix` (as a watch last accepted them); undefined without one. */
  async saved(prefix: string): Promise<readonly KvEntry[] | undefined> {
    const entries = (await this.#loadSnapshot())[prefix];
    return entries === undefined ? undefined : Object.freeze([...entries]);
  }

  /** Waits for pending snapshot writes. */
  async flush(): Promise<void> {
    await this.#snapshotWrite;
  }

  #loadSnapshot(): Promise<Record<string, KvEntry[]>> {
    const file = this.#opts.snapshotFile;
    this.#snapshot ??= (async () => {
      if (!file) return {};
      try {
        // Bounded as the registry's snapshot (a regular file, at most what one Consul answer may
        // be): a FIFO or a device named by mistake is refused, not read without end.
        const text = readBoundedFile(file, CONSUL_MAX_BODY_BYTES, (why) => new Error(why));
        const parsed = JSON.parse(text) as Partial<KvSnapshot>;
        return parsed.prefixes && typeof parsed.prefixes === 'object' ? { ...parsed.prefixes } : {};
      } catch {
        return {};
      }
    })();
    return this.#snapshot;
  }

  /**
   * Keeps the file in step with what Consul said, and the watcher accepted, for each watched
   * prefix; writes are serialised and atomic.
   */
  #remember(prefix: string, entries: KvEntry[]): void {
    const file = this.#opts.snapshotFile;
    if (!file) return;
    this.#snapshotWrite = this.#snapshotWrite.then(async () => {
      try {
        // Merged into what the file had, so that prefixes this process has not watched yet survive.
        const prefixes = await this.#loadSnapshot();
        prefixes[prefix] = entries;
        const data = JSON.stringify({ savedAt: new Date().toISOString(), prefixes } satisfies KvSnapshot);
        await mkdir(dirname(file), { recursive: true });
        const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
        // Owner-only: config read through this store may hold values meant for this service alone.
        await writeFile(tmp, data, { mode: 0o600 });
        await rename(tmp, file);
      } catch (err) {
        this.#logger.warn('could not write the KV snapshot', { file, error: (err as Error).message });
      }
    });
  }
}
