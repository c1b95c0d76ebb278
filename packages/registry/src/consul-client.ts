import { MeshletError, readPemFile } from '@meshlet/core';
import { Agent, fetch as undiciFetch } from 'undici';
import { AgentProbe } from './agent-probe.js';

/** TLS to the agent's HTTPS port: the CA that signed it, and a client certificate when it verifies incoming. */
export interface ConsulTlsOptions {
  /** PEM of the CA(s) to trust (Consul's `ca_file`). Default: the system's. */
  readonly ca?: string | Buffer;
  /** PEM client certificate and key, for an agent with `verify_incoming`. */
  readonly cert?: string | Buffer;
  readonly key?: string | Buffer;
  /** The name the agent's certificate is checked against. Default: the address's host. */
  readonly servername?: string;
}

export interface ConsulClientOptions {
  /** Agent HTTP address. Default `http://127.0.0.1:8500`, or CONSUL_HTTP_ADDR. */
  readonly address?: string;
  /** ACL token, sent as X-Consul-Token. Default CONSUL_HTTP_TOKEN. */
  readonly token?: string;
  /**
   * TLS for an `https://` address. Default, as Consul's CLI: `CONSUL_CACERT`,
   * `CONSUL_CLIENT_CERT` and `CONSUL_CLIENT_KEY` (PEM files), when set.
   */
  readonly tls?: ConsulTlsOptions;
  /** The HTTP client. Default: fetch (with `tls`, on an agent of its own). */
  readonly fetch?: typeof globalThis.fetch;
  /** Per-request timeout for non-blocking calls, ms. Default 5 000. */
  readonly timeoutMs?: number;
}

/** Consul answered with an error status, or could not be reached. */
export class ConsulError extends MeshletError {
  static readonly code = 'MESHLET_CONSUL';
  readonly status: number | undefined;
  constructor(message: string, status?: number, cause?: unknown) {
    super(ConsulError.code, message, cause === undefined ? undefined : { cause });
    this.status = status;
  }
}

export interface ConsulResponse<T> {
  readonly body: T;
  /** X-Consul-Index: the blocking-query index of this answer. */
  readonly index: number;
  readonly status: number;
}

/**
 * The few Consul HTTP API calls Meshlet needs, typed. No retries here: callers decide
 * (watch loops back off; registration surfaces the error).
 */
export class ConsulClient {
  readonly address: string;
  /**
   * Waits until the agent answers `/v1/status/leader` with a leader: every watch of this
   * client waits here while the agent is down, instead of retrying its own query.
   */
  readonly probe: AgentProbe;
  readonly #token: string | undefined;
  readonly #fetch: typeof globalThis.fetch;
  readonly #timeoutMs: number;

  constructor(options: ConsulClientOptions = {}) {
    const addr = options.address ?? process.env.CONSUL_HTTP_ADDR ?? 'http://127.0.0.1:8500';
    this.address = (addr.includes('://') ? addr : `http://${addr}`).replace(/\/+$/, '');
    this.#token = options.token ?? process.env.CONSUL_HTTP_TOKEN;
    const tls = options.tls ?? tlsFromEnvironment();
    this.#fetch = options.fetch ?? (tls && this.address.startsWith('https:') ? fetchOverTls(tls) : globalThis.fetch);
    this.#timeoutMs = options.timeoutMs ?? 5_000;
    this.probe = new AgentProbe({ check: (signal) => this.checkLeader(signal) });
  }

  /** Resolves when the agent answers and knows a leader (reads can be served); throws otherwise. */
  async checkLeader(signal?: AbortSignal): Promise<void> {
    const res = await this.request<unknown>('GET', '/v1/status/leader', { ...(signal ? { signal } : {}), timeoutMs: 1_000 });
    if (typeof res.body !== 'string' || res.body === '') throw new ConsulError('consul has no leader yet', res.status);
  }

  /**
   * Sends one request. `notFound` lets 404 through (KV reads of absent keys). For a
   * blocking query, pass the caller's signal: the wait can be long.
   */
  async request<T>(
    method: 'GET' | 'PUT' | 'DELETE',
    path: string,
    opts: {
      body?: string;
      signal?: AbortSignal;
      notFound?: boolean;
      raw?: boolean;
      timeoutMs?: number;
      /** Error statuses answered with their body rather than thrown (a transaction's 409). */
      accept?: readonly number[];
    } = {},
  ): Promise<ConsulResponse<T>> {
    const headers: Record<string, string> = {};
    if (this.#token) headers['x-consul-token'] = this.#token;
    const timeout = AbortSignal.timeout(Math.ceil(opts.timeoutMs ?? this.#timeoutMs));
    const signal = opts.signal ? AbortSignal.any([opts.signal, timeout]) : timeout;
    let res: Response;
    try {
      res = await this.#fetch(`${this.address}${path}`, {
        method,
        headers,
        signal,
        ...(opts.body !== undefined ? { body: opts.body } : {}),
      });
    } catch (err) {
      throw new ConsulError(
        `consul ${method} ${path.split('?')[0]}: unreachable at ${this.address} (${(err as Error).message})`,
        undefined,
        err,
      );
    }
    const index = Number(res.headers.get('x-consul-index') ?? 0);
    if (res.status === 404 && opts.notFound) {
      await res.body?.cancel();
      return { body: undefined as T, index, status: 404 };
    }
    const text = await res.text();
    if (!res.ok && !opts.accept?.includes(res.status)) {
      throw new ConsulError(`consul ${method} ${path.split('?')[0]}: HTTP ${res.status}: ${text.trim().slice(0, 300)}`, res.status);
    }
    const body = (opts.raw ? text : text.length ? JSON.parse(text) : undefined) as T;
    return { body, index, status: res.status };
  }
}

/** Consul's CLI variables for TLS, read as files; undefined when none is set. */
function tlsFromEnvironment(): ConsulTlsOptions | undefined {
  // Bounded, a regular file, a PEM block (a FIFO or /dev/zero is refused, not read without end).
  const read = (name: string) => {
    const file = process.env[name];
    return file ? readPemFile(file, name) : undefined;
  };
  const ca = read('CONSUL_CACERT');
  const cert = read('CONSUL_CLIENT_CERT');
  const key = read('CONSUL_CLIENT_KEY');
  if (!ca && !cert && !key) return undefined;
  return { ...(ca ? { ca } : {}), ...(cert ? { cert } : {}), ...(key ? { key } : {}) };
}

/** fetch on an undici Agent that trusts `tls.ca` and presents the client certificate. */
function fetchOverTls(tls: ConsulTlsOptions): typeof globalThis.fetch {
  const dispatcher = new Agent({
    connect: {
      ...(tls.ca ? { ca: tls.ca } : {}),
      ...(tls.cert ? { cert: tls.cert } : {}),
      ...(tls.key ? { key: tls.key } : {}),
      ...(tls.servername ? { servername: tls.servername } : {}),
    },
  });
  return ((input: string | URL, init?: RequestInit) =>
    undiciFetch(input, { ...(init as Parameters<typeof undiciFetch>[1]), dispatcher })) as unknown as typeof globalThis.fetch;
}
