import { type Clock, systemClock } from '../clock.js';
import { MeshletError } from '../errors.js';
import type { KvStore } from '../kv-store.js';
import { type ParseRuleDocumentOptions, parseRuleDocument, type RuleDocument, type RuleKind } from './rule-document.js';
import { RULES_PREFIX } from './rule-watcher.js';

export const RULES_HISTORY_PREFIX = 'meshlet/rules-history/';

/** A change's reason is kept to this many characters (a history entry stays small). */
export const MAX_REASON_LENGTH = 1_000;

/** One accepted change of a service's rules. */
export interface RuleVersion {
  readonly version: number;
  /** Epoch milliseconds. */
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

  /**
   * `unknownSections: 'keep'` stores sections no kind knows (the CLI's `--allow-unknown`);
   * by default they are refused, as the watchers of a mesh refuse them.
   */
  constructor(opts: { kv: KvStore; kinds: readonly RuleKind<unknown>[]; clock?: Clock; unknownSections?: 'refuse' | 'keep' }) {
    this.#kv = opts.kv;
    this.#kinds = opts.kinds;
    this.#clock = opts.clock ?? systemClock;
    this.#parse = opts.unknownSections ? { unknownSections: opts.unknownSections } : {};
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

  /** Every accepted version, oldest first. */
  async history(service: string): Promise<readonly RuleVersion[]> {
    const entries = await this.#kv.list(`${RULES_HISTORY_PREFIX}${service}/`);
    return entries.map((e) => JSON.parse(e.value) as RuleVersion).sort((a, b) => a.version - b.version);
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
    return entry ? (JSON.parse(entry.value) as RuleVersion) : undefined;
  }

  /**
   * Restores version `to` (default: the version before the newest) as a new version.
   * Rolling back twice returns to where it started, as `git revert` would.
   */
  async rollback(service: string, opts: { author: string; to?: number; ifRevision?: number; reason?: string }): Promise<RuleVersion> {
    const history = await this.history(service);
    // Before the first version there were no rules: rolling that back removes the document.
    const none: RuleVersion = { version: 0, at: 0, author: '', action: 'delete', document: null };
    const target =
      opts.to === undefined
        ? history.length === 1
          ? none
          : history.at(-2)
        : opts.to === 0
          ? none
          : history.find((v) => v.version === opts.to);
    if (!target) {
      const known = history.map((v) => v.version).join(', ') || 'none';
      throw new MeshletError(
        'MESHLET_NO_RULE_VERSION',
        `${service}: no version ${opts.to ?? 'before the current one'} to roll back to (versions: ${known})`,
      );
    }
    if (target.document !== null) this.validate(target.document, service);
    return this.#write(service, target.document, {
      author: opts.author,
      action: 'rollback',
      restored: target.version,
      ifRevision: opts.ifRevision,
      reason: opts.reason,
    });
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
    const history = await this.history(service);
    const version: RuleVersion = {
      version: (history.at(-1)?.version ?? 0) + 1,
      at: this.#clock.now(),
      author: how.author,
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
