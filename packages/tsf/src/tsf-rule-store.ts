import {
  AdoptableLogger,
  type KvEntry,
  type KvStore,
  type KvWrite,
  type Logger,
  MeshletError,
  type PutOptions,
  parseRuleDocument,
  RULES_PREFIX,
  type RuleKind,
  RuleValidationError,
  SERVICE_NAME,
  silentLogger,
  type Unsubscribe,
} from '@meshlet/core';
import { parse as parseYaml } from 'yaml';
import { convertTsfAffinity } from './tsf-affinity.js';
import { convertTsfAuthority } from './tsf-authority.js';
import { convertTsfBreaker } from './tsf-breaker.js';
import { convertTsfFault } from './tsf-fault.js';
import type { NoticeSink } from './tsf-fields.js';
import { tsfRuleKey } from './tsf-keys.js';
import { convertTsfRateLimit } from './tsf-ratelimit.js';
import { convertTsfRoute } from './tsf-route.js';
import { TsfFieldError, type TsfNotice, TsfRuleError } from './tsf-rule-error.js';
import type { TsfLocalIdentity } from './tsf-tag-condition.js';

export interface TsfRuleStoreOptions {
  /** Where TSF's console writes its rules: Consul KV (`ConsulKvStore`). */
  readonly kv: KvStore;
  /**
   * This process as TSF knows it: `serviceName` (the mesh's service) and `namespaceId`
   * name the keys; the rest decides `source.*` conditions of route and breaker rules.
   */
  readonly identity: TsfLocalIdentity;
  /** The TSF namespace of a service this process calls. Default: its own namespace. */
  readonly namespaceOf?: (service: string) => string;
  /**
   * Meshlet's rule kinds (`ruleKinds` from `meshlet`): each converted section is checked by
   * its own parser, so a section Meshlet would refuse is reported against its TSF key and
   * the previous one stays. Without them each key is still checked against the document
   * bounds (RULE_DOCUMENT_LIMITS), and its kind's parser runs only in the mesh.
   */
  readonly kinds?: readonly RuleKind<unknown>[];
  readonly logger?: Logger;
  /** Where the converted documents appear. Default `meshlet/rules/`. */
  readonly prefix?: string;
}

/** The state of one TSF key, for admin pages and tests. */
export interface TsfKeyStatus {
  readonly key: string;
  /** Meshlet section the key becomes (the affinity key becomes `route.nearby`). */
  readonly section: SectionName;
  /** Consul revision of the value whose conversion is in force; 0 for none (absent key or never converted). */
  readonly inForce: number;
  /** Why the newest value was refused, when it was. */
  readonly error?: TsfRuleError;
  /** Fields of the value in force that were not applied. */
  readonly notices: readonly TsfNotice[];
}

type SectionName = 'route' | 'ratelimit' | 'auth' | 'breaker' | 'fault';
type SourceId = SectionName | 'affinity';

interface SectionSource {
  /** One state per source; several sources may feed one section (route and affinity). */
  readonly id: SourceId;
  readonly name: SectionName;
  readonly key: string;
  readonly convert: (doc: unknown, notice: NoticeSink) => Record<string, unknown>;
}

/** Writes go to TSF's console; the converted view is read-only. */
export class TsfReadOnlyError extends MeshletError {
  static readonly code = 'MESHLET_TSF_READ_ONLY';
  constructor(key: string) {
    super(TsfReadOnlyError.code, `${key}: rules come from TSF's keys in Consul and cannot be written here; change them in TSF`);
  }
}

/**
 * A KvStore that presents TSF's rules as Meshlet rule documents. For each service the
 * mesh follows, it watches TSF's keys in the backing store (route, nearby affinity, rate
 * limit, authority, fault and this caller's breaker for that service), converts each
 * YAML document into its Meshlet section, and shows the result at `meshlet/rules/<service>`. The mesh's own
 * RuleWatcher then validates and applies it hot, keeping the last good document.
 *
 * A TSF value that cannot be converted (bad YAML, weights not summing to 100, an unknown
 * operator, a section over a rule document's bounds or that Meshlet's parser refuses) is
 * logged with its key and field, and that key's previous conversion stays in force; the
 * other keys still apply. Keys outside `meshlet/rules/` pass through to the backing store.
 */
