import { randomUUID } from 'node:crypto';
import { type FSWatcher, type Stats, watch } from 'node:fs';
import { link, mkdir, open, readdir, readFile, rename, stat, unlink, utimes, writeFile } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { type Clock, sleep, systemClock } from './clock.js';
import { MeshletError } from './errors.js';
import type { KvEntry, KvStore, KvWrite, PutOptions } from './kv-store.js';
import { wholeNumberOption } from './option-checks.js';
import type { Unsubscribe } from './registry.js';

/**
 * A KvStore in a directory: key `meshlet/rules/orders` is the file
 * `<dir>/meshlet/rules/orders`. For the embedded default, so that ops can edit rules
 * with an editor and see them applied. A file's revision is its modification time in
 * microseconds; each write of the store sets one past the time it replaces (the file
 * system's clock is coarse: two writes in one tick would share a revision). Writes
 * go through a temporary file and a rename, so a reader never sees
 * half a document. Each write checks and writes holding the lock file `<dir>/.lock`, so
 * writers in other processes (two operators' CLIs) or other stores on the same directory
 * take turns and a compare-and-set conflict is reported, never overwritten. Watches follow
 * the directory with fs.watch and re-read on change.
 */
export class FileKvStore implements KvStore {
  readonly #dir: string;
  readonly #lock: string;
  readonly #clock: Clock;
  readonly #staleLockMs: number;
  readonly #lockRetries: number;
  /** The lock file this store last found held, and how old it was then (see #tookOverStale). */
  #held: { readonly ino: number; readonly mtimeMs: number; readonly since: number; readonly ageThen: number } | undefined;
  readonly #watchers = new Set<{ prefix: string; listener: (entries: readonly KvEntry[]) => void; signature: string }>();
  #fsWatcher: FSWatcher | undefined;
  #pending: NodeJS.Timeout | undefined;
  #writes: Promise<unknown> = Promise.resolve();

  constructor(dir: string, options: FileKvStoreOptions = {}) {
    this.#dir = dir;
    this.#lock = join(dir, LOCK_FILE);
    this.#clock = options.clock ?? systemClock;
    this.#staleLockMs = wholeNumberOption(options.staleLockMs, 'staleLockMs', 1, 3_600_000, FILE_KV_STALE_LOCK_MS);
    this.#lockRetries = wholeNumberOption(options.lockRetries, 'lockRetries', 0, 100_000, FILE_KV_LOCK_RETRIES);
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

  put(key: string, value: string, options?: PutOptions): Promise<boolean> {
    return this.putAll([withRevision({ key, value }, options)]);
  }

  delete(key: string, options?: PutOptions): Promise<boolean> {
    return this.putAll([withRevision({ key, value: null }, options)]);
  }

  /**
   * Checks every compare-and-set, then writes in order, holding the directory's lock, so a
   * conflicting writer (in this process or another) takes neither; a directory has no
   * transactions, so this is not all-or-nothing against a crash half-way. The files written
   * get one modification time, so they share one revision, as the keys of a Consul
   * transaction share its index (a rule document and its history entry: `versionAt`).
   */
  async putAll(writes: readonly KvWrite[]): Promise<boolean> {
    return this.#serial(async () => {
      // One stat per key: its revision for the compare-and-set, and the floor of the time
      // written. A revision is a modification time, so each write's must be past the one it
      // replaces: two writes within the file system's clock tick (coarse: a few ms on Linux)
      // got one time, and a compare-and-set read before the second still matched after it
      // (a lost update between two processes, 36 of 40 increments kept), and a watcher saw
      // no change.
      const times = await Promise.all(writes.map((w) => this.#mtimeOf(w.key)));
      const matched = writes.every(
        (w, i) => w.ifRevision === undefined || (times[i] === 0 ? 0 : revisionOf(times[i] as number)) === w.ifRevision,
      );
      if (!matched) return false;
      const floor = Math.max(0, ...times) / 1000;
      let mtime: number | undefined;
      for (const w of writes) mtime = await this.#write(w.key, w.value, mtime, floor);
      return true;
    });
  }

  /**
   * Runs `write` after every write of this store started before it, holding the directory's
   * lock: check-then-write stays one step against every writer of the directory.
   */
  #serial<T>(write: () => Promise<T>): Promise<T> {
    const run = this.#writes.then(() => this.#locked(write));
    this.#writes = run.catch(() => {});
    return run;
  }

