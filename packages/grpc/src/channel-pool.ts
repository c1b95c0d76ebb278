import { type ChannelCredentials, Client, type ClientOptions, credentials } from '@grpc/grpc-js';
import { type Instance, MetaKey } from '@meshlet/core';
import { grpcPortOf } from './registration.js';

export interface ChannelPoolOptions {
  /** Credentials per instance. Default: TLS when its `secure` metadata is `"true"`, else plaintext. */
  readonly credentials?: (instance: Instance) => ChannelCredentials;
  /** grpc-js channel options for every instance's channel. */
  readonly channelOptions?: ClientOptions;
  /** Channels kept open at most; the least recently used one is closed past it. Default 1 024. */
  readonly maxChannels?: number;
}

/**
 * One grpc-js channel (a generic Client) per instance address, made on first use and kept
 * while it is used: every governed call to that instance goes over its HTTP/2 connection.
 * Bounded: past `maxChannels` the least recently used channel is closed, so a fleet that
 * churns through addresses does not leak connections.
 */
export class ChannelPool {
  readonly #clients = new Map<string, Client>();
  readonly #credentials: (instance: Instance) => ChannelCredentials;
  readonly #channelOptions: ClientOptions | undefined;
  readonly #max: number;

  constructor(options: ChannelPoolOptions = {}) {
    const insecure = credentials.createInsecure();
    this.#credentials = options.credentials ?? ((i) => (i.metadata[MetaKey.secure] === 'true' ? credentials.createSsl() : insecure));
    this.#channelOptions = options.channelOptions;
    this.#max = options.maxChannels ?? 1024;
  }

  /** `host:port` of an instance's gRPC endpoint (its `gRPC_port` when registered, else its port). */
  static target(instance: Instance): string {
    const host = instance.address.includes(':') ? `[${instance.address}]` : instance.address;
    return `${host}:${grpcPortOf(instance)}`;
  }

  /** The client for an instance's gRPC endpoint. */
  get(instance: Instance): Client {
    const target = ChannelPool.target(instance);
    let client = this.#clients.get(target);
    if (client !== undefined) {
      // Most recently used last: a Map keeps insertion order.
      this.#clients.delete(target);
      this.#clients.set(target, client);
      return client;
    }
    client = new Client(target, this.#credentials(instance), this.#channelOptions);
    this.#clients.set(target, client);
    if (this.#clients.size > this.#max) {
      const [oldest, old] = this.#clients.entries().next().value as [string, Client];
      this.#clients.delete(oldest);
      old.close();
    }
    return client;
  }

  get size(): number {
    return this.#clients.size;
  }

  close(): void {
    for (const c of this.#clients.values()) c.close();
    this.#clients.clear();
  }
}
