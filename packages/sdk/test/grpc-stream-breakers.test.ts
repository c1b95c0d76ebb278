// gRPC streams and the mesh's outlier detection and retry budget: a stream's tries are
// recorded on the instance breakers as unary attempts are, and its connect retries are paid
// from the destination's retry budget. Real grpc-js servers on 127.0.0.1, the in-memory
// registry and rule store, every package wired in by createMesh.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { CallExecutor, parseBreakerRules } from '@meshlet/breaker';
import { InMemoryKvStore, InMemoryRegistry, type Instance, ManualClock, MemoryLogger } from '@meshlet/core';
import { ChannelPool, Destination, GRPC_PORT_META, interceptorFor } from '@meshlet/grpc';
import { createTracing, errorAttributesOf } from '@meshlet/trace';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace';
import { createMesh, type Mesh, type MeshOptions } from '../src/index.js';
import { Echo, type EchoClient, portsRoutingUnaware, startEcho, type Text } from './grpc-echo.js';

type Estate = { registry: InMemoryRegistry; rules: InMemoryKvStore };
const estate = (): Estate => ({ registry: new InMemoryRegistry(), rules: new InMemoryKvStore() });

async function register(e: Estate, service: string, id: string, grpcPort: number): Promise<void> {
  await e.registry.register({
    id,
    service,
    address: '127.0.0.1',
    port: 9,
    tags: [],
    metadata: { [GRPC_PORT_META]: String(grpcPort) },
    health: 'passing',
  });
}

/** A port that was listened on and closed: its connections are refused. */
async function deadPort(): Promise<number> {
  const gone = await startEcho('gone');
  gone.server.forceShutdown();
  return gone.port;
}

/**
 * A stream server whose Collect ends with `state.fail` when set (after reading the
 * client's messages), else OK naming the instance; Chat echoes until the client ends it.
 * `hits`: streams that reached it. `chats`: its Chat streams now open.
 */
async function streamServer(id: string) {
  const state = { hits: 0, fail: undefined as grpc.status | undefined, chats: 0 };
  const server = new grpc.Server();
  server.addService(Echo.service, {
    Say(_call: grpc.ServerUnaryCall<Text, Text>, cb: grpc.sendUnaryData<Text>) {
      state.hits++;
      cb(null, { text: id });
    },
    Collect(call: grpc.ServerReadableStream<Text, Text>, cb: grpc.sendUnaryData<Text>) {
      state.hits++;
      call.on('data', () => {});
      call.on('end', () => {
        if (state.fail !== undefined) cb({ code: state.fail, details: `${id} failing` });
        else cb(null, { text: id });
      });
    },
    Chat(call: grpc.ServerDuplexStream<Text, Text>) {
      state.hits++;
      state.chats++;
      call.on('data', (m: Text) => call.write({ text: `${id}:${m.text}` }));
      call.on('end', () => {
        state.chats--;
        call.end();
      });
    },
  });
  const port = await new Promise<number>((res, rej) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? rej(err) : res(p))),
  );
  return { id, port, state, close: () => server.forceShutdown() };
}

/** A client stream of one message: its status code and, OK, the instance that answered. */
function collect(client: EchoClient): Promise<{ code: grpc.status; details: string; text: string | undefined }> {
  return new Promise((res) => {
    const s = client.Collect(new grpc.Metadata(), {}, (err, reply) =>
      res({ code: err?.code ?? grpc.status.OK, details: err?.details ?? '', text: reply?.text }),
    );
    s.write({ text: 'a' });
    s.end();
  });
}

async function waitFor(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 5_000; i++) {
    if (cond()) return;
    await new Promise((r) => setImmediate(r));
  }
  throw new Error('condition not met');
}

/** The instance breaker of `id` in the caller's executor (closed when it has none yet). */
function stateOf(caller: Mesh, id: string): string {
  return caller.breakers.snapshot().find((b) => b.breaker.level === 'instance' && b.breaker.instance === id)?.state ?? 'closed';
}

