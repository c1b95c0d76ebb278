import {
  callListener,
  consoleLogger,
  decimalNumber,
  failureReason,
  type KvEntry,
  type KvStore,
  type Logger,
  readBoundedFile,
  type Unsubscribe,
} from '@meshlet/core';
import { configContexts, watchPrefixes } from './config-contexts.js';
import { ConfigDecryptError, ConfigParseError, ConfigSourceError, ConfigTooLargeError, ConfigValueError } from './config-errors.js';
import { CONFIG_DOCUMENT_LIMITS, type ConfigFormat, kindOfFile, parseDocument } from './config-format.js';
import { type EnvSource, envName, keyOfEnvName, readEnv } from './env-source.js';
import {
  decryptValue,
  type EncryptionKey,
  isEncrypted,
  KEY_ENV,
  KEY_FILE_ENV,
  keysFromEnvironment,
  parseKey,
  UndecryptableValue,
} from './value-cipher.js';

export interface ConfigOptions {
  readonly kv: KvStore;
  /** The application name: Spring's `spring.application.name` (the `<app>` context). */
  readonly service: string;
  /** Active profiles; a later profile wins over an earlier one. */
  readonly profiles?: readonly string[];
  /** Default `key-value`, as Spring Cloud Consul Config's KEY_VALUE. */
  readonly format?: ConfigFormat;
  /** Default `config`. */
  readonly prefix?: string;
  /** Default `application`: the context every service reads. */
  readonly defaultContext?: string;
  /** Default `,`; `-` in `files` format (`config/orders-dev.yml`), as Spring does. */
  readonly profileSeparator?: string;
  /** The key holding the document in `yaml` and `properties` formats. Default `data`. */
  readonly dataKey?: string;
  /** Default `process.env`. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Variables `<envPrefix><NAME>` set the property `<name>`. Default `MESHLET_CONFIG_`; `''` turns it off. */
  readonly envPrefix?: string;
  /**
   * Let a plain variable override a property by its relaxed name (`SERVER_PORT` for
   * `server.port`), as Spring Boot does. Default true; turn off when the process's
   * environment has names (PATH, HOME, USER) that collide with property names.
   */
  readonly relaxedEnv?: boolean;
  /** A local YAML (`.yml`/`.yaml`) or `.properties` file: the lowest-precedence source. */
  readonly file?: string;
  /**
   * Keys to decrypt `ENC(...)` values with, newest first. Default: from
   * `MESHLET_ENCRYPT_KEY` (comma-separated) and `MESHLET_ENCRYPT_KEY_FILE`.
   */
  readonly keys?: readonly EncryptionKey[];
  /** Keys whose values are masked in change events and masked snapshots, besides decrypted ones. */
  readonly secretKeys?: RegExp;
  /**
   * Fail start when the KV store cannot be read and kept no snapshot of it, or when a KV
   * document read at start does not parse (default true, as Spring's failFast). Otherwise
   * start from env and file, or without that document. A store with a snapshot
   * (`ConsulKvStore`'s `snapshotFile`) starts from it when Consul cannot be read, failFast or
   * not, without any document in it that does not parse (it keeps what KV held, a document
   * refused while running included, and nothing can be fixed while Consul is unreadable).
   * A document past Meshlet's bounds (CONFIG_DOCUMENT_LIMITS: 1 MiB, 10,000 keys), which
   * Spring does not have, is refused the same way, as ConfigTooLargeError (`MESHLET_CONFIG_TOO_LARGE`).
   */
  readonly failFast?: boolean;
  /** Follow the KV store and apply changes hot. Default true. */
  readonly watch?: boolean;
  readonly logger?: Logger;
}

/** One property that changed. Secret values are `'******'`. */
export interface ConfigChange {
  readonly key: string;
  readonly oldValue: string | undefined;
  readonly newValue: string | undefined;
  readonly secret: boolean;
}

export interface ConfigChangeEvent {
  readonly changes: readonly ConfigChange[];
  /** KV revision of the newest document in force. */
  readonly revision: number;
}

export interface ConfigStatus {
  /** KV revision of the newest document in force; 0 when none. */
  readonly revision: number;
  /** Documents rejected (did not parse) since start. */
  readonly rejectedDocuments: number;
  /** `ENC(...)` values that could not be decrypted since start. */
  readonly decryptFailures: number;
  /** Change listeners that threw or rejected since start (MESHLET_CONFIG_LISTENER_FAILED). */
  readonly listenerFailures: number;
  readonly lastError?: { readonly code: string; readonly source: string; readonly message: string };
}

