// The inbound gRPC deadline caps the governed HTTP calls a handler makes (mesh.fetch,
// mesh.request): a real grpc-js server whose handler calls a slow node:http upstream; the
// in-memory registry and rule store; the upstream's rule timeout is far longer than the
// caller's deadline.
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import {
  createContext,
  InMemoryKvStore,
  InMemoryRegistry,
  keepInboundDeadline,
  ManualClock,
  MemoryLogger,
  runWithContext,
} from '@meshlet/core';
import { GRPC_PORT_META } from '@meshlet/grpc';
import axios, { AxiosError } from 'axios';
import { axiosAdapter } from '../src/axios.js';
// DeadlineExceededError from `meshlet`, where the README says to catch it.
import { createMesh, DeadlineExceededError, type Mesh } from '../src/index.js';
import { Echo, type EchoClient, type EchoServer, failure, say, startEcho } from './grpc-echo.js';

/** The rule's timeout: the HTTP call would wait this long without the inbound deadline. */
const RULE_TIMEOUT_MS = 5_000;
/**
 * The caller's deadline where the handler must run before it passes: gRPC does not start a
 * handler whose deadline has passed, and 200 ms was not enough on a loaded 2-core machine.
 */
const CALLER_DEADLINE_MS = 1_000;

async function waitFor(cond: () => boolean): Promise<void> {
  const until = Date.now() + 15_000;
  while (!cond()) {
    if (Date.now() > until) throw new Error('condition not met');
    await new Promise((r) => setImmediate(r));
  }
}

/**
 * Reads `body` to its end; `cut` runs once a first byte is in. The body's error, 'ended', or
 * (never cut) how many bytes more came after `cut`, once that is well past a few.
 */
async function readPast(body: ReadableStream<Uint8Array> | null, cut: () => void): Promise<unknown> {
  const reader = (body as ReadableStream<Uint8Array>).getReader();
  let bytes = 0;
  let settled = false;
  const outcome = (async () => {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return 'ended';
      bytes += value.byteLength;
    }
  })().catch((err: unknown) => err);
  void outcome.then(() => {
    settled = true;
  });
  await waitFor(() => bytes > 0);
  cut();
  const atCut = bytes;
  await waitFor(() => settled || bytes > atCut + 20);
  if (settled) return outcome;
  void reader.cancel().catch(() => {});
  return `${bytes - atCut} bytes more after the cut`;
}

/**
 * A node:http upstream: `/slow` is held until the test ends; `/trickle` sends its headers
 * and a first part of its body, then holds the rest; `/dribble` sends its headers, then a
 * byte of body every few milliseconds until its connection closes; anything else answers
 * at once. `closed` counts the connections of `/trickle` and `/dribble` requests that were closed.
 */
async function startUpstream(): Promise<{ server: Server; port: number; hits: string[]; closed: () => number; release(): void }> {
  const held: ServerResponse[] = [];
  const hits: string[] = [];
  let closed = 0;
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    hits.push(req.url ?? '');
    if (req.url?.startsWith('/slow')) held.push(res);
    else if (req.url?.startsWith('/trickle')) {
      req.socket.once('close', () => closed++);
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('first part;');
      held.push(res);
    } else if (req.url?.startsWith('/dribble')) {
      res.writeHead(200, { 'content-type': 'text/plain' });
      const drip = setInterval(() => res.write('.'), 5);
      req.socket.once('close', () => {
        clearInterval(drip);
        closed++;
      });
    } else res.end('fast');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const release = () => {
    for (const res of held.splice(0)) if (!res.destroyed) res.end('late');
  };
  return { server, port: (server.address() as AddressInfo).port, hits, closed: () => closed, release };
}

