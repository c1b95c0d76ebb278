import { MeshletError } from '../errors.js';
import type { KvStore } from '../kv-store.js';
import { callListener, failureReason } from '../listener-call.js';
import type { Logger } from '../logger.js';
import type { Unsubscribe } from '../registry.js';
import { type ParseRuleDocumentOptions, parseRuleDocument, type RuleDocument, type RuleKind } from './rule-document.js';
import { RuleValidationError } from './rule-error.js';

/** Where rule documents live in a KvStore: `<prefix><service>`. */
export const RULES_PREFIX = 'meshlet/rules/';

export interface RuleWatcherStatus {
  /** KV revision of the document in force; 0 when none was ever applied. */
  readonly revision: number;
  /** Documents rejected since start. */
  readonly rejected: number;
  /** Why the newest document was rejected, if it was. */
  readonly lastError?: { readonly revision: number; readonly message: string; readonly path: string };
}

type Listener = (document: RuleDocument | undefined, revision: number) => void;

/**
 * What every rule follower (Router, CallExecutor, FaultInjector, RateLimiter, Authorizer)
 * reads: one service's rules, one kind's section at a time. Core's RuleWatcher is one; a
 * test can hand a follower any object of this shape.
 */
export interface RuleFeed {
  /** The service whose rule document this is. */
  readonly service: string;
  /** Calls `listener` now with `kind`'s section in force and after every accepted document. */
  follow<T>(kind: RuleKind<T>, listener: (section: T | undefined, revision: number) => void): Unsubscribe;
}

interface Waiter {
  readonly revision: number;
  readonly resolve: (status: RuleWatcherStatus) => void;
  readonly reject: (err: Error) => void;
  readonly timer: ReturnType<typeof setTimeout>;
}

/**
 * Follows one service's rule document in a KvStore and applies it hot. A document that
 * fails to parse or validate is logged once, counted, and ignored: the last good
 * document stays in force. A deleted document means "no rules".
 */
export class RuleWatcher implements RuleFeed {
  readonly #kv: KvStore;
  readonly #key: string;
  readonly #service: string;
  readonly #kinds: readonly RuleKind<unknown>[];
  readonly #logger: Logger;
  readonly #listeners = new Set<Listener>();
  readonly #waiters = new Set<Waiter>();
  readonly #parse: ParseRuleDocumentOptions;
  #unwatch: Unsubscribe | undefined;
  #document: RuleDocument | undefined;
  #revision = 0;
  #seen: string | undefined;
  #rejected = 0;
  #lastError: RuleWatcherStatus['lastError'];
  #markReady!: () => void;
  /** Resolves once the store has answered for the first time (with a document or without). */
  readonly ready: Promise<void> = new Promise((resolve) => {
    this.#markReady = resolve;
  });

  /** `unknownSections` as RuleRepository's: refused by default, as a writer refuses them. */
  constructor(opts: {
    kv: KvStore;
    service: string;
    kinds: readonly RuleKind<unknown>[];
    logger: Logger;
    prefix?: string;
    unknownSections?: 'refuse' | 'keep';
  }) {
    this.#kv = opts.kv;
    this.#parse = opts.unknownSections ? { unknownSections: opts.unknownSections } : {};
    this.#service = opts.service;
    this.#kinds = opts.kinds;
    this.#logger = opts.logger;
    this.#key = `${opts.prefix ?? RULES_PREFIX}${opts.service}`;
  }

  /** The service whose rule document this watcher follows. */
  get service(): string {
    return this.#service;
  }

