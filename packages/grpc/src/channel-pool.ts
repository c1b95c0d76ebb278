import { type ChannelCredentials, type ChannelInterface, Client, type ClientOptions, credentials } from '@grpc/grpc-js';
import { type Instance, MetaKey, urlHost } from '@meshlet/core';
import { grpcPortOf } from './registration.js';

export interface ChannelPoolOptions {
  /** Credentials per instance. Default: TLS when its `secure` metadata is `"true"`, else plaintext. */
  readonly credentials?: (instance: Instance) => ChannelCredentials;
  /** grpc-js channel options for every instance's channel. */
  readonly channelOptions?: ClientOptions;
  /** Channels kept open at most; the least recently used one is closed past it. Default 1 024. */
  readonly maxChannels?: number;
}

/** One instance address's channel in the pool. */
export interface PooledChannel {
  /** `host:port` of the instance's gRPC endpoint. */
  readonly target: string;
  readonly client: Client;
  /** The client's channel: a governed unary attempt starts its call on it directly. */
  readonly channel: ChannelInterface;
}

interface Entry extends PooledChannel {
  /** The pool's use counter when last handed out: the smallest is the least recently used. */
  used: number;
  closed: boolean;
}

/**
 * One grpc-js channel (a generic Client) per instance address, made on first use and kept
 * while it is used: every governed call to that instance goes over its HTTP/2 connection.
 * Bounded: past `maxChannels` the least recently used channel is closed, so a fleet that
 * churns through addresses does not leak connections.
 *
 * A call finds its channel by the Instance object routing picked (a WeakMap: no string
 * built per call) and marks it used with a counter; the least recently used one is looked
 * for only when a new channel goes past the bound.
 */
export class ChannelPool {
  readonly #byTarget = new Map<string, Entry>();
  readonly #byInstance = new WeakMap<Instance, Entry>();
  readonly #credentials: (instance: Instance) => ChannelCredentials;
  readonly #channelOptions: ClientOptions | undefined;
  readonly #max: number;
  #uses = 0;

  constructor(options: ChannelPoolOptions = {}) {
    const insecure = credentials.createInsecure();
    this.#credentials = options.credentials ?? ((i) => (i.metadata[MetaKey.secure] === 'true' ? credentials.createSsl() : insecure));
    this.#channelOptions = options.channelOptions;
    this.#max = Math.max(1, options.maxChannels ?? 1024);
  }

  /** `host:port` of an instance's gRPC endpoint (its `gRPC_port` when registered, else its port). */
  static target(instance: Instance): string {
    return `${urlHost(instance.address)}:${grpcPortOf(instance)}`;
  }

  /** The client for an instance's gRPC endpoint. */
  get(instance: Instance): Client {
    return this.channel(instance).client;
  }

  /** The channel for an instance's gRPC endpoint, with its target. */
  channel(instance: Instance): PooledChannel {
    let entry = this.#byInstance.get(instance);
    if (entry === undefined || entry.closed) {
      const target = ChannelPool.target(instance);
      entry = this.#byTarget.get(target);
      if (entry === undefined) {
        const client = new Client(target, this.#credentials(instance), this.#channelOptions);
        entry = { target, client, channel: client.getChannel(), used: 0, closed: false };
        this.#byTarget.set(target, entry);
        if (this.#byTarget.size > this.#max) this.#evict(entry);
      }
      this.#byInstance.set(instance, entry);
    }
    entry.used = ++this.#uses;
    return entry;
  }

  /** Closes the least recently used channel other than `keep`. */
  #evict(keep: Entry): void {
    let oldest: Entry | undefined;
    for (const e of this.#byTarget.values()) if (e !== keep && (oldest === undefined || e.used < oldest.used)) oldest = e;
    if (oldest === undefined) return;
    this.#byTarget.delete(oldest.target);
    oldest.closed = true;
    oldest.client.close();
  }

  get size(): number {
    return this.#byTarget.size;
  }

  close(): void {
    for (const e of this.#byTarget.values()) {
      e.closed = true;
      e.client.close();
    }
    this.#byTarget.clear();
  }
}