  /**
   * Takes the lock file (exclusive create), runs `write`, removes the lock. A lock held by
   * another writer is waited on, FILE_KV_LOCK_RETRY_MS at a time, `lockRetries` times, then
   * refused (FileKvLockedError); one older than `staleLockMs` is a crashed writer's and is
   * taken over, so a crash does not lock the store for good. The waits and a lock's age
   * are on the store's clock (see #tookOverStale).
   */
  async #locked<T>(write: () => Promise<T>): Promise<T> {
    await mkdir(this.#dir, { recursive: true });
    const token = randomUUID();
    for (let attempt = 0; ; attempt++) {
      try {
        const handle = await open(this.#lock, 'wx');
        try {
          await handle.writeFile(token);
        } finally {
          await handle.close();
        }
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const stale = await this.#tookOverStale(token);
      if (stale === true) continue;
      // A lock old enough to take over is waited for until watched long enough, whatever
      // lockRetries says: each process's watch starts at zero (a CLI run makes a store).
      if (stale === false && attempt >= this.#lockRetries) throw new FileKvLockedError(this.#lock, this.#staleLockMs);
      // Kept alive: a script whose only work is this write must not exit while it waits.
      await sleep(this.#clock, FILE_KV_LOCK_RETRY_MS, undefined, { keepAlive: true });
    }
    try {
      return await write();
    } finally {
      await this.#unlock(token);
    }
  }

  /**
   * Moves a stale lock aside and removes it. A lock's age when this store first finds it
   * held is its file's: the store clock's wall time against the modification time, the only
   * age a file another process made has (every process on the directory reads the wall
   * clock alike; none can read another's monotonic clock). From then on the store's
   * monotonic clock adds the time it has watched the same file, which a step of the wall
   * clock does not move: the age first read is held within [0, staleLockMs], and a lock is
   * stale only once watched FILE_KV_STALE_LOCK_WATCH_MS too. So a step forward cannot make
   * a live writer's lock (held for milliseconds) stale, and a step back delays a crashed
   * writer's by staleLockMs of watching at most, not by the step. The move is checked
   * against the file found stale (same inode and modification time: a fresh lock may reuse
   * a freed inode); a fresh lock moved aside is put back (restoreLock), never over a lock
   * created since. `'watching'`: stale by its age, not yet watched long enough.
   */
  async #tookOverStale(token: string): Promise<boolean | 'watching'> {
    let found: Stats;
    try {
      found = await stat(this.#lock);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return true; // released: try again now
      throw err;
    }
    const now = this.#clock.now();
    let held = this.#held;
    if (held === undefined || held.ino !== found.ino || held.mtimeMs !== found.mtimeMs) {
      const age = Math.min(Math.max(this.#clock.wallNow() - found.mtimeMs, 0), this.#staleLockMs);
      held = this.#held = { ino: found.ino, mtimeMs: found.mtimeMs, since: now, ageThen: age };
    }
    const watched = now - held.since;
    if (held.ageThen + watched < this.#staleLockMs) return false;
    if (watched < Math.min(FILE_KV_STALE_LOCK_WATCH_MS, this.#staleLockMs)) return 'watching';
    const aside = `${this.#lock}.${token}.stale`;
    try {
      await rename(this.#lock, aside);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return true; // another writer took it over
      throw err;
    }
    const moved = await stat(aside);
    if (moved.ino !== found.ino || moved.mtimeMs !== found.mtimeMs) {
      await restoreLock(aside, this.#lock);
      return false;
    }
    await unlink(aside);
    return true;
  }

  /** Removes the lock if it is still this writer's (a writer stalled past staleLockMs lost it). */
  async #unlock(token: string): Promise<void> {
    try {
      if ((await readFile(this.#lock, 'utf8')) === token) await unlink(this.#lock);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }

  /**
   * Writes (or, for null, deletes) one key's file; with `mtime` (seconds), gives the file
   * that modification time before it appears; without, the file system's, or 1 ms past
   * `floor` (seconds) when that is not later. Returns the written file's modification time
   * in seconds (`mtime` again for a delete).
   */
  async #write(key: string, value: string | null, mtime: number | undefined, floor: number): Promise<number | undefined> {
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
      if (mtime === undefined) {
        const fsTime = (await stat(tmp)).mtimeMs / 1000;
        written = fsTime > floor ? fsTime : floor + 0.001;
        if (written !== fsTime) await utimes(tmp, written, written);
      } else await utimes(tmp, mtime, mtime);
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

  /** The modification time of `key`'s file in ms (`revisionOf` reads it); 0 when there is none. */
  async #mtimeOf(key: string): Promise<number> {
    try {
      return (await stat(this.#path(key))).mtimeMs;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
      throw err;
    }
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

/**
 * Puts a lock file moved aside back at `lock`, unless a lock is there now: a hard link
 * fails with EEXIST where a rename would replace that lock, and its writer would go on with
 * its lock file gone (after the other's unlock, a third could take the lock while it
 * writes). True when it was put back; when not, the writer of the moved lock has lost it
 * (its unlock checks its token and leaves the newer lock in place). Exported for the
 * store's tests, not from the package.
 */
export async function restoreLock(aside: string, lock: string): Promise<boolean> {
  let restored = true;
  try {
    await link(aside, lock);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    restored = false;
  }
  await unlink(aside);
  return restored;
}

const withRevision = (w: KvWrite, options: PutOptions | undefined): KvWrite =>
  options?.ifRevision === undefined ? w : { ...w, ifRevision: options.ifRevision };

const revisionOf = (mtimeMs: number) => Math.round(mtimeMs * 1000);

const LOCK_FILE = '.lock';
/** A lock file older than this is taken to be a crashed writer's, and taken over. */
export const FILE_KV_STALE_LOCK_MS = 30_000;
/**
 * How long a writer watches a held lock (the same file, on its monotonic clock) before it
 * may take it over, however old the file says it is: longer than a live write holds it.
 */
export const FILE_KV_STALE_LOCK_WATCH_MS = 1_000;
/** How long a writer waits between tries of a held lock. */
export const FILE_KV_LOCK_RETRY_MS = 10;
/** How many times a writer tries a held lock again before refusing: 3 s at FILE_KV_LOCK_RETRY_MS. */
export const FILE_KV_LOCK_RETRIES = 300;

export interface FileKvStoreOptions {
  /**
   * Waits between tries of a held lock, and a lock's age, are measured on this clock
   * (default: the system's): first its file's modification time against `wallNow()`, as
   * every process sharing the directory reads it, then the time watched on `now()`.
   */
  readonly clock?: Clock;
  /** A lock file older than this (ms) is taken over (default FILE_KV_STALE_LOCK_MS). */
  readonly staleLockMs?: number;
  /** Tries of a held lock after the first, FILE_KV_LOCK_RETRY_MS apart, before a write is refused (default FILE_KV_LOCK_RETRIES). */
  readonly lockRetries?: number;
}

/** Another writer held the directory's lock file through every retry; nothing was written. */
export class FileKvLockedError extends MeshletError {
  static readonly code = 'MESHLET_KV_LOCKED';
  readonly lockFile: string;
  constructor(lockFile: string, staleLockMs: number) {
    super(
      FileKvLockedError.code,
      `${lockFile}: another writer holds the lock; nothing written. Retry; a lock older than ${staleLockMs / 1000} s is taken over`,
    );
    this.lockFile = lockFile;
  }
}
