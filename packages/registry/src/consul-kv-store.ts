import { mkdir, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import {
  type Clock,
  consoleLogger,
  type KvEntry,
  type KvStore,
  type KvWrite,
  type Logger,
  MeshletError,
  type PutOptions,
  readBoundedFile,
  systemClock,
  type Unsubscribe,
} from '@meshlet/core';
import { BlockingWatch } from './blocking-watch.js';
import { CONSUL_MAX_BODY_BYTES, ConsulClient, type ConsulClientOptions, ConsulError } from './consul-client.js';

interface KvPair {
  Key: string;
  Value: string | null;
  ModifyIndex: number;
}

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
}

/** What `snapshotFile` holds. */
interface KvSnapshot {
  readonly savedAt: string;
  readonly prefixes: Record<string, KvEntry[]>;
}

const path = (key: string) => `/v1/kv/${key.split('/').map(encodeURIComponent).join('/')}`;
const decode = (p: KvPair): KvEntry => ({
  key: p.Key,
  value: p.Value === null ? '' : Buffer.from(p.Value, 'base64').toString('utf8'),
  revision: p.ModifyIndex,
});

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
 * queries on the prefix; during an outage a watch stays quiet (the last state holds) and
 * resyncs when Consul returns.
 */
export class ConsulKvStore implements KvStore {
  readonly client: ConsulClient;
  readonly #opts: ConsulKvStoreOptions;
  readonly #logger: Logger;
  #snapshot: Promise<Record<string, KvEntry[]>> | undefined;
  #snapshotWrite: Promise<void> = Promise.resolve();
  #snapshotLogged = false;

  constructor(options: ConsulKvStoreOptions = {}) {
    this.client = new ConsulClient(options);
    this.#opts = options;
    this.#logger = options.logger ?? consoleLogger('warn', 'meshlet-kv');
  }

  async get(key: string): Promise<KvEntry | undefined> {
    const res = await this.client.request<KvPair[] | undefined>('GET', path(key), { notFound: true, expect: 'list' });
    const pair = res.body?.[0];
    return pair ? decode(pair) : undefined;
  }

  async list(prefix: string): Promise<readonly KvEntry[]> {
    const res = await this.client.request<KvPair[] | undefined>('GET', `${path(prefix)}?recurse=true`, {
      notFound: true,
      expect: 'list',
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
    });
    if (res.status !== 409) return true;
    const denied = res.body?.Errors?.find((e) => /permission denied|acl not found/i.test(e.What));
    if (denied) throw new ConsulError(`consul PUT /v1/txn: HTTP 403: ${denied.What}`, 403);
    return false;
  }

  watch(prefix: string, listener: (entries: readonly KvEntry[]) => unknown): Unsubscribe {
    let failing = false;
    let live = false;
    let fromSnapshot = false;
    let stopped = false;
    let cancelWait = () => {};
    /** Consul has not answered yet: the snapshot's entries for the prefix (with `orEmpty`, none known means none). */
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
      listener(Object.freeze([...(saved ?? [])]));
    };
    const watch = new BlockingWatch<KvPair[] | undefined>({
      query: (index, wait, signal) =>
        this.client.request<KvPair[] | undefined>('GET', `${path(prefix)}?recurse=true&index=${index}&wait=${wait}s`, {
          signal,
          notFound: true,
          expect: 'list',
          timeoutMs: (wait + wait / 16 + 5) * 1000,
        }),
      waitSeconds: this.#opts.waitSeconds ?? 25,
      probe: (signal) => this.client.probe.wait(signal),
      // ModifyIndex per key tells every change; the values need not be compared.
      signature: (pairs) => (pairs ?? []).map((p) => `${p.Key}@${p.ModifyIndex}`).join('\n'),
      onChange: (pairs) => {
        live = true;
        cancelWait();
        const entries = (pairs ?? []).map(decode).sort((a, b) => (a.key < b.key ? -1 : 1));
        // Only what the listener accepted is kept for a restart during an outage.
        if (listener(Object.freeze(entries)) !== false) this.#remember(prefix, entries);
      },
      onError: (err, consecutive) => {
        if (consecutive === 1) {
          failing = true;
          this.#logger.warn('consul KV query failed: the last rules and config stay in force', {
            code: 'MESHLET_KV_DEGRADED',
            prefix,
            error: (err as Error).message,
          });
          void fallBack('a consul query failed', true);
        }
      },
      onRecover: () => {
        if (failing) this.#logger.warn('consul KV reachable again', { code: 'MESHLET_KV_RECOVERED', prefix });
        failing = false;
      },
    }).start();
    if (this.#opts.snapshotFile && !live)
      cancelWait = (this.#opts.clock ?? systemClock).setTimeout(
        () => void fallBack(`consul has not answered within ${this.#opts.snapshotWaitMs ?? 100} ms`, false),
        this.#opts.snapshotWaitMs ?? 100,
      );
    return () => {
      stopped = true;
      cancelWait();
      watch.stop();
    };
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