/** A caller mesh with spans kept in memory; `tries(id)` counts the stream tries (CLIENT spans) of Collect on instance `id`. */
function tracedCaller(e: Estate, options: Partial<MeshOptions> = {}) {
  const spans = new InMemorySpanExporter();
  const caller = createMesh({
    service: 'gateway',
    ...e,
    logger: new MemoryLogger(),
    tracing: { exporters: [spans], batch: { delayMs: 1 } },
    ...options,
  });
  const tries = async (id: string) => {
    await caller.tracing?.forceFlush();
    return spans.getFinishedSpans().filter((s) => s.name === 'meshlet.interop.Echo/Collect' && s.attributes['io.meshlet.instance'] === id)
      .length;
  };
  return { caller, tries };
}

describe('gRPC streams feed the instance breakers (outlier detection)', () => {
  const closers: (() => unknown)[] = [];
  after(async () => {
    for (const c of closers.reverse()) await c();
  });

  it('with one of two instances refusing connections, the default outlier detection ejects it: no stream tries it after its breaker opened', async () => {
    const e = estate();
    const live = await streamServer('live-e');
    closers.push(live.close);
    await register(e, 'ejecting', 'live-e', live.port);
    await register(e, 'ejecting', 'dead-e', await deadPort());
    const clock = new ManualClock(Date.now());
    // Round robin (named: the default balancer draws at random), so that the dead instance is first for every other stream until ejected.
    const { caller, tries } = tracedCaller(e, { clock, route: { loadBalancer: { type: 'roundRobin' } } });
    const client = caller.grpc.client(Echo, 'ejecting');
    closers.push(
      () => caller.close(),
      () => client.close(),
    );
    for (let i = 0; i < 30; i++) {
      const r = await collect(client);
      assert.equal(r.code, grpc.status.OK, `stream ${i}: ${r.details}`);
      assert.equal(r.text, 'live-e');
    }
    assert.equal(stateOf(caller, 'dead-e'), 'open', "the refused connections opened the dead instance's breaker");
    // The default outlier detection opens at 5 failures in a row (Envoy's consecutive_5xx): the dead instance was tried exactly 5 times.
    assert.equal(await tries('dead-e'), 5, 'no stream tried the dead instance after its breaker opened');
    assert.equal(live.state.hits, 30);
  });

  it('a stream that opened and ended with a counted status (UNAVAILABLE) moves the breaker as a unary answer would; an uncounted one (INVALID_ARGUMENT) does not', async () => {
    const e = estate();
    const bad = await streamServer('bad-s');
    const good = await streamServer('good-s');
    closers.push(bad.close, good.close);
    await register(e, 'statuses', 'bad-s', bad.port);
    await register(e, 'statuses', 'good-s', good.port);
    const clock = new ManualClock(Date.now());
    // Round robin (named: the default balancer draws at random), so that each instance takes every other stream.
    const route = { loadBalancer: { type: 'roundRobin' as const } };
    const caller = createMesh({ service: 'gateway', ...e, clock, route, logger: new MemoryLogger() });
    const client = caller.grpc.client(Echo, 'statuses');
    closers.push(
      () => caller.close(),
      () => client.close(),
    );
    // INVALID_ARGUMENT is the caller's (400): it trips nothing, however often.
    bad.state.fail = grpc.status.INVALID_ARGUMENT;
    let refused = 0;
    for (let i = 0; i < 20; i++) if ((await collect(client)).code === grpc.status.INVALID_ARGUMENT) refused++;
    assert.equal(refused, bad.state.hits);
    assert.ok(bad.state.hits > 5, `more than 5 streams reached the instance answering INVALID_ARGUMENT (${bad.state.hits})`);
    assert.equal(stateOf(caller, 'bad-s'), 'closed');
    // UNAVAILABLE (503) counts: 5 in a row open the breaker, and no stream reaches the instance after.
    bad.state.fail = grpc.status.UNAVAILABLE;
    bad.state.hits = 0;
    const codes: grpc.status[] = [];
    for (let i = 0; i < 30; i++) codes.push((await collect(client)).code);
    assert.equal(bad.state.hits, 5, 'five UNAVAILABLE streams, then none');
    assert.equal(codes.filter((c) => c === grpc.status.UNAVAILABLE).length, 5, 'an opened stream is not retried: the caller saw each');
    assert.equal(stateOf(caller, 'bad-s'), 'open');
  });

  it("a half-open instance gets only its probe until the probe's first answer, which closes its breaker while the probe stream lives on", async () => {
    const e = estate();
    const a = await streamServer('probe-a');
    const b = await streamServer('probe-b');
    closers.push(a.close, b.close);
    await register(e, 'probing', 'probe-a', a.port);
    await register(e, 'probing', 'probe-b', b.port);
    const clock = new ManualClock(Date.now());
    // Round robin (named: the default balancer draws at random), so that a takes every other stream: five failures
    // in the first twenty, and a again among the last six.
    const route = { loadBalancer: { type: 'roundRobin' as const } };
    const caller = createMesh({ service: 'gateway', ...e, clock, route, logger: new MemoryLogger() });
    const client = caller.grpc.client(Echo, 'probing');
    closers.push(
      () => caller.close(),
      () => client.close(),
    );
    a.state.fail = grpc.status.UNAVAILABLE;
    for (let i = 0; i < 20; i++) await collect(client);
    assert.equal(stateOf(caller, 'probe-a'), 'open');
    a.state.fail = undefined;
    // The sleep window (30 s by default) passes: the next stream's start turns the breaker half-open.
    clock.advance(30_001);
    // Chat streams held open, nothing written yet (the server answers nothing), until one
    // lands on a: that one is the probe (one probe by default).
    const held: grpc.ClientDuplexStream<Text, Text>[] = [];
    const ends: Promise<grpc.StatusObject>[] = [];
    for (let i = 0; i < 4 && a.state.chats === 0; i++) {
      const before = a.state.chats + b.state.chats;
      const chat = client.Chat();
      chat.on('data', () => {});
      chat.on('error', () => {});
      ends.push(new Promise((res) => chat.on('status', res)));
      held.push(chat);
      await waitFor(() => a.state.chats + b.state.chats > before);
    }
    assert.equal(a.state.chats, 1, 'a probe stream is open on a');
    assert.equal(stateOf(caller, 'probe-a'), 'half-open');
    const aHits = a.state.hits;
    for (let i = 0; i < 10; i++) assert.equal((await collect(client)).text, 'probe-b');
    assert.equal(a.state.hits, aHits, 'until its probe answers, nothing else reaches the half-open instance');
    // The probe's first answer (its response headers, with the echo) closes the breaker; the probe stream stays open.
    for (const chat of held) chat.write({ text: 'x' });
    await waitFor(() => stateOf(caller, 'probe-a') === 'closed');
    const answered = new Set<string | undefined>();
    for (let i = 0; i < 6; i++) answered.add((await collect(client)).text);
    assert.deepEqual([...answered].sort(), ['probe-a', 'probe-b'], 'streams reach a again');
    assert.equal(a.state.chats, 1, 'while the probe stream still lives');
    for (const chat of held) chat.end();
    for (const s of await Promise.all(ends)) assert.equal(s.code, grpc.status.OK);
  });
});

