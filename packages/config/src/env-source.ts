/**
 * Environment variables as config, as Spring Boot's relaxed binding reads them: the
 * property `server.max-connections` is the variable `SERVER_MAXCONNECTIONS` (`.` and
 * `[i]` become `_`, `-` is dropped, upper case).
 */
export function envName(key: string): string {
  return key
    .replace(/\[(\d+)\]/g, '_$1')
    .replace(/[.[\]]/g, '_')
    .replace(/-/g, '')
    .toUpperCase();
}

export interface EnvSource {
  /** Variables by name, for relaxed lookups of keys other sources define. */
  readonly byName: ReadonlyMap<string, string>;
  /** `MESHLET_CONFIG_<NAME>` variables: the name after the prefix, and the value. */
  readonly explicit: ReadonlyMap<string, string>;
}

export function readEnv(env: Readonly<Record<string, string | undefined>>, prefix: string, reserved: readonly string[]): EnvSource {
  const byName = new Map<string, string>();
  const explicit = new Map<string, string>();
  for (const [name, value] of Object.entries(env)) {
    if (value === undefined || reserved.includes(name)) continue;
    byName.set(name, value);
    if (prefix !== '' && name.startsWith(prefix) && name.length > prefix.length)
      explicit.set(name.slice(prefix.length).toUpperCase(), value);
  }
  return { byName, explicit };
}

/** The property an explicit variable names when no other source defines it: `SERVER_PORT` → `server.port`. */
export function keyOfEnvName(name: string): string {
  return name.toLowerCase().replace(/_/g, '.');
}
