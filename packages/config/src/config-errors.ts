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