describe('gRPC stream outcomes that say nothing about the instance', () => {
  it("the caller's cancel, its deadline and an injected fault's abort count on no instance breaker", async () => {
    const e = estate();
    const a = await streamServer('calm-a');
    const b = await streamServer('calm-b');
    await register(e, 'calm', 'calm-a', a.port);
    await register(e, 'calm', 'calm-b', b.port);
    const clock = new ManualClock(Date.now());
    const caller = createMesh({ service: 'gateway', ...e, clock, logger: new MemoryLogger() });
    const client = caller.grpc.client(Echo, 'calm');
    // The stream's end, in an object: an async function returning the promise itself would wait for it.
    const opened = async (chat: grpc.ClientDuplexStream<Text, Text>) => {
      const before = a.state.hits + b.state.hits;
      chat.on('data', () => {});
      chat.on('error', () => {});
      const end = new Promise<grpc.StatusObject>((res) => chat.on('status', res));
      chat.write({ text: 'x' });
      await waitFor(() => a.state.hits + b.state.hits > before);
      return { end };
    };
    try {
      // One failure in a row would open an instance's breaker.
      await caller.rules.apply(
        JSON.stringify({ service: 'calm', breaker: { rules: [{ level: 'instance', consecutiveFailures: 1, maxEjectionPercent: 50 }] } }),
        { author: 'test' },
      );
      await caller.rulesInForce('calm');
      for (let i = 0; i < 4; i++) {
        const chat = client.Chat();
        const { end } = await opened(chat);
        chat.cancel();
        assert.equal((await end).code, grpc.status.CANCELLED);
      }
      for (let i = 0; i < 4; i++) {
        // The call's deadline, on the mesh's clock (grpc-js's own is a minute away).
        const chat = client.Chat(new grpc.Metadata(), { deadline: Date.now() + 60_000 });
        const { end } = await opened(chat);
        clock.advance(60_001);
        assert.equal((await end).code, grpc.status.DEADLINE_EXCEEDED);
      }
      const instanceBreakers = () =>
        caller.breakers
          .snapshot()
          .filter((s) => s.breaker.level === 'instance')
          .map((s) => [s.breaker.instance, s.state, s.failures])
          .sort();
      assert.deepEqual(instanceBreakers(), [
        ['calm-a', 'closed', 0],
        ['calm-b', 'closed', 0],
      ]);
      await caller.rules.apply(
        JSON.stringify({
          service: 'calm',
          breaker: { rules: [{ level: 'instance', consecutiveFailures: 1, maxEjectionPercent: 50 }] },
          fault: { rules: [{ name: 'chaos', percentage: 100, abort: 503 }] },
        }),
        { author: 'test' },
      );
      await caller.rulesInForce('calm');
      const hits = a.state.hits + b.state.hits;
      for (let i = 0; i < 4; i++) assert.equal((await collect(client)).code, grpc.status.UNAVAILABLE);
      assert.equal(a.state.hits + b.state.hits, hits, 'the aborts sent nothing');
      for (const [id, state, failures] of instanceBreakers()) assert.deepEqual([state, failures], ['closed', 0], String(id));
      // Without the fault, a status the instance ended the stream with counts: the breakers listen.
      await caller.rules.apply(
        JSON.stringify({ service: 'calm', breaker: { rules: [{ level: 'instance', consecutiveFailures: 1, maxEjectionPercent: 50 }] } }),
        { author: 'test' },
      );
      await caller.rulesInForce('calm');
      a.state.fail = grpc.status.INTERNAL;
      b.state.fail = grpc.status.INTERNAL;
      assert.equal((await collect(client)).code, grpc.status.INTERNAL);
      assert.deepEqual(
        instanceBreakers()
          .map(([, state, failures]) => [state, failures])
          .sort(),
        [
          ['closed', 0],
          ['open', 1],
        ],
      );
    } finally {
      client.close();
      await caller.close();
      a.close();
      b.close();
    }
  });
});