export class TsfRuleStore implements KvStore {
  readonly #kv: KvStore;
  readonly #identity: TsfLocalIdentity;
  readonly #namespaceOf: (service: string) => string;
  readonly #kinds: ReadonlyMap<string, RuleKind<unknown>>;
  readonly #logger: AdoptableLogger;
  readonly #prefix: string;
  readonly #views = new Map<string, ServiceView>();
  #revision = 0;

  constructor(options: TsfRuleStoreOptions) {
    this.#kv = options.kv;
    this.#identity = options.identity;
    if (!SERVICE_NAME.test(options.identity.serviceName)) {
      throw new MeshletError('MESHLET_BAD_OPTION', `identity.serviceName: "${options.identity.serviceName}" is not a service name`);
    }
    if (!options.identity.namespaceId) throw new MeshletError('MESHLET_BAD_OPTION', 'identity.namespaceId: give the TSF namespace id');
    this.#namespaceOf = options.namespaceOf ?? (() => options.identity.namespaceId);
    this.#kinds = new Map((options.kinds ?? []).map((k) => [k.name, k]));
    this.#logger = new AdoptableLogger(options.logger, silentLogger);
    this.#prefix = options.prefix ?? RULES_PREFIX;
  }

  /** While the wrapped store cannot be read (its `degraded`): the rules last read stay in force. */
  get degraded(): boolean {
    return this.#kv.degraded === true;
  }

  /** Logs through `logger` when built without one, and has the wrapped store do the same (KvStore's adoptLogger). */
  adoptLogger(logger: Logger): void {
    this.#logger.adoptLogger(logger);
    this.#kv.adoptLogger?.(logger);
  }

  /** Gives `logger` back (its mesh closed), here and to the wrapped store. */
  releaseLogger(logger: Logger): void {
    this.#logger.releaseLogger(logger);
    this.#kv.releaseLogger?.(logger);
  }

