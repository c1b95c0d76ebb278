import type { KvEntry, KvStore, KvWrite, PutOptions } from './kv-store.js';
import type { Unsubscribe } from './registry.js';

/** The embedded KvStore. Revisions come from one counter, as Consul's indexes do. */
export class InMemoryKvStore implements KvStore {
  readonly #entries = new Map<string, KvEntry>();
  readonly #watchers = new Set<{ prefix: string; listener: (entries: readonly KvEntry[]) => void }>();
  #revision = 0;

  async get(key: string): Promise<KvEntry | undefined> {
    return this.#entries.get(key);
  }

  async list(prefix: string): Promise<readonly KvEntry[]> {
    return this.#list(prefix);
  }

  async put(key: string, value: string, options?: PutOptions): Promise<boolean> {
    if (!this.#matches(key, options)) return false;
    this.#entries.set(key, { key, value, revision: ++this.#revision });
    this.#changed(key);
    return true;
  }

  async delete(key: string, options?: PutOptions): Promise<boolean> {
    if (!this.#matches(key, options)) return false;
    if (this.#entries.delete(key)) {
      this.#revision++;
      this.#changed(key);
    }
    return true;
  }

  async putAll(writes: readonly KvWrite[]): Promise<boolean> {
    if (!writes.every((w) => this.#matches(w.key, w))) return false;
    for (const w of writes) {
      if (w.value === null) this.#entries.delete(w.key);
      else this.#entries.set(w.key, { key: w.key, value: w.value, revision: this.#revision + 1 });
    }
    // One revision for the lot, as a Consul transaction has one index.
    this.#revision++;
    const keys = writes.map((w) => w.key);
    for (const w of [...this.#watchers]) if (keys.some((k) => k.startsWith(w.prefix))) w.listener(this.#list(w.prefix));
    return true;
  }

  watch(prefix: string, listener: (entries: readonly KvEntry[]) => void): Unsubscribe {
    const w = { prefix, listener };
    this.#watchers.add(w);
    listener(this.#list(prefix));
    return () => this.#watchers.delete(w);
  }

  #matches(key: string, options: PutOptions | undefined): boolean {
    if (options?.ifRevision === undefined) return true;
    return (this.#entries.get(key)?.revision ?? 0) === options.ifRevision;
  }

  #list(prefix: string): readonly KvEntry[] {
    const out = [...this.#entries.values()].filter((e) => e.key.startsWith(prefix));
    return Object.freeze(out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)));
  }

  #changed(key: string): void {
    for (const w of [...this.#watchers]) if (key.startsWith(w.prefix)) w.listener(this.#list(w.prefix));
  }
}
