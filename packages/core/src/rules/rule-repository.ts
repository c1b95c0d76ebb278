import { type Clock, systemClock } from '../clock.js';
import { MeshletError } from '../errors.js';
import type { KvEntry, KvStore } from '../kv-store.js';
import type { Logger } from '../logger.js';
import { type ParseRuleDocumentOptions, parseRuleDocument, type RuleDocument, type RuleKind } from './rule-document.js';
import { RULES_PREFIX } from './rule-watcher.js';

export const RULES_HISTORY_PREFIX = 'meshlet/rules-history/';

/** A change's reason is kept to this many characters (a history entry stays small). */
export const MAX_REASON_LENGTH = 1_000;
/** A change's author is kept to this many characters, when written and when read back. */
export const MAX_AUTHOR_LENGTH = 256;
/** The highest version: a history key names its version in ten digits. */
export const MAX_RULE_VERSION = 9_999_999_999;
/** Skipped history entries a read reports (and logs) by key; the rest are only counted. */
export const MAX_REPORTED_HISTORY_ENTRIES = 5;
/** The time range of a Date (ECMAScript), in ms either side of 1970: an `at` outside it cannot be shown. */
const MAX_TIME = 8.64e15;
const ACTIONS: readonly RuleVersion['action'][] = ['apply', 'rollback', 'delete'];
const VERSION_KEY = /^\d{10}$/;

/** One accepted change of a service's rules. */
export interface RuleVersion {
  readonly version: number;
  /** Epoch milliseconds, on the wall clock of the process that wrote it. */
  readonly at: number;
  readonly author: string;
  /** Why, as the author said (`meshlet rules apply --reason`, the console); absent when not given. */
  readonly reason?: string;
  readonly action: 'apply' | 'rollback' | 'delete';
  /** For a rollback: the version restored. */
  readonly restored?: number;
  /** The document text, or null for a delete. */
  readonly document: string | null;
}

/** A history entry that is not one this repository writes (a hand edit, another tool), skipped when read. */
export interface SkippedRuleVersion {
  /** Its key, at most 200 characters of it. */
  readonly key: string;
  /** Why it was skipped. */
  readonly reason: string;
}

/** A service's history as read: the valid versions, and what was skipped. */
export interface RuleHistory {
  /** Every valid version, oldest first. */
  readonly versions: readonly RuleVersion[];
  /** How many entries were skipped. */
  readonly skipped: number;
  /** The first MAX_REPORTED_HISTORY_ENTRIES of them. */
  readonly skippedEntries: readonly SkippedRuleVersion[];
}

/** The rules changed in the store between read and write; read again and retry. */
export class RuleConflictError extends MeshletError {
  static readonly code = 'MESHLET_RULE_CONFLICT';
  constructor(service: string) {
    super(RuleConflictError.code, `${service}: the rules changed since they were read; read them again and retry`);
  }
}

/**
 * The write side of rules: validates before writing, writes with compare-and-set, and
 * keeps every accepted version under `meshlet/rules-history/<service>/` so that a
 * rollback is one call. Used by the CLI and by `mesh.rules`.
 */
export class RuleRepository {
  readonly #kv: KvStore;
  readonly #kinds: readonly RuleKind<unknown>[];
  readonly #clock: Clock;
  readonly #parse: ParseRuleDocumentOptions;
  readonly #logger: Logger | undefined;
  /** Per service, the skipped entries last logged: a read logs them again only when they change. */
  readonly #logged = new Map<string, string>();

  /**
   * `unknownSections: 'keep'` stores sections no kind knows (the CLI's `--allow-unknown`);
   * by default they are refused, as the watchers of a mesh refuse them. `logger` hears of
   * history entries skipped when read (`MESHLET_BAD_RULE_HISTORY`), once per change.
   */
  constructor(opts: {
    kv: KvStore;
    kinds: readonly RuleKind<unknown>[];
    clock?: Clock;
    unknownSections?: 'refuse' | 'keep';
    logger?: Logger;
  }) {
    this.#kv = opts.kv;
    this.#kinds = opts.kinds;
    this.#clock = opts.clock ?? systemClock;
    this.#parse = opts.unknownSections ? { unknownSections: opts.unknownSections } : {};
    this.#logger = opts.logger;
  }