export interface Config {
  /** The value in force: environment, then KV (most specific context first), then the local file. */
  get(key: string): string | undefined;
  has(key: string): boolean;
  getString(key: string): string | undefined;
  getString(key: string, fallback: string): string;
  /** ConfigValueError when the value is not a number. */
  getNumber(key: string): number | undefined;
  getNumber(key: string, fallback: number): number;
  /** `true/false`, `yes/no`, `on/off`, `1/0` in any case, as Spring converts; else ConfigValueError. */
  getBoolean(key: string): boolean | undefined;
  getBoolean(key: string, fallback: boolean): boolean;
  /** `key[0]`, `key[1]`… if present, else the value split on commas; empty when absent. */
  getList(key: string): readonly string[];
  /** Whether the value is secret (decrypted from ENC(...) or named like one). */
  isSecret(key: string): boolean;
  /**
   * Whether the value in force was written as plain text in the KV store (not `ENC(...)`,
   * not from the environment or the local file): whoever can write the store could have
   * set it. What must not come from there (a mesh key) asks.
   */
  isPlainKvValue(key: string): boolean;
  /** Every property in force. `maskSecrets` for logs and debug endpoints. */
  snapshot(options?: { readonly maskSecrets?: boolean }): Readonly<Record<string, string>>;
  /**
   * Calls `listener` after every change that alters a value in force. A listener that
   * throws, or returns a promise that rejects, is logged (MESHLET_CONFIG_LISTENER_FAILED)
   * and counted in `status.listenerFailures`; the others are still called.
   */
  onChange(listener: (event: ConfigChangeEvent) => unknown): Unsubscribe;
  /** The KV contexts read, most specific first. */
  readonly contexts: readonly string[];
  readonly status: ConfigStatus;
  close(): void;
}

/** Reads config, applies it hot as the KV store changes; resolves once the first read is done. */
export async function createConfig(options: ConfigOptions): Promise<Config> {
  const config = new LayeredConfig(options);
  await config.start();
  return config;
}

export const MASK = '******';
/** The code logged when an `onChange` listener throws or its promise rejects. */
const LISTENER_FAILED = 'MESHLET_CONFIG_LISTENER_FAILED';
/** The code logged when, in `key-value` format, the data key holds a document the format leaves unread. */
const FORMAT_MISMATCH = 'MESHLET_CONFIG_FORMAT_MISMATCH';
// `otlp.headers`: an OTLP collector's headers carry its credential (`meshlet.tracing.otlp.headers`).
/** Keys named in a 'config applied' log line, at most (the line also gives how many changed). */
const LOGGED_KEYS = 50;

const DEFAULT_SECRET_KEYS =
  /(password|passwd|pwd|secret|token|credentials?|private[-_.]?key|api[-_.]?key|access[-_.]?key|otlp[-_.]headers)$/i;

interface Value {
  readonly value: string;
  readonly secret: boolean;
  /** Written as plain text in the KV store (not ENC(...)): anyone who can write the store could have set it. */
  readonly plainInKv?: true;
}
type Layer = ReadonlyMap<string, Value>;
interface DocumentState {
  readonly revision: number;
  readonly values: Layer;
  /** A newer revision that failed to parse; remembered so it is logged once. */
  readonly failedRevision?: number;
}
const EMPTY: Layer = new Map();