describe('gRPC streams and instance breakers routing has not yet heard of', () => {
  it("an instance whose breaker refuses the stream's pick is passed over for another; with none left the stream ends UNAVAILABLE, its span naming them", async () => {
    const a = await streamServer('pass-a');
    const b = await streamServer('pass-b');
    const inst = (id: string, port: number): Instance => ({
      id,
      service: 'passed',
      address: '127.0.0.1',
      port: 9,
      tags: [],
      metadata: { [GRPC_PORT_META]: String(port) },
      health: 'passing',
    });
    const [ia, ib] = [inst(a.id, a.port), inst(b.id, b.port)];
    const clock = new ManualClock();
    const executor = new CallExecutor({ clock });
    executor.setRules(
      'passed',
      parseBreakerRules(
        { rules: [{ level: 'instance', consecutiveFailures: 1, sleepWindowMs: 600_000, maxEjectionPercent: 100 }] },
        'breaker',
      ),
    );
    // A third instance routing never offers: the ejection cap (never all) lets both a and b open.
    executor.setInstances('passed', [ia.id, ib.id, 'pass-c']);
    const exported = new InMemorySpanExporter();
    const tracing = createTracing({ service: 'gateway', exporters: [exported], batch: { delayMs: 1 } });
    // Routing that has not heard of the instance breakers: it offers a first, then what is left.
    const ports = portsRoutingUnaware([ia, ib], executor, tracing, clock, {
      errorAttributes: errorAttributesOf,
      trackStream: (service, mayRetry) => executor.track(service, mayRetry),
    });
    const pool = new ChannelPool();
    const client = new Echo('dns:///passed.meshlet.invalid', grpc.credentials.createInsecure(), {
      interceptors: [interceptorFor(new Destination(ports, 'passed', pool))],
    });
    try {
      a.state.fail = grpc.status.INTERNAL;
      assert.equal((await collect(client)).code, grpc.status.INTERNAL, 'a fails one stream: its breaker opens');
      for (let i = 0; i < 3; i++) assert.equal((await collect(client)).text, 'pass-b', "a's breaker refused the pick: on to b");
      assert.equal(a.state.hits, 1, 'nothing more reached a');
      b.state.fail = grpc.status.INTERNAL;
      assert.equal((await collect(client)).code, grpc.status.INTERNAL, 'b fails one: its breaker opens too');
      const refused = await collect(client);
      assert.equal(refused.code, grpc.status.UNAVAILABLE);
      assert.match(refused.details, /passed: no instance to send to/);
      assert.deepEqual([a.state.hits, b.state.hits], [1, 4], 'the refused stream reached no instance');
      await tracing.forceFlush();
      const last = exported.getFinishedSpans().at(-1);
      assert.equal(last?.attributes['io.meshlet.circuit.level'], 'instance');
      assert.equal(
        last?.attributes['io.meshlet.circuit.instances'],
        'pass-a pass-b',
        'the span names the instances whose breakers refused',
      );
    } finally {
      await tracing.shutdown();
      client.close();
      pool.close();
      a.close();
      b.close();
    }
  });
});

