import { BadMeshKeyError, type MeshKey, meshKey } from '@meshlet/auth';
import type { Logger } from '@meshlet/core';

/**
 * The part of a configuration the keys are read from: `@meshlet/config`'s `Config` fits
 * (it decrypts `ENC(...)` values on `get`), and so does anything with the same two methods.
 */
export interface KeyConfig {
  get(key: string): string | undefined;
  /** Whether the value was written as plain text in the KV store (`Config.isPlainKvValue`); absent: never. */
  isPlainKvValue?(key: string): boolean;
  onChange(listener: (event: { readonly changes: readonly { readonly key: string }[] }) => void): () => void;
}

/** Where mesh keys live in configuration, as Spring's YAML flattening names a list. */
export const IDENTITY_KEYS_PREFIX = 'meshlet.auth.keys';
/** Most keys read: one normally, two during a rollover. */
const MAX_KEYS = 8;

/**
 * Mesh keys from configuration, newest (the signing one) first:
 *
 * ```yaml
 * meshlet:
 *   auth:
 *     keys:
 *       - id: k2026b
 *         key: ENC(...)   # base64 of 32 random bytes, encrypted with @meshlet/config's key
 *       - id: k2026a
 *         key: ENC(...)
 * ```
 *
 * Throws BadMeshKeyError naming the property when a key is missing, not base64 or too
 * short (a value that did not decrypt is missing: @meshlet/config logs why), or written as
 * plain text in the KV store: a key there must be `ENC(...)`, else whoever can write the
 * store (and cannot decrypt) could add a key of their own and sign any identity. The
 * environment and the local file, which only the service's deployer writes, may hold it plain.
 */
export function meshKeysFromConfig(config: Pick<KeyConfig, 'get' | 'isPlainKvValue'>, prefix = IDENTITY_KEYS_PREFIX): MeshKey[] {
  const keys: MeshKey[] = [];
  for (let i = 0; i < MAX_KEYS; i++) {
    const id = config.get(`${prefix}[${i}].id`);
    const key = config.get(`${prefix}[${i}].key`);
    if (id === undefined && key === undefined) break;
    if (!id) throw new BadMeshKeyError(`${prefix}[${i}].id is missing`);
    if (!key) throw new BadMeshKeyError(`${prefix}[${i}].key is missing (or did not decrypt)`);
    if (config.isPlainKvValue?.(`${prefix}[${i}].key`) === true)
      throw new BadMeshKeyError(
        `${prefix}[${i}].key is plain text in the KV store: write it as ENC(...) (meshlet-config encrypt), or whoever can write the store could add a key that signs any identity`,
      );
    try {
      keys.push(meshKey(id, key));
    } catch (err) {
      throw new BadMeshKeyError(`${prefix}[${i}]: ${(err as Error).message.replace(/^mesh key: /, '').split('. Generate')[0]}`);
    }
  }
  if (keys.length === 0) throw new BadMeshKeyError(`no keys under ${prefix}[0]`);
  return keys;
}

/**
 * Rotates `mesh`'s identity keys whenever the keys in `config` change (see
 * meshKeysFromConfig). Keys that cannot be used are logged (`MESHLET_BAD_MESH_KEY`) and the
 * keys in force stay. Returns the unsubscribe.
 */
export function followIdentityKeys(
  mesh: { setIdentityKeys(keys: readonly MeshKey[]): void; readonly logger: Logger },
  config: KeyConfig,
  prefix = IDENTITY_KEYS_PREFIX,
): () => void {
  return config.onChange(({ changes }) => {
    if (!changes.some((c) => c.key.startsWith(`${prefix}[`))) return;
    try {
      mesh.setIdentityKeys(meshKeysFromConfig(config, prefix));
    } catch (err) {
      mesh.logger.error('identity keys from config not applied; the keys in force stay', {
        code: (err as { code?: string }).code ?? BadMeshKeyError.code,
        reason: (err as Error).message,
      });
    }
  });
}