class LayeredConfig implements Config {
  readonly contexts: readonly string[];
  readonly #kv: KvStore;
  readonly #format: ConfigFormat;
  readonly #dataKey: string;
  readonly #file: string | undefined;
  readonly #env: EnvSource;
  readonly #envValues = new Map<string, Value | undefined>();
  /** Relaxed names by key: computed once per key, not on every reload. */
  readonly #envNames = new Map<string, string>();
  readonly #keys: readonly Buffer[];
  readonly #relaxed: boolean;
  readonly #secretKeys: RegExp;
  readonly #failFast: boolean;
  /** Started from the KV store's snapshot: Consul could not be read. */
  #fromSnapshot = false;
  readonly #follow: boolean;
  readonly #logger: Logger;
  readonly #prefixes: readonly string[];
  /** Per watched prefix: its entries; `delivery` counts its watch's deliveries (a read of it is kept only if none came meanwhile). */
  readonly #entries = new Map<string, { signature: string; entries: readonly KvEntry[]; delivery: number }>();
  readonly #documents = new Map<string, DocumentState>();
  readonly #listeners = new Set<(event: ConfigChangeEvent) => unknown>();
  readonly #unwatch: Unsubscribe[] = [];
  #fileLayer: Layer = EMPTY;
  #values: Layer = EMPTY;
  #snapshot: Readonly<Record<string, string>> = Object.freeze({});
  #masked: Readonly<Record<string, string>> | undefined;
  #revision = 0;
  /** Rounds of #settle started; only the newest applies. */
  #round = 0;
  /** Until the first read is applied: a document that does not parse then has no previous values. */
  #starting = true;
  #rejected = 0;
  #decryptFailures = 0;
  #listenerFailures = 0;
  #lastError: ConfigStatus['lastError'];