describe('gRPC stream connect retries and the retry budget', () => {
  it('with the retry budget spent, a refused stream is not tried again: it ends UNAVAILABLE, and the budget counts the denial', async () => {
    const e = estate();
    const live = await streamServer('live-b');
    await register(e, 'budgeted', 'live-b', live.port);
    await register(e, 'budgeted', 'dead-b', await deadPort());
    const clock = new ManualClock(Date.now());
    // Round robin (named: the default balancer draws at random), so that the dead instance is first for every other stream.
    const route = { loadBalancer: { type: 'roundRobin' as const } };
    const { caller, tries } = tracedCaller(e, { clock, route, callDefaults: { outlierDetection: false } });
    const client = caller.grpc.client(Echo, 'budgeted');
    try {
      // A budget of nothing: no retry is ever affordable.
      await caller.rules.apply(
        JSON.stringify({
          service: 'budgeted',
          breaker: { retry: { maxRetries: 2, budget: { percent: 0, minPerSecond: 0, windowMs: 10_000 } } },
        }),
        { author: 'test' },
      );
      await caller.rulesInForce('budgeted');
      const results = [];
      for (let i = 0; i < 10; i++) results.push(await collect(client));
      const refused = results.filter((r) => r.code === grpc.status.UNAVAILABLE);
      assert.ok(refused.length > 0, 'round robin gave the dead instance some first tries');
      for (const r of refused) assert.match(r.details, /^No connection established/);
      assert.equal(await tries('dead-b'), refused.length, 'each refused stream was tried once, on the dead instance');
      assert.equal(await tries('live-b'), 10 - refused.length, 'and never again on the live one');
      assert.equal(caller.breakers.retryStats('budgeted')?.denied, refused.length);
      assert.equal(caller.breakers.retryStats('budgeted')?.retries, 0);
    } finally {
      client.close();
      await caller.close();
      live.close();
    }
  });

  it('with budget left, a refused stream goes on to the live instance and the retry is counted in the budget', async () => {
    const e = estate();
    const live = await streamServer('live-c');
    await register(e, 'affordable', 'live-c', live.port);
    await register(e, 'affordable', 'dead-c', await deadPort());
    // Round robin (named: the default balancer draws at random), so that the dead instance is first for every other stream.
    const route = { loadBalancer: { type: 'roundRobin' as const } };
    const { caller, tries } = tracedCaller(e, { clock: new ManualClock(Date.now()), route, callDefaults: { outlierDetection: false } });
    const client = caller.grpc.client(Echo, 'affordable');
    try {
      for (let i = 0; i < 10; i++) assert.equal((await collect(client)).code, grpc.status.OK);
      const dead = await tries('dead-c');
      assert.ok(dead > 0);
      // The default budget (10 a second over 10 s, plus 20%) affords them all.
      assert.equal(caller.breakers.retryStats('affordable')?.retries, dead);
      assert.equal(caller.breakers.retryStats('affordable')?.calls, 10);
    } finally {
      client.close();
      await caller.close();
      live.close();
    }
  });
});

