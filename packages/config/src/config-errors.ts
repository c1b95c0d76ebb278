import { MeshletError } from '@meshlet/core';

/**
 * A config document (YAML or properties) that cannot be parsed. After start its previous
 * values stay; at start it fails `createConfig` (`failFast`), or the config starts without it.
 */
export class ConfigParseError extends MeshletError {
  static readonly code = 'MESHLET_CONFIG_PARSE';
  /** Where the document came from: a KV key or a file path. */
  readonly source: string;
  readonly reason: string;

  /** `outcome`: what becomes of the document's values, for the message. */
  constructor(source: string, reason: string, outcome = 'Fix the document; until then its previous values stay in force') {
    super(ConfigParseError.code, `${source}: ${reason}. ${outcome}.`);
    this.source = source;
    this.reason = reason;
  }
}

/** Which bound of CONFIG_DOCUMENT_LIMITS a document exceeded: its text's characters, or its keys once flattened. */
export type ConfigDocumentBound = 'chars' | 'keys';

/**
 * A config document past CONFIG_DOCUMENT_LIMITS (1 MiB of text, 10,000 keys once
 * flattened): it may parse, and Spring, which has no such bounds, may read it, but the
 * mesh does not. Refused as a document that does not parse is (ConfigParseError): after
 * start its previous values stay; at start it fails `createConfig` (`failFast`), or the
 * config starts without it.
 */
export class ConfigTooLargeError extends MeshletError {
  static readonly code = 'MESHLET_CONFIG_TOO_LARGE';
  /** Where the document came from: a KV key or a file path. */
  readonly source: string;
  readonly bound: ConfigDocumentBound;
  readonly limit: number;
  /** What the document measured against `bound`. */
  readonly measured: number;
  /**
   * `measured` is where counting stopped, the document holding at least that many: a YAML
   * document's keys are counted up to the first past the limit (its aliases can flatten to
   * millions); a local file past the bytes the limit can take is not read, its characters
   * put at a quarter of its bytes (UTF-8 takes at most 4 a character).
   */
  readonly atLeast: boolean;
  readonly reason: string;

  /** `outcome`: what becomes of the document's values, for the message. */
  constructor(
    source: string,
    bound: ConfigDocumentBound,
    limit: number,
    measured: number,
    atLeast = false,
    outcome = 'Fix the document; until then its previous values stay in force',
  ) {
    const shown = atLeast ? `more than ${measured - 1}` : String(measured);
    const reason =
      bound === 'chars'
        ? `the document is too large: ${shown} characters, at most ${limit}`
        : `the document is too large: ${shown} keys once flattened (a YAML alias's keys counted at each place it is used), at most ${limit}`;
    super(ConfigTooLargeError.code, `${source}: ${reason}. ${outcome}.`);
    this.source = source;
    this.bound = bound;
    this.limit = limit;
    this.measured = measured;
    this.atLeast = atLeast;
    this.reason = reason;
  }
}

/**
 * An `ENC(...)` value that no configured key decrypts (wrong key, tampered or truncated
 * ciphertext). Names the property and where it came from, never the value.
 */
export class ConfigDecryptError extends MeshletError {
  static readonly code = 'MESHLET_CONFIG_DECRYPT';
  readonly key: string;
  readonly source: string;
  readonly reason: string;

  /** `kept`: the key had a value before (it stays); else the key has none until the value decrypts. */
  constructor(key: string, source: string, reason: string, kept = true) {
    super(
      ConfigDecryptError.code,
      `config value "${key}" from ${source}: ${reason}. Check MESHLET_ENCRYPT_KEY / MESHLET_ENCRYPT_KEY_FILE holds the key it was encrypted with; ${kept ? 'the previous value stays' : 'the key has no value until it decrypts'}.`,
    );
    this.key = key;
    this.source = source;
    this.reason = reason;
  }
}

/** An encryption key that is not base64 of 32 bytes. */
export class ConfigKeyError extends MeshletError {
  static readonly code = 'MESHLET_CONFIG_BAD_KEY';

  constructor(where: string, reason: string) {
    super(ConfigKeyError.code, `${where}: ${reason}. An AES-256 key is 32 random bytes in base64 (\`meshlet-config keygen\` makes one).`);
  }
}

/** A value read with a typed getter that does not have that type. Secret values are not shown. */
export class ConfigValueError extends MeshletError {
  static readonly code = 'MESHLET_CONFIG_BAD_VALUE';
  readonly key: string;

  constructor(key: string, expected: string, shown: string) {
    super(
      ConfigValueError.code,
      `config value "${key}" is ${shown}, not ${expected}. Fix it in Consul KV, the environment or the local file.`,
    );
    this.key = key;
  }
}

/** A source the config cannot start without: the KV store at start (with failFast) or the local file. */
export class ConfigSourceError extends MeshletError {
  static readonly code = 'MESHLET_CONFIG_SOURCE';
  readonly source: string;

  constructor(source: string, reason: string, options?: ErrorOptions) {
    super(ConfigSourceError.code, `${source}: ${reason}`, options);
    this.source = source;
  }
}