  /**
   * Validates a document without writing it, with the same parser (bounds, kinds, unknown
   * sections) a RuleWatcher applies; throws RuleValidationError naming the field.
   */
  validate(text: string, service?: string): RuleDocument {
    return parseRuleDocument(text, this.#kinds, service, this.#parse);
  }

  /** The document in force and its store revision (0 when there is none). */
  async current(service: string): Promise<{ text: string | undefined; revision: number }> {
    const entry = await this.#kv.get(`${RULES_PREFIX}${service}`);
    return { text: entry?.value, revision: entry?.revision ?? 0 };
  }

  /**
   * Validates and writes `text` as the rules of its service. With `ifRevision`, refuses
   * (RuleConflictError) if the document changed since it was read at that revision.
   */
  async apply(text: string, opts: { author: string; ifRevision?: number; reason?: string }): Promise<RuleVersion> {
    // The whole document is validated before anything is written: an apply writes a valid
    // document or nothing.
    const doc = this.validate(text);
    return this.#write(doc.service, text, { author: opts.author, action: 'apply', ifRevision: opts.ifRevision, reason: opts.reason });
  }

  /** Removes a service's rules (recorded in history, so it can be rolled back too). */
  async remove(service: string, opts: { author: string; ifRevision?: number }): Promise<RuleVersion> {
    return this.#write(service, null, { author: opts.author, action: 'delete', ifRevision: opts.ifRevision });
  }

  /** Every accepted version, oldest first (entries that are not versions are skipped: readHistory). */
  async history(service: string): Promise<readonly RuleVersion[]> {
    return (await this.readHistory(service)).versions;
  }

  /**
   * The history as read: every valid version, oldest first, and the entries skipped because
   * they are not versions this repository writes (not JSON, a version that is not a whole
   * number from 1 to MAX_RULE_VERSION or not the one its key names, an `at` that is not a
   * time, no author or document…). A skipped entry blocks nothing: the next version follows
   * the highest key. Authors and reasons are cut to their bounds.
   */
  async readHistory(service: string): Promise<RuleHistory> {
    const entries = await this.#kv.list(`${RULES_HISTORY_PREFIX}${service}/`);
    return this.#read(service, entries).history;
  }

  #read(service: string, entries: readonly KvEntry[]): { history: RuleHistory; highestKey: number } {
    const prefix = `${RULES_HISTORY_PREFIX}${service}/`;
    const versions: RuleVersion[] = [];
    const skippedEntries: SkippedRuleVersion[] = [];
    let skipped = 0;
    let highestKey = 0;
    for (const entry of entries) {
      const name = entry.key.slice(prefix.length);
      // Whatever it holds, a key that names a version is taken: the next version comes after it.
      if (VERSION_KEY.test(name)) highestKey = Math.max(highestKey, Number(name));
      const read = readVersion(name, entry.value);
      if (typeof read !== 'string') {
        versions.push(read);
        continue;
      }
      skipped++;
      if (skippedEntries.length < MAX_REPORTED_HISTORY_ENTRIES) skippedEntries.push({ key: entry.key.slice(0, 200), reason: read });
    }
    versions.sort((a, b) => a.version - b.version);
    if (skipped > 0) this.#logSkipped(service, skipped, skippedEntries);
    else this.#logged.delete(service);
    return { history: { versions, skipped, skippedEntries }, highestKey };
  }

  #logSkipped(service: string, skipped: number, entries: readonly SkippedRuleVersion[]): void {
    if (!this.#logger) return;
    const signature = `${skipped} ${entries.map((e) => e.key).join(' ')}`;
    if (this.#logged.get(service) === signature) return;
    // Bounded by the services this process writes; forgetting them all only logs again.
    if (this.#logged.size >= 1_000) this.#logged.clear();
    this.#logged.set(service, signature);
    this.#logger.warn('rule history entries skipped: they are not versions; remove them from the store', {
      code: BAD_HISTORY_CODE,
      service,
      skipped,
      entries,
    });
  }

  /**
   * The version whose write put the document at store `revision` in force (what a span's
   * `io.meshlet.rules.revision` names): the document and its history entry are written in
   * one transaction, so they share a revision (Consul's index; one revision for the lot in
   * memory; one modification time in a directory). Undefined when no version was written
   * at that revision (a document written to the store by hand, or history deleted).
   */
  async versionAt(service: string, revision: number): Promise<RuleVersion | undefined> {
    if (!Number.isSafeInteger(revision) || revision <= 0) return undefined;
    const entries = await this.#kv.list(`${RULES_HISTORY_PREFIX}${service}/`);
    const entry = entries.find((e) => e.revision === revision);
    if (!entry) return undefined;
    const read = readVersion(entry.key.slice(`${RULES_HISTORY_PREFIX}${service}/`.length), entry.value);
    return typeof read === 'string' ? undefined : read;
  }