describe('gRPC streams and the service and API breakers', () => {
  const closers: (() => unknown)[] = [];
  after(async () => {
    for (const c of closers.reverse()) await c();
  });
  /** The service or API breaker of `service` in the caller's executor (closed when the rules made none yet). */
  const levelState = (caller: Mesh, level: 'service' | 'api', service: string): string =>
    caller.breakers.snapshot().find((b) => b.breaker.level === level && b.breaker.service === service)?.state ?? 'closed';

  it('streams that end failing open the service breaker; an open one refuses the next stream at once (UNAVAILABLE, MESHLET_CIRCUIT_OPEN) and its probe closes it', async () => {
    const e = estate();
    const a = await streamServer('svc-a');
    closers.push(a.close);
    await register(e, 'guarded', 'svc-a', a.port);
    const clock = new ManualClock(Date.now());
    const { caller } = tracedCaller(e, { clock, callDefaults: { outlierDetection: false } });
    const client = caller.grpc.client(Echo, 'guarded');
    closers.push(
      () => caller.close(),
      () => client.close(),
    );
    await caller.rules.apply(
      JSON.stringify({ service: 'guarded', breaker: { rules: [{ level: 'service', consecutiveFailures: 3, sleepWindowMs: 10_000 }] } }),
      { author: 'test' },
    );
    await caller.rulesInForce('guarded');
    a.state.fail = grpc.status.UNAVAILABLE;
    for (let i = 0; i < 3; i++) assert.equal((await collect(client)).code, grpc.status.UNAVAILABLE);
    assert.equal(levelState(caller, 'service', 'guarded'), 'open');
    const hits = a.state.hits;
    const refused = await collect(client);
    assert.equal(refused.code, grpc.status.UNAVAILABLE);
    assert.match(refused.details, /circuit/i);
    assert.equal(a.state.hits, hits, 'the refused stream reached no instance');
    // After the sleep window, its probes (3 by default) answering OK close it.
    a.state.fail = undefined;
    clock.advance(10_001);
    for (let i = 0; i < 3; i++) assert.equal((await collect(client)).text, 'svc-a');
    assert.equal(levelState(caller, 'service', 'guarded'), 'closed');
  });

  it("an API breaker refuses its method's streams while the service's other methods still stream", async () => {
    const e = estate();
    const a = await streamServer('api-a');
    closers.push(a.close);
    await register(e, 'per-api', 'api-a', a.port);
    const { caller } = tracedCaller(e, { clock: new ManualClock(Date.now()), callDefaults: { outlierDetection: false } });
    const client = caller.grpc.client(Echo, 'per-api');
    closers.push(
      () => caller.close(),
      () => client.close(),
    );
    await caller.rules.apply(
      JSON.stringify({
        service: 'per-api',
        breaker: {
          rules: [
            {
              level: 'api',
              apis: [{ method: 'POST', path: '/meshlet.interop.Echo/Collect' }],
              consecutiveFailures: 2,
              sleepWindowMs: 10_000,
            },
          ],
        },
      }),
      { author: 'test' },
    );
    await caller.rulesInForce('per-api');
    a.state.fail = grpc.status.INTERNAL;
    for (let i = 0; i < 2; i++) assert.equal((await collect(client)).code, grpc.status.INTERNAL);
    assert.equal(levelState(caller, 'api', 'per-api'), 'open');
    const hits = a.state.hits;
    const refused = await collect(client);
    assert.deepEqual([refused.code, a.state.hits], [grpc.status.UNAVAILABLE, hits]);
    // Chat is another API: not refused.
    const chat = client.Chat();
    const echoed = new Promise<string>((res) => chat.on('data', (m: Text) => res(m.text)));
    const ended = new Promise<grpc.StatusObject>((res) => chat.on('status', res));
    chat.on('error', () => {});
    chat.write({ text: 'hi' });
    assert.equal(await echoed, 'api-a:hi');
    chat.end();
    assert.equal((await ended).code, grpc.status.OK);
  });
});

