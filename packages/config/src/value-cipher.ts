import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { readBoundedFile } from '@meshlet/core';
import { ConfigKeyError } from './config-errors.js';

/**
 * Encrypted config values: `ENC(<base64(iv | ciphertext | tag)>)` with AES-256-GCM, a
 * 12-byte random IV and a 16-byte tag, standard base64 with padding. Keys are 32 bytes,
 * given in base64. Several keys may be configured for rotation: values are encrypted
 * with the first and decrypted with whichever one authenticates.
 */
const IV_BYTES = 12;
const TAG_BYTES = 16;
const KEY_BYTES = 32;
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

/** `ENC(...)` for `plain` under `key`: what ops put in Consul KV or a file. */
export function encryptValue(plain: string, key: EncryptionKey): string {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', parseKey(key), iv);
  const body = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()]);
  return `ENC(${Buffer.concat([iv, body, cipher.getAuthTag()]).toString('base64')})`;
}

/** Why a value could not be decrypted; never contains the value. */
export class UndecryptableValue extends Error {}

/**
 * Decrypts an `ENC(...)` value with the first of `keys` that authenticates it. Throws
 * UndecryptableValue (a reason only, no value) when it is malformed, tampered with, or
 * encrypted under none of the keys.
 */
export function decryptValue(value: string, keys: readonly Buffer[]): string {
  if (!isEncrypted(value)) throw new UndecryptableValue('is not of the form ENC(base64(iv|ciphertext|tag))');
  if (keys.length === 0) throw new UndecryptableValue('is encrypted but no decryption key is configured');
  const text = value.slice(4, -1).trim();
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(text)) throw new UndecryptableValue('ENC(...) does not hold base64');
  const raw = Buffer.from(text, 'base64');
  if (raw.length < IV_BYTES + TAG_BYTES) throw new UndecryptableValue('ENC(...) is too short to be AES-256-GCM');
  const iv = raw.subarray(0, IV_BYTES);
  const tag = raw.subarray(raw.length - TAG_BYTES);
  const body = raw.subarray(IV_BYTES, raw.length - TAG_BYTES);
  for (const key of keys) {
    try {
      const decipher = createDecipheriv('aes-256-gcm', key, iv);
      decipher.setAuthTag(tag);
      return Buffer.concat([decipher.update(body), decipher.final()]).toString('utf8');
    } catch {
      // Authentication failed under this key: try the next (rotation).
    }
  }
  throw new UndecryptableValue(`no configured key decrypts it (${keys.length} tried): wrong key or tampered ciphertext`);
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