  /**
   * Restores version `to` (default: the version before the newest) as a new version.
   * Rolling back twice returns to where it started, as `git revert` would. With
   * `ifRevision`, refuses (RuleConflictError) if the document changed since it was read at
   * that revision, as `apply` does.
   */
  async rollback(service: string, opts: { author: string; to?: number; ifRevision?: number; reason?: string }): Promise<RuleVersion> {
    const target = this.rollbackTarget(service, await this.history(service), opts.to);
    if (target.document !== null) this.validate(target.document, service);
    return this.#write(service, target.document, {
      author: opts.author,
      action: 'rollback',
      restored: target.version,
      ifRevision: opts.ifRevision,
      reason: opts.reason,
    });
  }

  /**
   * The version a rollback to `to` restores, from `versions` (as `history` reads them):
   * by default the one before the newest. Before the first version there were no rules:
   * version 0, the default when there is one version, restores that (the document is
   * removed; recorded, so it can be rolled back too). Throws MESHLET_NO_RULE_VERSION when
   * there is no such version (0 needs a first version: without history, the rules in force
   * were written outside the repository, and no rollback removes them).
   */
  rollbackTarget(service: string, versions: readonly RuleVersion[], to?: number): RuleVersion {
    const none: RuleVersion = { version: 0, at: 0, author: '', action: 'delete', document: null };
    const wanted = to ?? (versions.length === 1 ? 0 : versions.at(-2)?.version);
    const target = wanted === 0 ? (versions.length > 0 ? none : undefined) : versions.find((v) => v.version === wanted);
    if (!target) {
      const known = versions.map((v) => v.version).join(', ') || 'none';
      throw new MeshletError(
        'MESHLET_NO_RULE_VERSION',
        `${service}: no version ${to ?? 'before the current one'} to roll back to (versions: ${known})`,
      );
    }
    return target;
  }

  async #write(
    service: string,
    text: string | null,
    how: {
      author: string;
      action: RuleVersion['action'];
      ifRevision?: number | undefined;
      restored?: number;
      reason?: string | undefined;
    },
  ): Promise<RuleVersion> {
    const key = `${RULES_PREFIX}${service}`;
    const current = await this.#kv.get(key);
    const revision = current?.revision ?? 0;
    if (how.ifRevision !== undefined && how.ifRevision !== revision) throw new RuleConflictError(service);
    const { highestKey } = this.#read(service, await this.#kv.list(`${RULES_HISTORY_PREFIX}${service}/`));
    // Every version read names its own key (readVersion), so the highest key is the newest.
    const next = highestKey + 1;
    if (next > MAX_RULE_VERSION) {
      throw new MeshletError(
        'MESHLET_RULE_HISTORY_FULL',
        `${service}: the history holds version ${MAX_RULE_VERSION}, the last one a key can name; remove the entries above the versions in use`,
      );
    }
    const version: RuleVersion = {
      version: next,
      at: this.#clock.wallNow(),
      author: how.author.slice(0, MAX_AUTHOR_LENGTH),
      ...(how.reason ? { reason: how.reason.slice(0, MAX_REASON_LENGTH) } : {}),
      action: how.action,
      ...(how.restored !== undefined ? { restored: how.restored } : {}),
      document: text,
    };
    // The document (compare-and-set on the revision read) and its history entry (only if
    // that version is new) in one write: a conflicting writer takes neither.
    const written = await this.#kv.putAll([
      { key, value: text, ifRevision: revision },
      {
        key: `${RULES_HISTORY_PREFIX}${service}/${String(version.version).padStart(10, '0')}`,
        value: JSON.stringify(version),
        ifRevision: 0,
      },
    ]);
    if (!written) throw new RuleConflictError(service);
    return version;
  }
}

const BAD_HISTORY_CODE = 'MESHLET_BAD_RULE_HISTORY';

/**
 * One history entry as this repository writes it, from its key's last part and its value:
 * a RuleVersion with only its own fields (author and reason cut to their bounds), or why not.
 */
function readVersion(name: string, text: string): RuleVersion | string {
  if (!VERSION_KEY.test(name)) return 'its key does not name a version (ten digits)';
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return 'not JSON';
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return 'not an object';
  const o = raw as Record<string, unknown>;
  const isVersion = (v: unknown, min: number): v is number =>
    Number.isSafeInteger(v) && (v as number) >= min && (v as number) <= MAX_RULE_VERSION;
  if (!isVersion(o.version, 1)) return `version is not a whole number from 1 to ${MAX_RULE_VERSION}`;
  if (o.version !== Number(name)) return `version ${o.version} is not the one its key names`;
  if (typeof o.at !== 'number' || !Number.isFinite(o.at) || Math.abs(o.at) > MAX_TIME) return 'at is not a time (ms since 1970)';
  if (typeof o.author !== 'string') return 'author is not text';
  if (o.reason !== undefined && typeof o.reason !== 'string') return 'reason is not text';
  if (!ACTIONS.includes(o.action as RuleVersion['action'])) return `action is not one of ${ACTIONS.join(', ')}`;
  if (o.restored !== undefined && !isVersion(o.restored, 0)) return `restored is not a whole number from 0 to ${MAX_RULE_VERSION}`;
  if (typeof o.document !== 'string' && o.document !== null) return 'document is not text or null';
  return {
    version: o.version,
    at: o.at,
    author: o.author.slice(0, MAX_AUTHOR_LENGTH),
    ...(o.reason ? { reason: o.reason.slice(0, MAX_REASON_LENGTH) } : {}),
    action: o.action as RuleVersion['action'],
    ...(o.restored !== undefined ? { restored: o.restored as number } : {}),
    document: o.document,
  };
}
