import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { MeshletError } from '@meshlet/core';

export interface ServeOptions {
  /** Path the readiness probe and the registry's health check call. Default: the mesh's healthPath. */
  readonly healthPath?: string;
  /** How long to wait for the app to answer its health path before giving up. Default 30 000 ms. */
  readonly readinessTimeoutMs?: number;
  /**
   * After deregistering, how long to keep serving so that callers' caches drop this
   * instance. Spring Cloud LoadBalancer caches instance lists for 35 s; Meshlet callers
   * see the change within milliseconds. Default: 35 000 ms on a remote registry, 0 on the
   * in-memory one.
   */
  readonly deregisterDelayMs?: number;
  /** How long in-flight requests may take to finish once the server stops accepting. Default 10 000 ms. */
  readonly drainTimeoutMs?: number;
  /** Signals that start a graceful stop. Default SIGTERM and SIGINT; [] installs none. */
  readonly signals?: readonly NodeJS.Signals[];
  /** Exit the process (code 0) after a signal-driven stop. Default true. */
  readonly exitOnSignal?: boolean;
}

/** Waits until `server` listens and its health path answers 2xx; returns the port. */
export async function waitUntilReady(server: Server, healthPath: string, timeoutMs: number): Promise<number> {
  if (!server.listening) await once(server, 'listening');
  const address = server.address() as AddressInfo | null;
  if (!address || typeof address !== 'object') throw new MeshletError('MESHLET_NOT_LISTENING', 'serve(): the server has no TCP address');
  const host = address.address === '::' || address.address === '0.0.0.0' ? '127.0.0.1' : address.address;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${address.port}${healthPath}`;
  // Real time, not the mesh's clock: this waits on a real server over the network.
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer';
  while (Date.now() < deadline) {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
      await res.body?.cancel();
      if (res.ok) return address.port;
      last = `HTTP ${res.status}`;
    } catch (err) {
      last = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new MeshletError('MESHLET_NOT_READY', `${url} did not answer 2xx within ${timeoutMs} ms (${last}): not registering`);
}

/** Stops accepting, lets in-flight requests finish up to the deadline, then closes what is left. */
export async function drain(server: Server, timeoutMs: number): Promise<void> {
  if (!server.listening) return;
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeIdleConnections();
  // Keep-alive connections that become idle after their response are closed as they go idle.
  const idle = setInterval(() => server.closeIdleConnections(), 50);
  const timer = setTimeout(() => server.closeAllConnections(), timeoutMs);
  try {
    await closed;
  } finally {
    clearInterval(idle);
    clearTimeout(timer);
  }
}
