import { FileKvStore, type KvStore, silentLogger } from '@meshlet/core';
import { ConsulKvStore } from '@meshlet/registry';

/** Flags and environment that pick where rules live. */
export interface KvTargetOptions {
  readonly dir?: string | undefined;
  readonly consul?: string | undefined;
  readonly token?: string | undefined;
}

/** A store and how to name it in messages. */
export interface KvTarget {
  readonly kv: KvStore;
  readonly description: string;
}

/**
 * `--dir` is core's FileKvStore (the embedded default); otherwise Consul KV at
 * `--consul`, CONSUL_HTTP_ADDR, or 127.0.0.1:8500 as the consul CLI does, with `--token`
 * or CONSUL_HTTP_TOKEN.
 */
export function kvTarget(opts: KvTargetOptions, env: Readonly<Record<string, string | undefined>>): KvTarget {
  if (opts.dir !== undefined) return { kv: new FileKvStore(opts.dir), description: `directory ${opts.dir}` };
  const address = opts.consul ?? env.CONSUL_HTTP_ADDR ?? 'http://127.0.0.1:8500';
  const token = opts.token ?? env.CONSUL_HTTP_TOKEN;
  return {
    kv: new ConsulKvStore({ address, ...(token ? { token } : {}), logger: silentLogger }),
    description: `consul ${address}`,
  };
}
