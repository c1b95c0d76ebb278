import { consoleLogger, type KvEntry, type KvStore, type KvWrite, type Logger, type PutOptions, type Unsubscribe } from '@meshlet/core';
import { BlockingWatch } from './blocking-watch.js';
import { ConsulClient, type ConsulClientOptions, ConsulError } from './consul-client.js';

interface KvPair {
  Key: string;
  Value: string | null;
  ModifyIndex: number;
}

export interface ConsulKvStoreOptions extends ConsulClientOptions {
  readonly waitSeconds?: number;
  readonly logger?: Logger;
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

  constructor(options: ConsulKvStoreOptions = {}) {
    this.client = new ConsulClient(options);
    this.#opts = options;
    this.#logger = options.logger ?? consoleLogger('warn', 'meshlet-kv');
  }

  async get(key: string): Promise<KvEntry | undefined> {
    const res = await this.client.request<KvPair[] | undefined>('GET', path(key), { notFound: true });
    const pair = res.body?.[0];
    return pair ? decode(pair) : undefined;
  }

  async list(prefix: string): Promise<readonly KvEntry[]> {
    const res = await this.client.request<KvPair[] | undefined>('GET', `${path(prefix)}?recurse=true`, { notFound: true });
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
      throw new RangeError(`putAll: at most ${TXN_MAX_OPS} writes in one Consul transaction (got ${writes.length})`);
    const res = await this.client.request<{ Errors?: { OpIndex: number; What: string }[] | null }>('PUT', '/v1/txn', {
      body: JSON.stringify(writes.map(txnOp)),
      accept: [409],
    });
    if (res.status !== 409) return true;
    const denied = res.body?.Errors?.find((e) => /permission denied|acl not found/i.test(e.What));
    if (denied) throw new ConsulError(`consul PUT /v1/txn: HTTP 403: ${denied.What}`, 403);
    return false;
  }

  watch(prefix: string, listener: (entries: readonly KvEntry[]) => void): Unsubscribe {
    let failing = false;
    const watch = new BlockingWatch<KvPair[] | undefined>({
      query: (index, wait, signal) =>
        this.client.request<KvPair[] | undefined>('GET', `${path(prefix)}?recurse=true&index=${index}&wait=${wait}s`, {
          signal,
          notFound: true,
          timeoutMs: (wait + wait / 16 + 5) * 1000,
        }),
      waitSeconds: this.#opts.waitSeconds ?? 25,
      probe: (signal) => this.client.probe.wait(signal),
      // ModifyIndex per key tells every change; the values need not be compared.
      signature: (pairs) => (pairs ?? []).map((p) => `${p.Key}@${p.ModifyIndex}`).join('\n'),
      onChange: (pairs) => listener(Object.freeze((pairs ?? []).map(decode).sort((a, b) => (a.key < b.key ? -1 : 1)))),
      onError: (err, consecutive) => {
        if (consecutive === 1) {
          failing = true;
          this.#logger.warn('consul KV unreachable: the last rules and config stay in force', {
            code: 'MESHLET_KV_DEGRADED',
            prefix,
            error: (err as Error).message,
          });
        }
      },
      onRecover: () => {
        if (failing) this.#logger.warn('consul KV reachable again', { code: 'MESHLET_KV_RECOVERED', prefix });
        failing = false;
      },
    }).start();
    return () => watch.stop();
  }
}