  /** The TSF keys followed now and what each contributes. */
  get status(): readonly TsfKeyStatus[] {
    return [...this.#views.values()].flatMap((v) => v.status());
  }

  async get(key: string): Promise<KvEntry | undefined> {
    const service = this.#serviceOf(key);
    if (service === undefined) return this.#kv.get(key);
    return new Promise((resolve) => {
      let off: Unsubscribe | undefined;
      let done = false;
      off = this.watch(key, (entries) => {
        done = true;
        queueMicrotask(() => off?.());
        resolve(entries[0]);
      });
      if (done) off();
    });
  }

  async list(prefix: string): Promise<readonly KvEntry[]> {
    if (!prefix.startsWith(this.#prefix)) return this.#kv.list(prefix);
    return [...this.#views.values()].flatMap((v) => {
      const e = v.entry;
      return e?.key.startsWith(prefix) ? [e] : [];
    });
  }

  async put(key: string, value: string, options?: PutOptions): Promise<boolean> {
    if (key.startsWith(this.#prefix)) throw new TsfReadOnlyError(key);
    return this.#kv.put(key, value, options);
  }

  async delete(key: string, options?: PutOptions): Promise<boolean> {
    if (key.startsWith(this.#prefix)) throw new TsfReadOnlyError(key);
    return this.#kv.delete(key, options);
  }

  async putAll(writes: readonly KvWrite[]): Promise<boolean> {
    const tsf = writes.find((w) => w.key.startsWith(this.#prefix));
    if (tsf) throw new TsfReadOnlyError(tsf.key);
    return this.#kv.putAll(writes);
  }

  watch(prefix: string, listener: (entries: readonly KvEntry[]) => void): Unsubscribe {
    const service = this.#serviceOf(prefix);
    if (service === undefined) {
      if (prefix.startsWith(this.#prefix)) {
        throw new MeshletError(
          'MESHLET_BAD_OPTION',
          `${prefix}: TsfRuleStore follows one service's document at a time (${this.#prefix}<service>)`,
        );
      }
      return this.#kv.watch(prefix, listener);
    }
    let view = this.#views.get(service);
    if (!view) {
      view = new ServiceView(`${this.#prefix}${service}`, service, this.#sources(service), {
        kv: this.#kv,
        kinds: this.#kinds,
        logger: this.#logger,
        nextRevision: () => ++this.#revision,
      });
      this.#views.set(service, view);
    }
    const v = view;
    const off = v.subscribe(listener);
    return () => {
      off();
      if (v.idle) {
        v.close();
        if (this.#views.get(service) === v) this.#views.delete(service);
      }
    };
  }

  #serviceOf(key: string): string | undefined {
    if (!key.startsWith(this.#prefix)) return undefined;
    const rest = key.slice(this.#prefix.length);
    return SERVICE_NAME.test(rest) ? rest : undefined;
  }

  #sources(service: string): SectionSource[] {
    const me = this.#identity;
    const ns = this.#namespaceOf(service);
    return [
      { id: 'route', name: 'route', key: tsfRuleKey.route(ns, service), convert: (doc, n) => convertTsfRoute(doc, service, me, n) },
      // Nearby affinity is per namespace; it becomes `route.nearby` of every service in it.
      { id: 'affinity', name: 'route', key: tsfRuleKey.affinity(ns), convert: (doc, n) => convertTsfAffinity(doc, ns, n) },
      { id: 'ratelimit', name: 'ratelimit', key: tsfRuleKey.ratelimit(ns, service), convert: (doc, n) => convertTsfRateLimit(doc, me, n) },
      { id: 'auth', name: 'auth', key: tsfRuleKey.authority(ns, service), convert: (doc, n) => convertTsfAuthority(doc, me, n) },
      { id: 'fault', name: 'fault', key: tsfRuleKey.fault(ns, service), convert: (doc, n) => convertTsfFault(doc, service, me, n) },
      {
        id: 'breaker',
        name: 'breaker',
        key: tsfRuleKey.circuitbreaker(me.namespaceId, me.serviceName, ns, service),
        convert: (doc, n) => convertTsfBreaker(doc, service, n),
      },
    ];
  }
}

interface SectionState {
  answered: boolean;
  seen: string | undefined;
  inForce: number;
  section: Record<string, unknown> | undefined;
  error: TsfRuleError | undefined;
  notices: TsfNotice[];
}

interface ViewDeps {
  readonly kv: KvStore;
  readonly kinds: ReadonlyMap<string, RuleKind<unknown>>;
  readonly logger: Logger;
  readonly nextRevision: () => number;
}

/** One service's converted document, fed by watches on its TSF keys. */
class ServiceView {
  readonly #key: string;
  readonly #service: string;
  readonly #sources: readonly SectionSource[];
  readonly #deps: ViewDeps;
  readonly #states = new Map<SourceId, SectionState>();
  readonly #listeners = new Set<(entries: readonly KvEntry[]) => void>();
  readonly #unwatch: Unsubscribe[] = [];
  /** The document composed from the sections in force; undefined when there are none. */
  #document: string | undefined;
  /** The document last shown, as `entry`. */
  #shown: string | undefined;
  entry: KvEntry | undefined;

  constructor(key: string, service: string, sources: readonly SectionSource[], deps: ViewDeps) {
    this.#key = key;
    this.#service = service;
    this.#sources = sources;
    this.#deps = deps;
    for (const s of sources)
      this.#states.set(s.id, { answered: false, seen: undefined, inForce: 0, section: undefined, error: undefined, notices: [] });
    for (const s of sources) {
      this.#unwatch.push(
        deps.kv.watch(s.key, (entries) => {
          const e = entries.find((x) => x.key === s.key);
          this.#receive(s, e);
        }),
      );
    }
  }

  get idle(): boolean {
    return this.#listeners.size === 0;
  }

  subscribe(listener: (entries: readonly KvEntry[]) => void): Unsubscribe {
    this.#listeners.add(listener);
    if (this.#ready) listener(this.entry ? [this.entry] : []);
    return () => this.#listeners.delete(listener);
  }

  status(): TsfKeyStatus[] {
    return this.#sources.map((s) => {
      const st = this.#states.get(s.id) as SectionState;
      return { key: s.key, section: s.name, inForce: st.inForce, ...(st.error ? { error: st.error } : {}), notices: st.notices };
    });
  }

  close(): void {
    for (const u of this.#unwatch.splice(0)) u();
  }

  get #ready(): boolean {
    for (const st of this.#states.values()) if (!st.answered) return false;
    return true;
  }

  #receive(source: SectionSource, entry: KvEntry | undefined): void {
    const st = this.#states.get(source.id) as SectionState;
    st.answered = true;
    const seen = entry === undefined ? 'absent' : String(entry.revision);
    if (seen !== st.seen) {
      st.seen = seen;
      if (entry === undefined || entry.value.trim() === '') {
        // A deleted (or emptied) key means no TSF rules of this kind.
        st.section = undefined;
        st.inForce = 0;
        st.error = undefined;
        st.notices = [];
        this.#document = this.#compose();
      } else this.#convert(source, entry, st);
    }
    this.#emit();
  }

  #convert(source: SectionSource, entry: KvEntry, st: SectionState): void {
    const notices: TsfNotice[] = [];
    try {
      let doc: unknown;
      try {
        // YAML 1.1, as TSF's Java SDKs read it with SnakeYAML.
        doc = parseYaml(entry.value, { schema: 'yaml-1.1', prettyErrors: false });
      } catch (err) {
        throw new TsfFieldError('', `not valid YAML: ${(err as Error).message.split('\n')[0]}`);
      }
      const section = source.convert(doc, (path, message) => notices.push({ key: source.key, path, message }));
      const document = this.#check(source, section);
      st.section = section;
      this.#document = document;
      st.inForce = entry.revision;
      st.error = undefined;
      st.notices = notices;
      for (const n of notices) {
        this.#deps.logger.warn('TSF rule field not applied', {
          code: 'MESHLET_TSF_FIELD_NOT_APPLIED',
          key: n.key,
          path: n.path,
          reason: n.message,
        });
      }
    } catch (err) {
      if (!(err instanceof TsfFieldError)) throw err;
      const error = new TsfRuleError(source.key, err.path, err.reason, err.limit);
      st.error = error;
      this.#deps.logger.error('TSF rule refused; the previous rules of this key stay in force', {
        code: error.code,
        service: this.#service,
        key: error.key,
        path: error.path,
        reason: error.reason,
        ...(error.limit ? { limit: error.limit } : {}),
        revision: entry.revision,
        inForce: st.inForce,
      });
    }
  }

  /**
   * What the mesh's RuleWatcher runs on the composed document (parseRuleDocument: its
   * bounds, its regex budget, the kinds' parsers), run here for one key so that a key
   * over a bound is refused alone and the others still apply: on the document the key's
   * section would compose with the other keys in force (the bounds are on the whole
   * document), which it gives back; when that is refused, on the key's section by itself,
   * to say whether the key alone is at fault. Since every accepted change passes, and a
   * deleted key only shrinks the document, the document shown always passes.
   */
  #check(source: SectionSource, section: Record<string, unknown>): string {
    const kinds = [...this.#deps.kinds.values()];
    // `keep`: the kinds given may be a subset; the watcher decides what it refuses by name.
    const parse = (text: string): void => void parseRuleDocument(text, kinds, this.#service, { unknownSections: 'keep' });
    const document = this.#compose(source.id, section) as string;
    try {
      parse(document);
      return document;
    } catch (err) {
      if (!(err instanceof RuleValidationError)) throw err;
      let what = 'with the other TSF keys of this service in force, converts to a rule document Meshlet refuses';
      let refusal = err;
      try {
        parse(JSON.stringify({ service: this.#service, [source.name]: section }));
      } catch (alone) {
        if (!(alone instanceof RuleValidationError)) throw alone;
        what = `converts to a ${source.name} section Meshlet refuses`;
        refusal = alone;
      }
      throw new TsfFieldError('', `${what}: ${refusal.message}`, refusal.limit);
    }
  }

  /** The document's text from the sections in force, with `replace`'s section in place of its own; undefined when empty. */
  #compose(replace?: SourceId, section?: Record<string, unknown>): string | undefined {
    const doc: Record<string, unknown> = { service: this.#service };
    let any = false;
    for (const s of this.#sources) {
      const own = s.id === replace ? section : this.#states.get(s.id)?.section;
      if (own === undefined) continue;
      // Sources of one section hold different fields (route rules, route.nearby): merged shallowly.
      const had = doc[s.name] as Record<string, unknown> | undefined;
      doc[s.name] = had === undefined ? own : { ...had, ...own };
      any = true;
    }
    return any ? JSON.stringify(doc) : undefined;
  }

  #emit(): void {
    if (!this.#ready) return;
    const text = this.#document;
    if (text !== this.#shown) {
      this.#shown = text;
      this.entry = text === undefined ? undefined : { key: this.#key, value: text, revision: this.#deps.nextRevision() };
    }
    const entries = this.entry ? [this.entry] : [];
    for (const l of [...this.#listeners]) l(entries);
  }
}
