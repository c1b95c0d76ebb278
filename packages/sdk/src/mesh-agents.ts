import type { Socket } from 'node:net';
import { markStaleConnection } from '@meshlet/breaker';
import { Agent, buildConnector } from 'undici';

/**
 * undici's own connector, each socket it makes watched for the failure the call executor
 * may send once more to an instance already tried (breaker's SendFailure `stale`): the
 * request was written on a kept-alive connection that had carried an earlier exchange, and
 * the connection broke (closed or reset by the server) before any byte of its answer
 * arrived. That is the idle-close race: the server closes a connection it holds idle just
 * as the client writes the next request on it.
 *
 * undici tells a request neither which socket it went on nor whether that socket was new,
 * so the socket tells it: every `write` notes the bytes read so far (a write after bytes
 * were read since the previous one starts a later request: the connection is reused), and
 * the socket's `error` event — how undici learns of a reset, and how it closes the socket
 * with its own "other side closed" — marks the error when nothing was read since the last
 * write. undici fails the request with that very error object (fetch's TypeError has it as
 * its `cause`). On a TLS socket `bytesRead` counts the bytes it decrypted for its reader
 * (HTTP bytes), not TLS records: a session ticket, or the close_notify alert of a server
 * closing gracefully, is no answer byte, and a TLS stale failure is marked as a TCP one is
 * (test/stale-connection.test.ts, over a TLS server).
 *
 * `connectorOptions`: undici's connector options (`ca`, for a server with a private CA).
 */
export function staleWatchingConnector(connectorOptions: buildConnector.BuildOptions = {}): buildConnector.connector {
  const connect = buildConnector(connectorOptions);
  const origins = new StaleOrigins();
  return (options, callback) =>
    connect(options, (...args) => {
      // A failed connect calls back with the error alone.
      const socket = args[1];
      if (socket) watchForStale(socket, origins, `${options.protocol}//${options.hostname}:${options.port}`);
      callback(...args);
    });
}

/** Origins kept at most: those whose kept-alive connections last broke stale, the oldest dropped first. */
const MAX_STALE_ORIGINS = 1_024;

/**
 * Per origin (an instance), whether its last kept-alive connection to end a request broke
 * stale: a second such break with none of its kept-alive connections answering between is
 * marked repeated (markStaleConnection), and counts on the instance's breaker even when
 * the call does not go again to it. Why this rule: the idle-close race hits a healthy
 * instance only when a connection sat idle just as long as its keep-alive timeout, and its
 * other reused connections answer between races; an instance that resets every reused
 * connection never answers on one — its calls alternate a new connection's answer and a
 * reused one's break, so a rule that any answer ends the run would never count it. Two
 * idle connections closed at once can both race: the second then counts, one failure.
 */
class StaleOrigins {
  readonly #broken = new Set<string>();

  /** A kept-alive connection to `origin` broke stale: true when the one before it did too, none answering between. */
  broke(origin: string): boolean {
    if (this.#broken.has(origin)) return true;
    if (this.#broken.size >= MAX_STALE_ORIGINS) this.#broken.delete(this.#broken.values().next().value as string);
    this.#broken.add(origin);
    return false;
  }

  /** A kept-alive connection to `origin` answered. */
  answered(origin: string): void {
    if (this.#broken.size !== 0) this.#broken.delete(origin);
  }
}

function watchForStale(socket: Socket, origins: StaleOrigins, origin: string): void {
  let written = false;
  let reused = false;
  let readAtWrite = 0;
  /** A reused connection's request answered (bytes read since it was written): the origin's run of stale breaks ends. */
  const noteAnswer = () => {
    if (reused && socket.bytesRead > readAtWrite) origins.answered(origin);
  };
  const write = socket.write;
  // undici writes every request through the socket's own `write` (corked for a body).
  socket.write = function (this: Socket, ...args: Parameters<Socket['write']>): boolean {
    const read = socket.bytesRead;
    noteAnswer();
    if (written && read > readAtWrite) reused = true;
    written = true;
    readAtWrite = read;
    return write.apply(this, args);
  } as Socket['write'];
  // Registered before undici's own listener, which keeps the error for the request.
  socket.on('error', (err: Error) => {
    if (reused && socket.bytesRead === readAtWrite) markStaleConnection(err, origins.broke(origin));
  });
  // A reused connection's last answer, on a socket closed (idle, or after it) before another write.
  socket.once('close', noteAnswer);
}

/**
 * The undici Agents the mesh's own transports send governed attempts on: `shared`, one
 * keep-alive Agent for every call, its sockets watched for going stale
 * (staleWatchingConnector); and `fresh`, for the one attempt of a call that goes again to
 * an instance after its connection went stale. Every request on `fresh` is sent with
 * `reset: true` (`connection: close`): undici takes no other request on that socket and
 * closes it after the answer, so each of them goes on a connection of its own, never on
 * another kept-alive one that may have gone stale too.
 */
export class MeshAgents {
  readonly shared = new Agent({ connect: staleWatchingConnector() });
  readonly fresh = new Agent();

  async close(): Promise<void> {
    // Destroy, not close: a body the application never read would hold close() forever.
    await Promise.all([this.shared.destroy(), this.fresh.destroy()]);
  }
}