describe('the inbound gRPC deadline on HTTP calls made in its handler', () => {
  const registry = new InMemoryRegistry();
  const rules = new InMemoryKvStore();
  let upstream: Awaited<ReturnType<typeof startUpstream>>;
  let relayMesh: Mesh;
  let callerMesh: Mesh;
  let relay: EchoServer;
  let client: EchoClient;
  /** What the handler does with its call: set per test. */
  let handle: (target: string, call: grpc.ServerUnaryCall<{ text: string }, { text: string }>) => Promise<string> = async () => '';

  before(async () => {
    upstream = await startUpstream();
    await registry.register({
      id: 'http-0',
      service: 'slow-http',
      address: '127.0.0.1',
      port: upstream.port,
      tags: [],
      metadata: {},
      health: 'passing',
    });
    // The same upstream under a name with no rules: no attempt timeout, so the attempt's signal is the call's.
    await registry.register({
      id: 'http-1',
      service: 'plain-http',
      address: '127.0.0.1',
      port: upstream.port,
      tags: [],
      metadata: {},
      health: 'passing',
    });
    relayMesh = createMesh({ service: 'relay', registry, rules, logger: new MemoryLogger() });
    await relayMesh.rules.apply(
      JSON.stringify({
        service: 'slow-http',
        // A retry and a breaker that opens on one failure: a cut is neither retried nor counted.
        breaker: {
          timeoutMs: RULE_TIMEOUT_MS,
          retry: { maxRetries: 2, backoff: { baseMs: 1, maxMs: 1 } },
          rules: [{ level: 'service', consecutiveFailures: 1, sleepWindowMs: 600_000 }],
        },
      }),
      { author: 'test' },
    );
    await relayMesh.rulesInForce('slow-http');
    relay = await startEcho('relay-0', [relayMesh.grpc.serverInterceptor()], (target, call) => handle(target, call));
    await registry.register({
      id: relay.id,
      service: 'relay',
      address: '127.0.0.1',
      port: 9,
      tags: [],
      metadata: { [GRPC_PORT_META]: String(relay.port) },
      health: 'passing',
    });
    callerMesh = createMesh({ service: 'gateway', registry, rules, logger: new MemoryLogger() });
    client = callerMesh.grpc.client(Echo, 'relay');
  });
  after(async () => {
    upstream.release();
    client.close();
    await callerMesh.close();
    await relayMesh.close();
    await relay.close();
    upstream.server.closeAllConnections();
    await new Promise((r) => upstream.server.close(r));
  });

  for (const front of ['fetch', 'request'] as const) {
    it(`mesh.${front} under a ${CALLER_DEADLINE_MS} ms caller deadline is cut at the deadline with MESHLET_DEADLINE, not held for the rule's ${RULE_TIMEOUT_MS} ms timeout`, async () => {
      let inner: unknown;
      let took = -1;
      const sent = upstream.hits.length;
      handle = async () => {
        const t0 = Date.now();
        try {
          // fetch with a signal of its own (never aborted): the deadline still cuts it.
          if (front === 'fetch') await relayMesh.fetch('http://slow-http/slow', { signal: new AbortController().signal });
          else await relayMesh.request('http://slow-http/slow');
          return 'answered';
        } catch (err) {
          inner = err;
          took = Date.now() - t0;
          throw err;
        }
      };
      const outer = await failure(say(client, 'x', { deadline: Date.now() + CALLER_DEADLINE_MS }, new grpc.Metadata(), 'Relay'));
      assert.equal(outer.code, grpc.status.DEADLINE_EXCEEDED);
      await waitFor(() => inner !== undefined);
      assert.ok(inner instanceof DeadlineExceededError, `the HTTP call ended with the deadline's error, not ${String(inner)}`);
      assert.equal(inner.code, 'MESHLET_DEADLINE');
      assert.equal(inner.sent, true, 'it was sent, then cut');
      assert.match(inner.message, /deadline of the inbound call/);
      assert.ok(took < RULE_TIMEOUT_MS, `ended before the rule's timeout (took ${took} ms)`);
      assert.equal(upstream.hits.length, sent + 1, 'sent once: the cut is not retried');
    });
  }

  it('a handler whose deadline has passed makes no HTTP call: MESHLET_DEADLINE at once, nothing sent', async () => {
    let inner: unknown;
    const sent = upstream.hits.length;
    handle = async (_target, call) => {
      // Wait (in the handler's async context) for the caller's deadline to pass, then call.
      const d = call.getDeadline();
      const deadline = d instanceof Date ? d.getTime() : d;
      await waitFor(() => Date.now() > deadline);
      try {
        await relayMesh.fetch('http://slow-http/fast');
        return 'answered';
      } catch (err) {
        inner = err;
        throw err;
      }
    };
    await failure(say(client, 'x', { deadline: Date.now() + 100 }, new grpc.Metadata(), 'Relay'));
    await waitFor(() => inner !== undefined);
    assert.ok(inner instanceof DeadlineExceededError, `refused with the deadline's error, not ${String(inner)}`);
    assert.equal(inner.sent, false);
    assert.match(inner.message, /nothing was sent/);
    assert.equal(upstream.hits.length, sent, 'the upstream saw nothing');
  });

  it('a call that answers before the deadline is unaffected, and the cuts before it opened no breaker', async () => {
    handle = async () => (await relayMesh.fetch('http://slow-http/fast')).text();
    const reply = await say(client, 'x', { deadline: Date.now() + 30_000 }, new grpc.Metadata(), 'Relay');
    assert.match(reply, /fast$/, 'answered: the service breaker (one failure opens it) did not count the cut calls');
  });

  it('the cut runs on the mesh clock: a ManualClock advanced past the deadline ends the call', async () => {
    const clock = new ManualClock();
    const mesh = createMesh({ service: 'clocked', registry, rules, clock, logger: new MemoryLogger() });
    try {
      const ctx = createContext();
      await mesh.rulesInForce('slow-http');
      // Inside the rule's timeout on the same clock, so the deadline is what ends the call.
      keepInboundDeadline(ctx, Date.now() + 1_000);
      const sent = upstream.hits.length;
      const call = runWithContext(ctx, () => mesh.fetch('http://slow-http/slow'));
      const outcome = call.then(
        () => undefined,
        (err: unknown) => err,
      );
      await waitFor(() => upstream.hits.length > sent);
      clock.advance(1_000);
      const err = await outcome;
      assert.ok(err instanceof DeadlineExceededError, `cut at the deadline, not ${String(err)}`);
      assert.equal(err.sent, true);
    } finally {
      await mesh.close();
    }
  });

  // Found in the last session's reading: the cut ended at the answer's headers, so a body
  // still arriving at the deadline went on being read after the caller had given up.
  for (const front of ['fetch', 'request'] as const)
    it(`mesh.${front}: a body still arriving at the deadline is cut there (MESHLET_DEADLINE, the connection closed)`, {
      timeout: 15_000,
    }, async () => {
      const clock = new ManualClock();
      const mesh = createMesh({ service: 'clocked-body', registry, rules, clock, logger: new MemoryLogger() });
      try {
        await mesh.rulesInForce('slow-http');
        const ctx = createContext();
        keepInboundDeadline(ctx, Date.now() + 1_000);
        const closedBefore = upstream.closed();
        const answer = await runWithContext(ctx, () =>
          front === 'fetch' ? mesh.fetch('http://slow-http/trickle') : mesh.request('http://slow-http/trickle'),
        );
        const body = answer instanceof Response ? answer.text() : answer.body.text();
        const outcome = body.then(
          (text) => text,
          (err: unknown) => err,
        );
        clock.advance(1_000);
        const err = await outcome;
        assert.ok(err instanceof DeadlineExceededError, `the body was cut at the deadline, not ${String(err)}`);
        assert.equal(err.sent, true);
        await waitFor(() => upstream.closed() > closedBefore);
      } finally {
        await mesh.close();
      }
    });

  for (const front of ['fetch', 'request'] as const)
    it(`mesh.${front}: a body read before the deadline ends the cut (no timer left on the clock)`, async () => {
      const clock = new ManualClock();
      const mesh = createMesh({ service: 'clocked-done', registry, rules, clock, logger: new MemoryLogger() });
      try {
        await mesh.rulesInForce('slow-http');
        // A first call without a deadline starts what a mesh keeps for every call (the sweep of rule timeouts).
        await (await mesh.fetch('http://slow-http/fast')).text();
        const ctx = createContext();
        keepInboundDeadline(ctx, Date.now() + 60_000);
        const timersBefore = clock.pendingTimers;
        const text = await runWithContext(ctx, async () => {
          if (front === 'fetch') return (await mesh.fetch('http://slow-http/fast')).text();
          return (await mesh.request('http://slow-http/fast')).body.text();
        });
        assert.equal(text, 'fast');
        await waitFor(() => clock.pendingTimers === timersBefore);
        clock.advance(60_000);
        assert.equal(text, 'fast', 'nothing fired on a body already read');
      } finally {
        await mesh.close();
      }
    });

  // Found in the sdk README: a fetch given in createMesh({ fetch }) was cut up to its headers
  // only, so a body still dribbling in at the deadline went on being read. That fetch is given
  // a signal tied to the deadline until its body ends; a service under a rule's timeout (the
  // attempt's own signal lets go at the headers) and one without.
  for (const service of ['slow-http', 'plain-http'])
    it(`an application's fetch, ${service}: a body still dribbling in at the deadline is cut there (MESHLET_DEADLINE, the connection closed)`, {
      timeout: 15_000,
    }, async () => {
      const clock = new ManualClock();
      const appFetch: typeof fetch = (input, init) => fetch(input, init);
      const mesh = createMesh({ service: 'clocked-app-fetch', registry, rules, clock, fetch: appFetch, logger: new MemoryLogger() });
      try {
        await mesh.rulesInForce(service);
        const ctx = createContext();
        keepInboundDeadline(ctx, Date.now() + 1_000);
        const closedBefore = upstream.closed();
        const answer = await runWithContext(ctx, () => mesh.fetch(`http://${service}/dribble`));
        assert.equal(answer.status, 200);
        const err = await readPast(answer.body, () => clock.advance(1_000));
        assert.ok(err instanceof DeadlineExceededError, `the body was cut at the deadline, not: ${String(err)}`);
        assert.equal(err.code, 'MESHLET_DEADLINE');
        assert.equal(err.sent, true);
        await waitFor(() => upstream.closed() > closedBefore);
      } finally {
        await mesh.close();
      }
    });

  it("an application's fetch under a deadline: its answer is the very Response that fetch gave, read whole; the cut's timer runs to the deadline, and firing then ends nothing", async () => {
    const clock = new ManualClock();
    let given: Response | undefined;
    const appFetch: typeof fetch = async (input, init) => {
      given = await fetch(input, init);
      return given;
    };
    const mesh = createMesh({ service: 'clocked-app-answer', registry, rules, clock, fetch: appFetch, logger: new MemoryLogger() });
    try {
      await mesh.rulesInForce('slow-http');
      await (await mesh.fetch('http://slow-http/fast')).text();
      const ctx = createContext();
      keepInboundDeadline(ctx, Date.now() + 60_000);
      const timersBefore = clock.pendingTimers;
      const answer = await runWithContext(ctx, () => mesh.fetch('http://slow-http/fast'));
      assert.equal(answer, given, 'not wrapped');
      assert.equal(await answer.text(), 'fast');
      // Its body's end cannot be told: the timer stays until the deadline, then goes.
      assert.equal(clock.pendingTimers, timersBefore + 1);
      clock.advance(60_000);
      // Gone at the deadline (the rule timeouts' sweep may end with it, having nothing left).
      assert.ok(clock.pendingTimers <= timersBefore, `${clock.pendingTimers} timers left`);
      assert.equal(answer.bodyUsed, true);
    } finally {
      await mesh.close();
    }
  });

  it("an application's fetch whose Response is its own class: handed on as it came, its body cut at the deadline all the same", {
    timeout: 15_000,
  }, async () => {
    class OwnResponse extends Response {}
    const clock = new ManualClock();
    const appFetch: typeof fetch = async (input, init) => {
      const r = await fetch(input, init);
      return new OwnResponse(r.body, r);
    };
    const mesh = createMesh({ service: 'clocked-own-class', registry, rules, clock, fetch: appFetch, logger: new MemoryLogger() });
    try {
      await mesh.rulesInForce('plain-http');
      const ctx = createContext();
      keepInboundDeadline(ctx, Date.now() + 1_000);
      const answer = await runWithContext(ctx, () => mesh.fetch('http://plain-http/dribble'));
      assert.ok(answer instanceof OwnResponse, 'the same class');
      const err = await readPast(answer.body, () => clock.advance(1_000));
      assert.ok(err instanceof DeadlineExceededError, `cut at the deadline, not ${String(err)}`);
    } finally {
      await mesh.close();
    }
  });

  it("an application's fetch under a rule's timeout: the caller's abort after the headers ends the body", { timeout: 15_000 }, async () => {
    const appFetch: typeof fetch = (input, init) => fetch(input, init);
    const mesh = createMesh({ service: 'app-fetch-abort', registry, rules, fetch: appFetch, logger: new MemoryLogger() });
    try {
      await mesh.rulesInForce('slow-http');
      const ac = new AbortController();
      const answer = await mesh.fetch('http://slow-http/dribble', { signal: ac.signal });
      const reason = new Error('the caller gave up');
      assert.equal(await readPast(answer.body, () => ac.abort(reason)), reason);
    } finally {
      await mesh.close();
    }
  });

  // Found by a reviewer: axios's CanceledError (axios.isCancel: the app's own cancel) for a
  // call the deadline cut, and a `responseType: 'stream'` body read whole past the deadline.
  for (const service of ['slow-http', 'plain-http'])
    it(`axios, ${service}: a call cut by the deadline fails MESHLET_DEADLINE (an AxiosError whose cause is the deadline), not CanceledError`, async () => {
      const http = axios.create({ adapter: axiosAdapter(relayMesh) });
      let inner: unknown;
      handle = async () => {
        try {
          await http.get(`http://${service}/slow`);
          return 'answered';
        } catch (err) {
          inner = err;
          throw err;
        }
      };
      await failure(say(client, 'x', { deadline: Date.now() + CALLER_DEADLINE_MS }, new grpc.Metadata(), 'Relay'));
      await waitFor(() => inner !== undefined);
      assert.ok(inner instanceof AxiosError, String(inner));
      assert.equal(axios.isCancel(inner), false, 'not the caller cancelling');
      assert.equal(inner.code, 'MESHLET_DEADLINE');
      assert.ok(inner.cause instanceof DeadlineExceededError);
    });

  it('axios, responseType stream: a body still arriving at the deadline is cut there (MESHLET_DEADLINE, the connection closed)', {
    timeout: 15_000,
  }, async () => {
    const clock = new ManualClock();
    const mesh = createMesh({ service: 'clocked-axios', registry, rules, clock, logger: new MemoryLogger() });
    try {
      await mesh.rulesInForce('slow-http');
      const http = axios.create({ adapter: axiosAdapter(mesh) });
      const ctx = createContext();
      keepInboundDeadline(ctx, Date.now() + 1_000);
      const closedBefore = upstream.closed();
      const answer = await runWithContext(ctx, () => http.get('http://slow-http/trickle', { responseType: 'stream' }));
      const stream = answer.data as import('node:stream').Readable;
      const outcome = (async () => {
        let text = '';
        for await (const chunk of stream) text += chunk;
        return text;
      })().catch((err: unknown) => err);
      clock.advance(1_000);
      const err = await outcome;
      assert.ok(err instanceof AxiosError, `the body was cut at the deadline, not ${String(err)}`);
      assert.equal(err.code, 'MESHLET_DEADLINE');
      assert.ok(err.cause instanceof DeadlineExceededError);
      await waitFor(() => upstream.closed() > closedBefore);
      // A stream read before the deadline leaves no timer.
      const timersBefore = clock.pendingTimers;
      keepInboundDeadline(ctx, Date.now() + 60_000);
      const fast = await runWithContext(ctx, () => http.get('http://slow-http/fast', { responseType: 'stream' }));
      let text = '';
      for await (const chunk of fast.data as import('node:stream').Readable) text += chunk;
      assert.equal(text, 'fast');
      await waitFor(() => clock.pendingTimers <= timersBefore);
    } finally {
      await mesh.close();
    }
  });

  for (const path of ['dispatched', "through undici's request (an option only it takes)"] as const)
    it(`mesh.request under a rule's timeout, ${path}: the caller's abort after the headers still ends the body, as undici's request signal does`, {
      timeout: 15_000,
    }, async () => {
      const ac = new AbortController();
      const answer = await relayMesh.request('http://slow-http/trickle', {
        signal: ac.signal,
        ...(path === 'dispatched' ? {} : { bodyTimeout: 60_000 }),
      });
      const body = answer.body.text().then(
        (text) => text,
        (err: unknown) => err,
      );
      const reason = new Error('the caller gave up');
      ac.abort(reason);
      assert.equal(await body, reason, 'the body failed with the abort reason');
    });
});
