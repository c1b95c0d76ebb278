import type { Instance } from '@meshlet/core';
import { ConsulClient, callableInstances, type HealthEntry, readSnapshotFile } from '@meshlet/registry';
import { CliError } from './cli-error.js';
import { ExitCode } from './exit-code.js';

/**
 * What `services` and `instances` read: every registered instance, unhealthy ones too
 * (the Registry port gives only passing ones, which is what routing wants and ops do not).
 * An entry routing cannot call (the registry's instanceProblem: an address or port that
 * makes no URL) is left out by the registry's own filter (callableInstances, which
 * ConsulRegistry runs too), and told to `leftOut`.
 */
export interface RegistryView {
  readonly description: string;
  services(): Promise<readonly string[]>;
  instances(service: string): Promise<readonly Instance[]>;
}

/** Where a view tells what it left out: one line per read (the CLI's standard error). */
export type LeftOut = (line: string) => void;

/** A service's instances from one health query, under each reading of metadata a ConsulRegistry may use. */
export interface InstanceReadings {
  /** Metadata from `Meta` alone: ConsulRegistry's default. */
  readonly meta: readonly Instance[];
  /** Metadata from `Meta` and `key=value` tags: ConsulRegistry's `metadataInTags` (Spring Cloud Hoxton). */
  readonly metaAndTags: readonly Instance[];
  /** Consul left out entries the token may not read (X-Consul-Results-Filtered-By-ACLs). */
  readonly filteredByAcls: boolean;
}

/** Consul's catalog and health endpoints, read once (no watches: a command is a snapshot). */
export class ConsulRegistryView implements RegistryView {
  readonly description: string;
  readonly #client: ConsulClient;
  readonly #leftOut: LeftOut;

  constructor(options: { address: string; token?: string | undefined; leftOut?: LeftOut | undefined }) {
    this.#client = new ConsulClient({ address: options.address, ...(options.token ? { token: options.token } : {}) });
    this.#leftOut = options.leftOut ?? (() => {});
    this.description = `consul ${this.#client.address}`;
  }

  async services(): Promise<readonly string[]> {
    const res = await this.#client.request<Record<string, string[]>>('GET', '/v1/catalog/services', { expect: 'object' });
    if (res.filteredByAcls) this.#leftOut(`the catalog lists only the services this token may read (${FILTERED_BY_ACLS})`);
    return Object.keys(res.body)
      .filter((n) => n !== 'consul')
      .sort();
  }

  async instances(service: string): Promise<readonly Instance[]> {
    return (await this.readings(service)).meta;
  }

  /** The instances of `service` under each metadata reading, from one health query, sorted by id. */
  async readings(service: string): Promise<InstanceReadings> {
    const res = await this.#client.request<HealthEntry[]>('GET', `/v1/health/service/${encodeURIComponent(service)}`, { expect: 'list' });
    const filteredByAcls = res.filteredByAcls === true;
    if (filteredByAcls) this.#leftOut(`${service}: only the instances this token may read are shown (${FILTERED_BY_ACLS})`);
    let skipped = 0;
    let first: string | undefined;
    const meta = callableInstances(res.body, (id, problem) => {
      skipped++;
      first ??= `${id.slice(0, 200)} ${problem.field}: ${problem.reason}`;
    });
    if (skipped > 0)
      this.#leftOut(`${service}: ${skipped} catalog ${skipped === 1 ? 'entry' : 'entries'} routing cannot call, left out (${first})`);
    // The same entries are left out under both readings: an address or port, not metadata, makes them uncallable.
    const metaAndTags = callableInstances(res.body, () => {}, { metadataFromTags: true });
    return { meta: byId(meta), metaAndTags: byId(metaAndTags), filteredByAcls };
  }
}

/** The header by which Consul says it left out what the token may not read. */
const FILTERED_BY_ACLS = 'X-Consul-Results-Filtered-By-ACLs';

const byId = (list: Instance[]) => list.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));

/**
 * A registry snapshot file, as ConsulRegistry's `snapshotFile` writes it
 * (`{ services: { name: Instance[] } }`), read as ConsulRegistry reads it (the registry's
 * readSnapshotFile: bounded, a regular file, each entry checked).
 */
export class SnapshotRegistryView implements RegistryView {
  readonly description: string;
  readonly #file: string;
  readonly #leftOut: LeftOut;
  #data: Record<string, Instance[]> | undefined;

  constructor(file: string, options: { leftOut?: LeftOut | undefined } = {}) {
    this.#file = file;
    this.#leftOut = options.leftOut ?? (() => {});
    this.description = `snapshot ${file}`;
  }

  async services(): Promise<readonly string[]> {
    return Object.keys(this.#load()).sort();
  }

  async instances(service: string): Promise<readonly Instance[]> {
    return this.#load()[service] ?? [];
  }

  #load(): Record<string, Instance[]> {
    if (this.#data) return this.#data;
    const read = readSnapshotFile(this.#file);
    if (!read.ok)
      throw new CliError('MESHLET_CLI_READ', `${this.#file}: cannot read the registry snapshot (${read.reason})`, ExitCode.failure);
    const { services, skipped, firstSkipped } = read.content;
    if (skipped > 0)
      this.#leftOut(
        `${this.#file}: ${skipped} snapshot ${skipped === 1 ? 'entry' : 'entries'} routing cannot call, left out (${firstSkipped})`,
      );
    this.#data = services;
    return services;
  }
}