  /** Starts following the store. Listeners hear the current document at once if there is one. */
  start(): this {
    // Returns false for a refused document: a store's outage snapshot keeps the last accepted one.
    this.#unwatch ??= this.#kv.watch(this.#key, (entries) => {
      const entry = entries.find((e) => e.key === this.#key);
      return this.#receive(entry?.value, entry?.revision ?? 0);
    });
    return this;
  }

  /** The document in force, or undefined when there is none. */
  get document(): RuleDocument | undefined {
    return this.#document;
  }

  /** The parsed section of `kind` in force. */
  section<T>(kind: RuleKind<T>): T | undefined {
    return this.#document?.sections.get(kind.name) as T | undefined;
  }

  get status(): RuleWatcherStatus {
    return { revision: this.#revision, rejected: this.#rejected, ...(this.#lastError ? { lastError: this.#lastError } : {}) };
  }

  /** Calls `listener` now with the document in force and after every accepted change. */
  subscribe(listener: Listener): Unsubscribe {
    this.#listeners.add(listener);
    listener(this.#document, this.#revision);
    return () => this.#listeners.delete(listener);
  }

  /** Calls `listener` now with `kind`'s section in force and after every accepted document. */
  follow<T>(kind: RuleKind<T>, listener: (section: T | undefined, revision: number) => void): Unsubscribe {
    return this.subscribe((document, revision) => listener(document?.sections.get(kind.name) as T | undefined, revision));
  }

  /**
   * Resolves with the status once the document at KV `revision` (or a later one: revisions
   * only grow) is in force here; `0` means "no document", in force when none is. Rejects
   * with `MESHLET_RULES_REJECTED` when this process refused that document (or a later one),
   * `MESHLET_RULES_NOT_IN_FORCE` after `timeoutMs` of real time (this waits on a watch of
   * the store, not on a timer of the caller's clock), `MESHLET_CLOSED` when the watcher closes.
   */
  until(revision: number, { timeoutMs = 10_000 }: { timeoutMs?: number } = {}): Promise<RuleWatcherStatus> {
    const settled = this.#settled(revision);
    if (settled instanceof Error) return Promise.reject(settled);
    if (settled) return Promise.resolve(settled);
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        revision,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.#waiters.delete(waiter);
          reject(
            new MeshletError(
              'MESHLET_RULES_NOT_IN_FORCE',
              `${this.#service}: the rules at revision ${revision} were not in force here within ${timeoutMs} ms (in force: ${this.#revision}); check that the rule store is reachable`,
            ),
          );
        }, timeoutMs),
      };
      this.#waiters.add(waiter);
    });
  }

  close(): void {
    this.#unwatch?.();
    this.#unwatch = undefined;
    this.#listeners.clear();
    for (const w of this.#waiters) {
      clearTimeout(w.timer);
      w.reject(new MeshletError('MESHLET_CLOSED', `${this.#service}: the rule watcher closed before revision ${w.revision} was in force`));
    }
    this.#waiters.clear();
  }

  /** The status when `revision` is in force, the error when it was refused, else undefined. */
  #settled(revision: number): RuleWatcherStatus | Error | undefined {
    const status = this.status;
    if (revision === 0 ? this.#document === undefined && status.revision === 0 : status.revision >= revision) return status;
    if (status.lastError && status.lastError.revision >= revision) {
      return new MeshletError(
        'MESHLET_RULES_REJECTED',
        `${this.#service}: this process rejected the rules document at revision ${status.lastError.revision} (${status.lastError.message}); the rules at revision ${status.revision} stay in force`,
      );
    }
    return undefined;
  }

  #wake(): void {
    for (const w of [...this.#waiters]) {
      const settled = this.#settled(w.revision);
      if (settled === undefined) continue;
      this.#waiters.delete(w);
      clearTimeout(w.timer);
      if (settled instanceof Error) w.reject(settled);
      else w.resolve(settled);
    }
  }

  /** Whether the document was accepted (in force now). */
  #receive(text: string | undefined, revision: number): boolean {
    // A watch may repeat itself: act (and log) once per revision. An absent document has no
    // revision of its own, so "absent" is its own signature.
    const seen = text === undefined ? 'absent' : String(revision);
    if (seen === this.#seen) return this.#lastError?.revision !== revision || text === undefined;
    this.#seen = seen;
    this.#markReady();
    let document: RuleDocument | undefined;
    if (text !== undefined) {
      try {
        document = parseRuleDocument(text, this.#kinds, this.#service, this.#parse);
      } catch (err) {
        if (!(err instanceof RuleValidationError)) throw err;
        this.#rejected++;
        this.#lastError = { revision, message: err.message, path: err.path };
        this.#logger.error('rule document rejected; the last good rules stay in force', {
          code: err.code,
          service: this.#service,
          key: this.#key,
          revision,
          path: err.path,
          reason: err.reason,
          ...(err.limit ? { limit: err.limit } : {}),
          inForce: this.#revision,
        });
        this.#wake();
        return false;
      }
    }
    this.#document = document;
    this.#revision = revision;
    this.#lastError = undefined;
    this.#logger.info('rules applied', { service: this.#service, revision, sections: document ? [...document.sections.keys()] : [] });
    for (const l of [...this.#listeners]) this.#notify(l, document, revision);
    this.#wake();
    return true;
  }

  /**
   * A listener that throws or rejects (a bug: parsers refuse at parse time what could fail
   * later) is logged with a code and does not stop the others, nor reach the KvStore's
   * writer — an apply through an in-memory store would otherwise throw after its write.
   */
  #notify(listener: Listener, document: RuleDocument | undefined, revision: number): void {
    callListener(
      () => listener(document, revision),
      (err) =>
        this.#logger.error('a rules listener failed; that part keeps its previous rules', {
          code: 'MESHLET_RULE_LISTENER_FAILED',
          service: this.#service,
          revision,
          error: failureReason(err),
        }),
    );
  }
}
