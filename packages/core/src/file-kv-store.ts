import { type FSWatcher, watch } from 'node:fs';
import { mkdir, readdir, readFile, rename, stat, unlink, utimes, writeFile } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { MeshletError } from './errors.js';
import type { KvEntry, KvStore, KvWrite, PutOptions } from './kv-store.js';
import type { Unsubscribe } from './registry.js';

/**
 * A KvStore in a directory: key `meshlet/rules/orders` is the file
 * `<dir>/meshlet/rules/orders`. For the embedded default, so that ops can edit rules
 * with an editor and see them applied. A file's revision is its modification time in
 * microseconds, so compare-and-set is only as fine as the file system's clock. Writes
 * go through a temporary file and a rename, so a reader never sees
 * half a document. Watches follow the directory with fs.watch and re-read on change.
 */
export class FileKvStore implements KvStore {
  readonly #dir: string;
  readonly #watchers = new Set<{ prefix: string; listener: (entries: readonly KvEntry[]) => void; signature: string }>();
  #fsWatcher: FSWatcher | undefined;
  #pending: NodeJS.Timeout | undefined;
  #writes: Promise<unknown> = Promise.resolve();

  constructor(dir: string) {
    this.#dir = dir;
  }

  async get(key: string): Promise<KvEntry | undefined> {
    const path = this.#path(key);
    try {
      const [value, info] = await Promise.all([readFile(path, 'utf8'), stat(path)]);
      return { key, value, revision: revisionOf(info.mtimeMs) };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  async list(prefix: string): Promise<readonly KvEntry[]> {
    let names: string[];
    try {
      names = await readdir(this.#dir, { recursive: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const keys = names
      .map((n) => n.split(sep).join('/'))
      .filter((k) => k.startsWith(prefix) && !k.split('/').some((part) => part.startsWith('.')))
      .sort();
    const entries = await Promise.all(keys.map((k) => this.get(k).catch(() => undefined)));
    return entries.filter((e): e is KvEntry => e !== undefined);
  }

  async put(key: string, value: string, options?: PutOptions): Promise<boolean> {
    return this.#serial(async () => {
      if (!(await this.#matches(key, options))) return false;
      await this.#write(key, value);
      return true;
    });
  }

  async delete(key: string, options?: PutOptions): Promise<boolean> {
    return this.#serial(async () => {
      if (!(await this.#matches(key, options))) return false;
      await this.#write(key, null);
      return true;
    });
  }

  /**
   * Checks every compare-and-set, then writes in order. Writes of this store run one at a
   * time, so a conflicting writer in this process takes neither; a directory has no
   * transactions, so this is not all-or-nothing against a crash half-way or another
   * process (the embedded default has one writer, the ops person's CLI). The files written
   * get one modification time, so they share one revision, as the keys of a Consul
   * transaction share its index (a rule document and its history entry: `versionAt`).
   */
  async putAll(writes: readonly KvWrite[]): Promise<boolean> {
    return this.#serial(async () => {
      const matched = await Promise.all(writes.map((w) => this.#matches(w.key, w)));
      if (!matched.every(Boolean)) return false;
      let mtime: number | undefined;
      for (const w of writes) mtime = await this.#write(w.key, w.value, mtime);
      return true;
    });
  }

  /** Runs `write` after every write started before it: check-then-write stays one step. */
  #serial<T>(write: () => Promise<T>): Promise<T> {
    const run = this.#writes.then(write);
    this.#writes = run.catch(() => {});
    return run;
  }

  /**
   * Writes (or, for null, deletes) one key's file; with `mtime` (seconds), gives the file
   * that modification time before it appears. Returns the written file's modification time
   * in seconds (`mtime` again for a delete).
   */
  async #write(key: string, value: string | null, mtime?: number): Promise<number | undefined> {
    const path = this.#path(key);
    let written = mtime;
    if (value === null) {
      try {
        await unlink(path);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
    } else {
      await mkdir(dirname(path), { recursive: true });
      const tmp = join(dirname(path), `.${process.pid}.${Date.now()}.tmp`);
      await writeFile(tmp, value);
      if (mtime === undefined) written = (await stat(tmp)).mtimeMs / 1000;
      else await utimes(tmp, mtime, mtime);
      // rename keeps the modification time: readers see the file whole and with it.
      await rename(tmp, path);
    }
    this.#changed();
    return written;
  }

  watch(prefix: string, listener: (entries: readonly KvEntry[]) => void): Unsubscribe {
    const w = { prefix, listener, signature: '\0' };
    this.#watchers.add(w);
    this.#ensureFsWatch();
    void this.#refresh(w);
    return () => {
      this.#watchers.delete(w);
      if (this.#watchers.size === 0) {
        this.#fsWatcher?.close();
        this.#fsWatcher = undefined;
      }
    };
  }

  #path(key: string): string {
    const path = join(this.#dir, key);
    const rel = relative(this.#dir, path);
    if (key.length === 0 || rel.startsWith('..') || rel === '' || key.split('/').some((p) => p === '' || p.startsWith('.'))) {
      throw new MeshletError('MESHLET_BAD_KEY', `key "${key}": must be a relative path of non-empty parts, none starting with "."`);
    }
    return path;
  }

  async #matches(key: string, options: PutOptions | undefined): Promise<boolean> {
    if (options?.ifRevision === undefined) return true;
    return ((await this.get(key))?.revision ?? 0) === options.ifRevision;
  }

  #ensureFsWatch(): void {
    if (this.#fsWatcher) return;
    try {
      this.#fsWatcher = watch(this.#dir, { recursive: true, persistent: false }, () => this.#changed());
      this.#fsWatcher.on('error', () => this.#changed());
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      // The directory does not exist yet: make it, then watch it.
      void mkdir(this.#dir, { recursive: true }).then(() => this.#ensureFsWatch());
    }
  }

  /** Coalesces bursts of file events (an editor's save is several) into one re-read. */
  #changed(): void {
    if (this.#pending) return;
    this.#pending = setTimeout(() => {
      this.#pending = undefined;
      for (const w of this.#watchers) void this.#refresh(w);
    }, 20);
    this.#pending.unref();
  }

  async #refresh(w: { prefix: string; listener: (entries: readonly KvEntry[]) => void; signature: string }): Promise<void> {
    const entries = await this.list(w.prefix);
    const signature = entries.map((e) => `${e.key}@${e.revision}`).join('\n');
    if (signature === w.signature || !this.#watchers.has(w)) return;
    w.signature = signature;
    w.listener(entries);
  }
}

const revisionOf = (mtimeMs: number) => Math.round(mtimeMs * 1000);
