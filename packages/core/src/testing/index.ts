/**
 * Helpers for Meshlet's own tests and for tests of code built on it: a loopback server,
 * a wait on a condition, the assertion every rule parser's tests make, and outbound call and attempt records for
 * tests of attempt-chain stages. Not used at run time.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type RequestListener, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { adminToken } from '../admin-endpoint.js';
import { type Attempt, type AttemptResult, type AttemptTarget, newAttempt, type OutboundCall } from '../attempt.js';
import type { Instance } from '../instance.js';
import { RuleValidationError } from '../rules/rule-error.js';

export interface TestServer {
  readonly server: Server;
  readonly port: number;
  /** Closes the server and every connection it holds (keep-alive ones too). */
  close(): Promise<void>;
}

/** The header of an admin request to the instance registered at `<address>:<port>`: the secret's token for that address. */
export function adminAuthorization(secret: string, port: number, address = '127.0.0.1'): { authorization: string } {
  return { authorization: `Bearer ${adminToken(secret, `${address}:${port}`)}` };
}

/** Starts a node:http server on 127.0.0.1 with an ephemeral port. */
export async function listen(listener: RequestListener): Promise<TestServer> {
  const server = createServer(listener);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    server,
    port: (server.address() as AddressInfo).port,
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((resolve, reject) => server.close((err) => (err ? reject(err) : resolve())));
    },
  };
}

/** Asserts that `parse` refuses its input with a RuleValidationError at `path` (and, if given, a reason matching `reason`). */
export function assertRuleRefused(parse: () => unknown, path: string, reason?: RegExp): void {
  assert.throws(parse, (err: unknown) => {
    assert.ok(err instanceof RuleValidationError, String(err));
    assert.equal(err.path, path, err.message);
    assert.equal(err.code, 'MESHLET_BAD_RULE');
    if (reason) assert.match(err.reason, reason);
    return true;
  });
}

/** An outbound call for a stage's test: a GET with no query, no headers yet, answered 200 by its transport; `fields` over that. */
export function testCall<R extends AttemptResult = { status: number }>(
  fields: Partial<OutboundCall<R>> & Pick<OutboundCall<R>, 'service' | 'path'>,
): OutboundCall<R> {
  return {
    method: 'GET',
    search: '',
    headers: {},
    tags: () => undefined,
    transport: async () => ({ status: 200 }) as R,
    fromResponse: () => ({ status: 200 }) as R,
    ...fields,
  };
}

/**
 * The first attempt of `call` to `target`, the breaker closed, nothing noted yet; `fields`
 * over that. Every field the executor's record has is made with it (the observers' too), so
 * a stage under test or bench sees the record's shape.
 */
export function testAttempt<R extends AttemptResult>(
  call: OutboundCall<R>,
  target: AttemptTarget,
  fields: Partial<Attempt<R>> = {},
): Attempt<R> {
  return { ...newAttempt(call, target, 0, undefined, 'closed'), ...fields };
}

/** A passing instance of `service` on 127.0.0.1:`port`, no tags or metadata; `fields` over that. */
export function testInstance(service: string, id: string, port: number, fields: Partial<Instance> = {}): Instance {
  return { id, service, address: '127.0.0.1', port, tags: [], metadata: {}, health: 'passing', ...fields };
}

/**
 * Waits for `test` to hold, looking every 20 ms; fails naming `what` if it has not held
 * within `timeoutMs` (a test waits on a condition, never on a sleep).
 */
export async function waitFor(test: () => boolean | Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await test())) {
    if (performance.now() > deadline) throw new Error(`${what} did not hold within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
