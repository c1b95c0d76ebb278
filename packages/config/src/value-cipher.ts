import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { MeshletError, readBoundedFile } from '@meshlet/core';
import { ConfigKeyError } from './config-errors.js';
import { envName } from './env-source.js';

/**
 * Encrypted config values: `ENC(<base64(iv | ciphertext | tag)>)` with AES-256-GCM, a
 * 12-byte random IV and a 16-byte tag, standard base64 with padding. Keys are 32 bytes,
 * given in base64. Several keys may be configured for rotation: values are encrypted
 * with the first and decrypted with whichever one authenticates. Each value is bound to
 * its property (propertyBinding, the additional authenticated data): a ciphertext copied
 * under another property does not decrypt there.
 */
const IV_BYTES = 12;
const TAG_BYTES = 16;
const KEY_BYTES = 32;
/** What every binding starts with, so a value is authenticated for this use and no other. */
const BINDING_CONTEXT = 'meshlet-config:';
/** What a key file may weigh: a few keys of 45 characters, with comments. */
export const KEY_FILE_MAX_BYTES = 64 * 1024;

/** The environment variable holding base64 keys, comma-separated, newest first. */
export const KEY_ENV = 'MESHLET_ENCRYPT_KEY';
/** The environment variable naming a file of base64 keys, one a line, newest first. */
export const KEY_FILE_ENV = 'MESHLET_ENCRYPT_KEY_FILE';

export type EncryptionKey = string | Uint8Array;

export function isEncrypted(value: string): boolean {
  return value.startsWith('ENC(') && value.endsWith(')');
}

/** A 32-byte key from base64 text or bytes; ConfigKeyError names `where` when it is not one. */
export function parseKey(key: EncryptionKey, where = 'encryption key'): Buffer {
  let bytes: Buffer;
  if (typeof key === 'string') {
    const text = key.trim();
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(text)) throw new ConfigKeyError(where, 'is not base64');
    bytes = Buffer.from(text, 'base64');
  } else {
    bytes = Buffer.from(key);
  }
  if (bytes.length !== KEY_BYTES) throw new ConfigKeyError(where, `is ${bytes.length} bytes, not ${KEY_BYTES}`);
  return bytes;
}

/** A new random key, in base64. */
export function generateKey(): string {
  return randomBytes(KEY_BYTES).toString('base64');
}

/**
 * The additional authenticated data that binds a value to `property`: `meshlet-config:` and
 * the property's name as relaxed binding compares it (through its environment variable
 * name: lower case, `-` dropped, `.` `_` `[` `]` separators), list indices removed. So
 * `meshlet.auth.keys[1].key`, `MESHLET_AUTH_KEYS_0_KEY` and `meshlet.auth.keys.key` are
 * one binding (a key moved between list positions needs no re-encrypting) and
 * `server.max-connections` is `SERVER_MAXCONNECTIONS`'s, which the environment sets it by.
 */
export function propertyBinding(property: string): string {
  const name = envName(property)
    .toLowerCase()
    .split('_')
    .filter((part) => part !== '' && !/^\d+$/.test(part))
    .join('.');
  return BINDING_CONTEXT + name;
}

/**
 * `ENC(...)` for `plain` under `key`, bound to `property` (the config key it is written
 * for): what ops put in Consul KV or a file. MESHLET_BAD_OPTION when `property` names
 * nothing (empty, or only indices and separators).
 */
export function encryptValue(plain: string, key: EncryptionKey, property: string): string {
  const binding = propertyBinding(property);
  if (binding === BINDING_CONTEXT)
    throw new MeshletError('MESHLET_BAD_OPTION', `property: ${JSON.stringify(property.slice(0, 200))} names no config key`);
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', parseKey(key), iv);
  cipher.setAAD(Buffer.from(binding, 'utf8'));
  const body = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()]);
  return `ENC(${Buffer.concat([iv, body, cipher.getAuthTag()]).toString('base64')})`;
}

/** Why a value could not be decrypted; never contains the value. */
export class UndecryptableValue extends Error {}

/**
 * Decrypts an `ENC(...)` value with the first of `keys` that authenticates it for
 * `property`. Throws UndecryptableValue (a reason only, no value) when it is malformed,
 * tampered with, encrypted under none of the keys, or encrypted for another property.
 */
export function decryptValue(value: string, keys: readonly Buffer[], property: string): string {
  if (!isEncrypted(value)) throw new UndecryptableValue('is not of the form ENC(base64(iv|ciphertext|tag))');
  if (keys.length === 0) throw new UndecryptableValue('is encrypted but no decryption key is configured');
  const text = value.slice(4, -1).trim();
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(text)) throw new UndecryptableValue('ENC(...) does not hold base64');
  const raw = Buffer.from(text, 'base64');
  if (raw.length < IV_BYTES + TAG_BYTES) throw new UndecryptableValue('ENC(...) is too short to be AES-256-GCM');
  const iv = raw.subarray(0, IV_BYTES);
  const tag = raw.subarray(raw.length - TAG_BYTES);
  const body = raw.subarray(IV_BYTES, raw.length - TAG_BYTES);
  const binding = Buffer.from(propertyBinding(property), 'utf8');
  for (const key of keys) {
    try {
      const decipher = createDecipheriv('aes-256-gcm', key, iv);
      decipher.setAAD(binding);
      decipher.setAuthTag(tag);
      return Buffer.concat([decipher.update(body), decipher.final()]).toString('utf8');
    } catch {
      // Authentication failed under this key: try the next (rotation).
    }
  }
  // GCM cannot tell these apart, and the property is not secret: name it, to point at a copied value.
  throw new UndecryptableValue(
    `no configured key decrypts it for ${property} (${keys.length} tried): wrong key, tampered ciphertext, or encrypted for another property (\`meshlet-config encrypt --property ${property}\`)`,
  );
}

/**
 * The decryption keys from the environment: `MESHLET_ENCRYPT_KEY` (comma-separated) then
 * the lines of the file named by `MESHLET_ENCRYPT_KEY_FILE` (blank lines and `#` comments
 * skipped). A malformed key is an error at start, naming where it came from.
 */
export function keysFromEnvironment(env: Readonly<Record<string, string | undefined>>): Buffer[] {
  const keys: Buffer[] = [];
  const inline = env[KEY_ENV];
  if (inline) {
    inline
      .split(',')
      .map((k) => k.trim())
      .filter((k) => k !== '')
      .forEach((k, i) => {
        keys.push(parseKey(k, `${KEY_ENV}[${i}]`));
      });
  }
  const file = env[KEY_FILE_ENV];
  if (file) keys.push(...keysFromFile(file));
  return keys;
}

/**
 * The keys in a key file, one a line: a regular file of at most KEY_FILE_MAX_BYTES, read
 * bounded (a FIFO or `/dev/zero` is refused, not read). ConfigKeyError names `source` and the path.
 */
export function keysFromFile(path: string, source = KEY_FILE_ENV): Buffer[] {
  const text = readBoundedFile(path, KEY_FILE_MAX_BYTES, (why) => new ConfigKeyError(source, why));
  return text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l, i) => parseKey(l, `${path} key ${i + 1}`));
}
