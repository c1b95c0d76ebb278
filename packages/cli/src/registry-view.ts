import { readFile } from 'node:fs/promises';
import type { Instance } from '@meshlet/core';
import { ConsulClient, type HealthEntry, instanceFromHealthEntry } from '@meshlet/registry';
import { CliError } from './cli-error.js';
import { ExitCode } from './exit-code.js';

/**
 * What `services` and `instances` read: every registered instance, unhealthy ones too
 * (the Registry port gives only passing ones, which is what routing wants and ops do not).
 */
export interface RegistryView {
  readonly description: string;
  services(): Promise<readonly string[]>;
  instances(service: string): Promise<readonly Instance[]>;
}

/** Consul's catalog and health endpoints, read once (no watches: a command is a snapshot). */
export class ConsulRegistryView implements RegistryView {
  readonly description: string;
  readonly #client: ConsulClient;

  constructor(options: { address: string; token?: string | undefined }) {
    this.#client = new ConsulClient({ address: options.address, ...(options.token ? { token: options.token } : {}) });
    this.description = `consul ${this.#client.address}`;
  }

  async services(): Promise<readonly string[]> {
    const res = await this.#client.request<Record<string, string[]>>('GET', '/v1/catalog/services');
    return Object.keys(res.body)
      .filter((n) => n !== 'consul')
      .sort();
  }

  async instances(service: string): Promise<readonly Instance[]> {
    const res = await this.#client.request<HealthEntry[]>('GET', `/v1/health/service/${encodeURIComponent(service)}`);
    return res.body.map((e) => instanceFromHealthEntry(e)).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }
}

/** A registry snapshot file, as ConsulRegistry's `snapshotFile` writes it: `{ services: { name: Instance[] } }`. */
export class SnapshotRegistryView implements RegistryView {
  readonly description: string;
  readonly #file: string;
  #data: Promise<Record<string, Instance[]>> | undefined;

  constructor(file: string) {
    this.#file = file;
    this.description = `snapshot ${file}`;
  }

  async services(): Promise<readonly string[]> {
    return Object.keys(await this.#load()).sort();
  }

  async instances(service: string): Promise<readonly Instance[]> {
    return (await this.#load())[service] ?? [];
  }

  #load(): Promise<Record<string, Instance[]>> {
    this.#data ??= readFile(this.#file, 'utf8').then(
      (text) => (JSON.parse(text) as { services?: Record<string, Instance[]> }).services ?? {},
      (err: Error) => {
        throw new CliError('MESHLET_CLI_READ', `${this.#file}: cannot read the registry snapshot (${err.message})`, ExitCode.failure);
      },
    );
    return this.#data;
  }
}
