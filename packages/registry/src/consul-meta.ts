import { MeshletError } from '@meshlet/core';

/**
 * Consul's limits on service `Meta` (agent/structs: key pattern, 64 pairs, 128/512 bytes, `consul-`
 * reserved). The lengths are UTF-8 bytes, as Go's `len` counts: 171 × `€` (513 bytes) is refused.
 */
export const ConsulMetaLimits = { maxPairs: 64, maxKeyLength: 128, maxValueLength: 512 } as const;
const META_KEY = /^[a-zA-Z0-9_-]+$/;

/** A metadata map Consul would refuse (HTTP 400). Thrown at registration, before Consul is asked. */
export class InvalidMetadataError extends MeshletError {
  static readonly code = 'MESHLET_BAD_METADATA';
  readonly key: string | undefined;
  constructor(key: string | undefined, reason: string) {
    super(InvalidMetadataError.code, `${key === undefined ? 'metadata' : `metadata key "${key}"`}: ${reason}`);
    this.key = key;
  }
}

/** Checks a Meta map against Consul's rules; throws InvalidMetadataError naming the key. */
export function checkConsulMeta(meta: Readonly<Record<string, string>>): void {
  const entries = Object.entries(meta);
  if (entries.length > ConsulMetaLimits.maxPairs) {
    throw new InvalidMetadataError(undefined, `${entries.length} pairs; Consul allows at most ${ConsulMetaLimits.maxPairs}`);
  }
  for (const [key, value] of entries) {
    if (!META_KEY.test(key)) throw new InvalidMetadataError(key, 'only letters, digits, "_" and "-" (no dots): Consul rejects other keys');
    if (Buffer.byteLength(key) > ConsulMetaLimits.maxKeyLength)
      throw new InvalidMetadataError(key, `longer than ${ConsulMetaLimits.maxKeyLength} bytes`);
    if (key.toLowerCase().startsWith('consul-')) throw new InvalidMetadataError(key, 'the "consul-" prefix is reserved by Consul');
    if (typeof value !== 'string') throw new InvalidMetadataError(key, 'value must be a string');
    if (Buffer.byteLength(value) > ConsulMetaLimits.maxValueLength)
      throw new InvalidMetadataError(key, `value longer than ${ConsulMetaLimits.maxValueLength} bytes in UTF-8`);
  }
}