describe('gRPC streams and the client bulkhead', () => {
  const closers: (() => unknown)[] = [];
  after(async () => {
    for (const c of closers.reverse()) await c();
  });

  /** A Chat stream opened and echoing once (so it holds what it holds), with its end awaitable. */
  async function openChat(client: EchoClient, text: string) {
    const chat = client.Chat();
    const status = new Promise<grpc.StatusObject>((res) => chat.on('status', res));
    chat.on('error', () => {});
    const first = new Promise<string | undefined>((res) => {
      chat.once('data', (m: Text) => res(m.text));
      void status.then(() => res(undefined));
    });
    chat.write({ text });
    return { chat, status, first };
  }

  it('a stream holds one of the bulkhead’s slots for its life: past it, a stream or a unary call is refused RESOURCE_EXHAUSTED before it is sent; the slot comes back at the stream’s end', async () => {
    const e = estate();
    const a = await streamServer('bh-a');
    closers.push(a.close);
    await register(e, 'bounded', 'bh-a', a.port);
    const { caller } = tracedCaller(e, { ratelimit: { bulkheads: { services: { bounded: { maxConcurrent: 1 } } } } });
    const client = caller.grpc.client(Echo, 'bounded');
    closers.push(
      () => caller.close(),
      () => client.close(),
    );
    const held = await openChat(client, 'one');
    assert.equal(await held.first, 'bh-a:one');
    const refused = await openChat(client, 'two');
    const status = await refused.status;
    assert.equal(status.code, grpc.status.RESOURCE_EXHAUSTED, status.details);
    assert.match(status.details, /bounded: 1 calls in flight and 0 waiting/);
    const unary = await new Promise<grpc.ServiceError | null>((res) =>
      client.Say({ text: 'u' }, new grpc.Metadata(), {}, (err) => res(err)),
    );
    assert.equal(unary?.code, grpc.status.RESOURCE_EXHAUSTED, 'a unary call shares the slots');
    assert.equal(a.state.hits, 1, 'nothing refused reached the instance');
    held.chat.end();
    assert.equal((await held.status).code, grpc.status.OK);
    const next = await openChat(client, 'three');
    assert.equal(await next.first, 'bh-a:three', 'the slot came back');
    next.chat.end();
    await next.status;
  });

  it('a stream past the slots waits in the bulkhead’s queue and starts when one is given back; a caller that cancels while waiting gives up its place', async () => {
    const e = estate();
    const a = await streamServer('bq-a');
    closers.push(a.close);
    await register(e, 'queued', 'bq-a', a.port);
    const { caller } = tracedCaller(e, { ratelimit: { bulkheads: { services: { queued: { maxConcurrent: 1, maxQueue: 1 } } } } });
    const client = caller.grpc.client(Echo, 'queued');
    closers.push(
      () => caller.close(),
      () => client.close(),
    );
    const held = await openChat(client, 'one');
    assert.equal(await held.first, 'bq-a:one');
    // Waits: the queue has room. It is cancelled while it waits, and leaves the queue.
    const cancelled = await openChat(client, 'gone');
    cancelled.chat.cancel();
    assert.equal((await cancelled.status).code, grpc.status.CANCELLED);
    const waiting = await openChat(client, 'two');
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(a.state.hits, 1, 'the waiting stream was not sent');
    held.chat.end();
    assert.equal(await waiting.first, 'bq-a:two', 'it started once the slot came back');
    assert.equal(a.state.hits, 2);
    waiting.chat.end();
    assert.equal((await waiting.status).code, grpc.status.OK);
  });
});