  constructor(o: ConfigOptions) {
    this.#kv = o.kv;
    this.#format = o.format ?? 'key-value';
    this.#dataKey = o.dataKey ?? 'data';
    this.#file = o.file;
    const env = o.env ?? process.env;
    this.#env = readEnv(env, o.envPrefix ?? 'MESHLET_CONFIG_', [KEY_ENV, KEY_FILE_ENV]);
    this.#keys = o.keys ? o.keys.map((k, i) => parseKey(k, `keys[${i}]`)) : keysFromEnvironment(env);
    this.#secretKeys = o.secretKeys ?? DEFAULT_SECRET_KEYS;
    this.#relaxed = o.relaxedEnv ?? true;
    this.#failFast = o.failFast ?? true;
    this.#follow = o.watch ?? true;
    this.#logger = o.logger ?? consoleLogger('warn', o.service);
    const layout = {
      service: o.service,
      profiles: o.profiles ?? [],
      format: this.#format,
      prefix: o.prefix ?? 'config',
      defaultContext: o.defaultContext ?? 'application',
      profileSeparator: o.profileSeparator ?? (this.#format === 'files' ? '-' : ','),
    };
    this.contexts = configContexts(layout);
    this.#prefixes = watchPrefixes(layout);
  }

  async start(): Promise<void> {
    if (this.#file !== undefined) this.#fileLayer = await this.#readFile(this.#file);
    try {
      const lists = await Promise.all(this.#prefixes.map((p) => this.#kv.list(p)));
      this.#prefixes.forEach((p, i) => {
        this.#entries.set(p, { signature: signatureOf(lists[i] ?? []), entries: lists[i] ?? [], delivery: 0 });
      });
    } catch (err) {
      // What the store kept for an outage (a snapshot file) is the last state it read: a
      // process restarted while Consul is down starts from it, failFast or not.
      const saved = await Promise.all(this.#prefixes.map((p) => this.#kv.saved?.(p)));
      if (saved.some((entries) => entries !== undefined)) {
        this.#fromSnapshot = true;
        this.#prefixes.forEach((p, i) => {
          const entries = saved[i] ?? [];
          this.#entries.set(p, { signature: signatureOf(entries), entries, delivery: 0 });
        });
        this.#logger.warn("config KV unreadable at start; starting from the KV store's snapshot", {
          code: ConfigSourceError.code,
          prefixes: this.#prefixes,
          reason: (err as Error).message,
        });
      } else if (this.#failFast) {
        throw new ConfigSourceError(
          `KV ${this.#prefixes.join(', ')}`,
          `cannot be read (${(err as Error).message}), and the store kept no snapshot of it. Check that Consul is reachable, or pass failFast: false to start from the environment and the local file.`,
          { cause: err },
        );
      } else {
        this.#logger.warn('config KV unreadable at start; starting from the environment and the local file', {
          code: ConfigSourceError.code,
          prefixes: this.#prefixes,
          reason: (err as Error).message,
        });
      }
    }
    this.#apply();
    this.#starting = false;
    if (!this.#follow) return;
    for (const prefix of this.#prefixes) {
      this.#unwatch.push(
        this.#kv.watch(prefix, (entries) => {
          const signature = signatureOf(entries);
          if (this.#entries.get(prefix)?.signature === signature) return; // a watch may repeat itself
          this.#entries.set(prefix, { signature, entries, delivery: (this.#entries.get(prefix)?.delivery ?? 0) + 1 });
          this.#settle(prefix);
        }),
      );
    }
  }

  /**
   * Applies a change seen on one watched prefix together with a fresh read of the other
   * (watchPrefixes gives at most two: the default context's and the app's). One Consul
   * transaction that writes under `config/application/` and `config/<app>/` wakes both
   * blocking queries, but their answers arrive in different event-loop turns (measured on
   * Consul 1.16: every time, even a setImmediate apart); applied one by one, the listeners
   * would see the transaction half applied. A read that starts after one watch answered
   * sees at least that state (Consul reads from the leader by default), so the other half
   * is in it. The read is kept only if the other watch delivered nothing meanwhile (what a
   * watch delivers is never older than what it delivered before); when a later change
   * started its own round, that round applies. A read that fails (Consul down) applies what
   * the watches gave. A store that calls its watchers before `put` resolves (in memory)
   * still has the change applied by the time `await kv.put(...)` returns.
   */
  #settle(changed: string): void {
    const round = ++this.#round;
    const other = this.#prefixes.find((p) => p !== changed);
    if (other === undefined) {
      this.#apply();
      return;
    }
    const before = this.#entries.get(other)?.delivery ?? 0;
    const applyIfNewest = () => {
      if (round === this.#round) this.#apply();
    };
    this.#kv.list(other).then((entries) => {
      if ((this.#entries.get(other)?.delivery ?? 0) === before)
        this.#entries.set(other, { signature: signatureOf(entries), entries, delivery: before });
      applyIfNewest();
    }, applyIfNewest);
  }

  get(key: string): string | undefined {
    return (this.#values.get(key) ?? this.#relaxedEnv(key))?.value;
  }

  has(key: string): boolean {
    return this.get(key) !== undefined;
  }

  getString(key: string): string | undefined;
  getString(key: string, fallback: string): string;
  getString(key: string, fallback?: string): string | undefined {
    return this.get(key) ?? fallback;
  }

  getNumber(key: string): number | undefined;
  getNumber(key: string, fallback: number): number;
  getNumber(key: string, fallback?: number): number | undefined {
    const raw = this.get(key);
    if (raw === undefined) return fallback;
    const n = decimalNumber(raw);
    if (n === undefined) throw new ConfigValueError(key, 'a decimal number', this.#shown(key, raw));
    return n;
  }

  getBoolean(key: string): boolean | undefined;
  getBoolean(key: string, fallback: boolean): boolean;
  getBoolean(key: string, fallback?: boolean): boolean | undefined {
    const raw = this.get(key);
    if (raw === undefined) return fallback;
    const v = raw.trim().toLowerCase();
    if (v === 'true' || v === 'yes' || v === 'on' || v === '1') return true;
    if (v === 'false' || v === 'no' || v === 'off' || v === '0') return false;
    throw new ConfigValueError(key, 'a boolean (true/false, yes/no, on/off, 1/0)', this.#shown(key, raw));
  }

  getList(key: string): readonly string[] {
    const items: string[] = [];
    for (let i = 0; ; i++) {
      const v = this.get(`${key}[${i}]`);
      if (v === undefined) break;
      items.push(v);
    }
    if (items.length > 0) return items;
    const raw = this.get(key);
    if (raw === undefined || raw.trim() === '') return [];
    return raw.split(',').map((s) => s.trim());
  }

  isSecret(key: string): boolean {
    return (this.#values.get(key) ?? this.#relaxedEnv(key))?.secret ?? this.#secretKeys.test(key);
  }

  isPlainKvValue(key: string): boolean {
    return (this.#values.get(key) ?? this.#relaxedEnv(key))?.plainInKv === true;
  }

  snapshot(options?: { readonly maskSecrets?: boolean }): Readonly<Record<string, string>> {
    if (!options?.maskSecrets) return this.#snapshot;
    this.#masked ??= Object.freeze(Object.fromEntries([...this.#values].map(([k, v]) => [k, v.secret ? MASK : v.value])));
    return this.#masked;
  }

  onChange(listener: (event: ConfigChangeEvent) => unknown): Unsubscribe {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  get status(): ConfigStatus {
    return {
      revision: this.#revision,
      rejectedDocuments: this.#rejected,
      decryptFailures: this.#decryptFailures,
      listenerFailures: this.#listenerFailures,
      ...(this.#lastError ? { lastError: this.#lastError } : {}),
    };
  }

  close(): void {
    for (const u of this.#unwatch.splice(0)) u();
    this.#listeners.clear();
  }

  #shown(key: string, raw: string): string {
    return this.isSecret(key) ? 'a secret value' : JSON.stringify(raw);
  }

  async #readFile(path: string): Promise<Layer> {
    const kind = kindOfFile(path);
    if (!kind) throw new ConfigSourceError(path, 'the local config file must end in .yml, .yaml or .properties');
    // Read bounded (a regular file; as many bytes as the document's characters can take in
    // UTF-8), then parsed within CONFIG_DOCUMENT_LIMITS: a FIFO or /dev/zero named by mistake
    // is refused, not read without end. A regular file past the bound is a document too large
    // as any other is: UTF-8 takes at most 4 bytes a character, so it holds more characters
    // than the limit, at least a quarter of its bytes.
    const { chars } = CONFIG_DOCUMENT_LIMITS;
    const text = readBoundedFile(path, chars * 4, (why, _errno, bytes) =>
      bytes === undefined
        ? new ConfigSourceError(path, `${why}; check the path or leave \`file\` out`)
        : new ConfigTooLargeError(path, 'chars', chars, Math.ceil(bytes / 4), true, FILE_REFUSED_OUTCOME),
    );
    let parsed: Map<string, string>;
    try {
      parsed = parseDocument(text, kind, path);
    } catch (err) {
      // The file is read at start only: there are no previous values to keep.
      if (err instanceof ConfigParseError || err instanceof ConfigTooLargeError) throw documentRefused(err, path, FILE_REFUSED_OUTCOME);
      throw err;
    }
    return this.#decode(parsed, path, undefined, false);
  }

  /** Rebuilds the values in force from the KV entries, reusing every document whose revision did not change. */
  #apply(): void {
    const byKey = new Map<string, KvEntry>();
    for (const { entries } of this.#entries.values()) for (const e of entries) byKey.set(e.key, e);
    const seen = new Set<string>();
    const layers: Layer[] = []; // most specific first
    for (const context of this.contexts) {
      const layer = new Map<string, Value>();
      const take = (entry: KvEntry | undefined, parse: (e: KvEntry) => Map<string, string>) => {
        if (!entry) return;
        seen.add(entry.key);
        for (const [k, v] of this.#document(entry, parse).values) layer.set(k, v);
      };
      if (this.#format === 'key-value') {
        for (const e of byKey.values()) {
          if (e.key.startsWith(context) && !e.key.endsWith('/')) {
            take(e, (x) => {
              const key = x.key.slice(context.length).replaceAll('/', '.');
              if (key === this.#dataKey) this.#warnIfDocument(x);
              return new Map([[key, x.value]]);
            });
          }
        }
      } else if (this.#format === 'files') {
        const kind = kindOfFile(context);
        if (kind) take(byKey.get(context), (x) => parseDocument(x.value, kind, x.key));
      } else {
        const kind = this.#format;
        take(byKey.get(context + this.#dataKey), (x) => parseDocument(x.value, kind, x.key));
      }
      layers.push(layer);
    }
    for (const key of this.#documents.keys()) if (!seen.has(key)) this.#documents.delete(key);
    let revision = 0;
    for (const d of this.#documents.values()) revision = Math.max(revision, d.revision);
    this.#revision = revision;
    this.#install(this.#merge(layers));
  }

  #document(entry: KvEntry, parse: (e: KvEntry) => Map<string, string>): DocumentState {
    const previous = this.#documents.get(entry.key);
    if (previous && (previous.revision === entry.revision || previous.failedRevision === entry.revision)) return previous;
    let raw: Map<string, string>;
    try {
      raw = parse(entry);
    } catch (err) {
      // At start there are no previous values to keep: as Spring's failFast, the start fails
      // (the service would run on settings nobody wrote), or goes on without the document.
      // From the snapshot (Consul unreadable), nothing can be fixed now: the start goes on
      // without the document, as with failFast: false (the snapshot keeps what KV held, a
      // document refused while running included).
      if (this.#starting && this.#failFast && !this.#fromSnapshot)
        throw documentRefused(err, entry.key, 'Fix the document, or pass failFast: false to start without it');
      const error = documentRefused(
        err,
        entry.key,
        this.#starting ? 'Fix the document; until then its values are not in force' : undefined,
      );
      this.#rejected++;
      this.#lastError = { code: error.code, source: entry.key, message: error.message };
      const fields = {
        code: error.code,
        key: entry.key,
        revision: entry.revision,
        reason: error.reason,
        ...(error instanceof ConfigTooLargeError
          ? { bound: error.bound, limit: error.limit, measured: error.measured, atLeast: error.atLeast }
          : {}),
      };
      if (this.#starting)
        this.#logger.error(
          this.#fromSnapshot
            ? "config document in the KV store's snapshot rejected at start; started without it"
            : 'config document rejected at start (failFast: false); started without it',
          fields,
        );
      else this.#logger.error('config document rejected; its previous values stay', { ...fields, inForce: previous?.revision ?? 0 });
      const kept: DocumentState = { revision: previous?.revision ?? 0, values: previous?.values ?? EMPTY, failedRevision: entry.revision };
      this.#documents.set(entry.key, kept);
      return kept;
    }
    const state: DocumentState = { revision: entry.revision, values: this.#decode(raw, entry.key, previous?.values, true) };
    this.#documents.set(entry.key, state);
    return state;
  }

  /**
   * In `key-value` format, a value under the data key (`config/orders/data`) is one property
   * named `data`. Spring teams keep a YAML or properties document there (Spring Cloud
   * Consul's `format: YAML`, `data-key: data`); one that holds `meshlet.` keys is said once
   * per revision (#document parses each revision once), since those keys are otherwise
   * ignored without a word. Nothing else changes.
   */
  #warnIfDocument(entry: KvEntry): void {
    for (const kind of ['yaml', 'properties'] as const) {
      let keys: Map<string, string>;
      try {
        keys = parseDocument(entry.value, kind, entry.key);
      } catch {
        continue;
      }
      if (![...keys.keys()].some((k) => k.startsWith('meshlet.'))) continue;
      this.#logger.warn(
        `config key holds a ${kind} document with meshlet. keys, read as one property in key-value format: its keys are ignored; set MESHLET_CONFIG_FORMAT=${kind} (createConfig's format: '${kind}')`,
        { code: FORMAT_MISMATCH, key: entry.key, revision: entry.revision, format: kind },
      );
      return;
    }
  }

  /** Decrypts ENC(...) values; one that fails keeps the previous value of that key, if any. `kv`: the document is the KV store's. */
  #decode(raw: ReadonlyMap<string, string>, source: string, previous: Layer | undefined, kv: boolean): Layer {
    const out = new Map<string, Value>();
    for (const [key, value] of raw) {
      if (!isEncrypted(value)) {
        out.set(key, kv ? { value, secret: this.#secretKeys.test(key), plainInKv: true } : { value, secret: this.#secretKeys.test(key) });
        continue;
      }
      const before = previous?.get(key);
      const plain = this.#decrypt(key, value, source, before !== undefined);
      const kept = plain === undefined ? before : { value: plain, secret: true };
      if (kept) out.set(key, kept);
    }
    return out;
  }

  #decrypt(key: string, value: string, source: string, hadValue: boolean): string | undefined {
    try {
      return decryptValue(value, this.#keys, key);
    } catch (err) {
      if (!(err instanceof UndecryptableValue)) throw err;
      const error = new ConfigDecryptError(key, source, err.message, hadValue);
      this.#decryptFailures++;
      this.#lastError = { code: error.code, source, message: error.message };
      this.#logger.error(error.message, { code: error.code, key, source });
      return undefined;
    }
  }

  /** File, then KV contexts from least to most specific, then the environment. */
  #merge(layers: readonly Layer[]): Map<string, Value> {
    const merged = new Map<string, Value>(this.#fileLayer);
    for (let i = layers.length - 1; i >= 0; i--) for (const [k, v] of layers[i] as Layer) merged.set(k, v);
    const byEnvName = new Map<string, string>();
    for (const key of merged.keys()) {
      const name = this.#envNameOf(key);
      byEnvName.set(name, key);
      const fromEnv = this.#envValue(name, key);
      if (fromEnv) merged.set(key, fromEnv);
    }
    for (const name of this.#env.explicit.keys()) {
      const key = byEnvName.get(name) ?? keyOfEnvName(name);
      const fromEnv = this.#envValue(`explicit:${name}`, key);
      if (fromEnv) merged.set(key, fromEnv);
    }
    return merged;
  }

  /** An environment variable's value, decrypted once; `explicit:NAME` for a prefixed one. */
  #envValue(id: string, key: string): Value | undefined {
    if (this.#envValues.has(id)) return this.#envValues.get(id);
    const explicit = id.startsWith('explicit:');
    const name = explicit ? id.slice('explicit:'.length) : id;
    const raw = explicit ? this.#env.explicit.get(name) : this.#relaxed ? this.#env.byName.get(name) : undefined;
    let value: Value | undefined;
    if (raw !== undefined) {
      if (isEncrypted(raw)) {
        // Read once: an environment variable has no previous value.
        const plain = this.#decrypt(key, raw, `environment variable ${name}`, false);
        value = plain === undefined ? undefined : { value: plain, secret: true };
      } else {
        value = { value: raw, secret: this.#secretKeys.test(key) };
      }
    }
    this.#envValues.set(id, value);
    return value;
  }

  /** Spring's relaxed binding for a key no source defines: `MESHLET_CONFIG_SERVER_PORT` or `SERVER_PORT`. */
  #relaxedEnv(key: string): Value | undefined {
    const name = this.#envNameOf(key);
    return this.#envValue(`explicit:${name}`, key) ?? this.#envValue(name, key);
  }

  #envNameOf(key: string): string {
    let name = this.#envNames.get(key);
    if (name === undefined) {
      name = envName(key);
      this.#envNames.set(key, name);
    }
    return name;
  }

  #install(values: Map<string, Value>): void {
    const old = this.#values;
    this.#values = values;
    this.#snapshot = Object.freeze(Object.fromEntries([...values].map(([k, v]) => [k, v.value])));
    this.#masked = undefined;
    const changes: ConfigChange[] = [];
    for (const key of new Set([...old.keys(), ...values.keys()])) {
      const before = old.get(key);
      const after = values.get(key);
      if (before?.value === after?.value) continue;
      const secret = (before?.secret ?? false) || (after?.secret ?? false);
      const mask = (v: Value | undefined) => (v === undefined ? undefined : secret ? MASK : v.value);
      changes.push({ key, oldValue: mask(before), newValue: mask(after), secret });
    }
    if (changes.length === 0) return;
    changes.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    // The keys named in the log line are bounded (a document holds up to 10,000); the count is whole.
    const named = changes.length > LOGGED_KEYS ? changes.slice(0, LOGGED_KEYS) : changes;
    this.#logger.info('config applied', { revision: this.#revision, changed: named.map((c) => c.key), changes: changes.length });
    const event: ConfigChangeEvent = Object.freeze({ changes: Object.freeze(changes), revision: this.#revision });
    for (const listener of [...this.#listeners])
      callListener(
        () => listener(event),
        (err) => this.#listenerFailed(err, event),
      );
  }

  /** A listener that threw or rejected: logged with a code and counted; the others and the values in force are not affected. */
  #listenerFailed(err: unknown, event: ConfigChangeEvent): void {
    this.#listenerFailures++;
    this.#logger.error('a config change listener failed; the new values are in force', {
      code: LISTENER_FAILED,
      revision: event.revision,
      changes: event.changes.length,
      reason: failureReason(err),
    });
  }
}

const signatureOf = (entries: readonly KvEntry[]) => entries.map((e) => `${e.key}@${e.revision}`).join('\n');

/** What becomes of a local file refused at start, for the refusal's message. */
const FILE_REFUSED_OUTCOME = 'Fix the file: it is read only at start';

/**
 * The refusal of a document from `source` that a parser refused with `err`, saying what
 * becomes of its values (`outcome`; default: its previous values stay): too large (past
 * CONFIG_DOCUMENT_LIMITS) or does not parse (any other error of the parser's).
 */
function documentRefused(err: unknown, source: string, outcome?: string): ConfigParseError | ConfigTooLargeError {
  if (err instanceof ConfigTooLargeError) return new ConfigTooLargeError(source, err.bound, err.limit, err.measured, err.atLeast, outcome);
  const reason = err instanceof ConfigParseError ? err.reason : `invalid document: ${String((err as Error).message).split('\n')[0]}`;
  return new ConfigParseError(source, reason, outcome);
}
