import type { AdoptsLogger } from './logger.js';
import type { Unsubscribe } from './registry.js';

export interface KvEntry {
  readonly key: string;
  readonly value: string;
  /** Increases on every write of this key (Consul's ModifyIndex). */
  readonly revision: number;
}

export interface PutOptions {
  /**
   * Compare-and-set: write only if the key's current revision equals this. 0 means
   * "only if the key does not exist".
   */
  readonly ifRevision?: number;
}

/** One write of `putAll`: a value to set, or `null` to delete the key; with its own compare-and-set. */
export interface KvWrite {
  readonly key: string;
  readonly value: string | null;
  /** As PutOptions.ifRevision. */
  readonly ifRevision?: number;
}

/**
 * A key/value store as a port: where rules and config come from. In memory by default,
 * Consul KV in production. Keys are `/`-separated paths. Optionally AdoptsLogger: a store
 * built without a logger of its own logs through the mesh's once the mesh is given it, and
 * gets it back at close; a store that wraps another passes both on.
 */
export interface KvStore extends Partial<AdoptsLogger> {
  get(key: string): Promise<KvEntry | undefined>;
  /** Every entry whose key starts with `prefix`, sorted by key. */
  list(prefix: string): Promise<readonly KvEntry[]>;
  /** Returns false when a compare-and-set did not match (nothing was written). */
  put(key: string, value: string, options?: PutOptions): Promise<boolean>;
  delete(key: string, options?: PutOptions): Promise<boolean>;
  /**
   * All of `writes` or none of them: returns false, having written nothing, when any
   * compare-and-set does not match. (Consul: one transaction.)
   */
  putAll(writes: readonly KvWrite[]): Promise<boolean>;
  /**
   * Calls `listener` with the entries under `prefix` now and after every change under it.
   * A listener that returns `false` refused what it was given (a rule document that did not
   * validate): a store that keeps a snapshot for outages keeps its last accepted entries
   * for the prefix instead, so that a restart during an outage never brings back a refused one.
   */
  watch(prefix: string, listener: (entries: readonly KvEntry[]) => unknown): Unsubscribe;
  /**
   * Optional: the entries under `prefix` this store kept for an outage (ConsulKvStore's
   * `snapshotFile`), or undefined when it kept none. Config starts from them when the store
   * cannot be read at start.
   */
  saved?(prefix: string): Promise<readonly KvEntry[] | undefined>;
  /**
   * Optional: true while the store cannot be read and the entries last read stay in force
   * (ConsulKvStore during a Consul outage): the mesh's `meshlet_degraded{what="kv"}`. A store
   * that wraps another (TsfRuleStore) tells the wrapped one's.
   */
  readonly degraded?: boolean;
}
