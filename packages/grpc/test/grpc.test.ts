// @meshlet/grpc on its own: its ports filled with small fakes (no sibling package), and real
// grpc-js servers and clients on 127.0.0.1. The SDK's tests cover it wired to the real router,
// executor, limiter and tracing (packages/sdk/test/grpc.test.ts).
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import {
  createContext,
  getTag,
  type Instance,
  ManualClock,
  MemoryLogger,
  type MeshContext,
  MeshletError,
  silentLogger,
  throttledLogger,
} from '@meshlet/core';
import { ROOT_CONTEXT, type Span } from '@opentelemetry/api';
import { rpcSpan } from '../src/governance.js';
import { GRPC_LOG_LINE_MAX } from '../src/grpc-log.js';
import {
  ChannelPool,
  type ExecutorCall,
  GRPC_PORT_META,
  type GrpcClientPorts,
  grpcCodeOf,
  grpcLogLine,
  grpcPortOf,
  headersOf,
  httpStatusOf,
  LIMITED_TRAILER,
  meshInterceptor,
  meshServerInterceptor,
  retryable,
  rpcNames,
  statusOfError,
} from '../src/index.js';
import type { Admitted, GrpcClientSpan, GrpcServerPorts, GrpcTracing } from '../src/ports.js';

const instance = (id: string, port: number, metadata: Record<string, string> = {}): Instance => ({
  id,
  service: 'svc',
  address: '127.0.0.1',
  port,
  tags: [],
  metadata,
  health: 'passing',
});

describe("grpc-js's log lines", () => {
  it("the package's index leaves out the constants only tests use (GRPC_LOG_CODE, GRPC_LOG_LINE_MAX)", async () => {
    const index: Record<string, unknown> = await import('../src/index.js');
    assert.deepEqual(
      ['GRPC_LOG_CODE', 'GRPC_LOG_LINE_MAX'].filter((name) => name in index),
      [],
    );
  });

  it('are cut at GRPC_LOG_LINE_MAX, control characters replaced, a refused metadata value left out', () => {
    assert.equal(grpcLogLine('x'.repeat(5000)).length, GRPC_LOG_LINE_MAX + 1);
    assert.equal(grpcLogLine('a\nb\u0000c'), 'a\ufffdb\ufffdc');
    assert.equal(
      grpcLogLine(
        `Failed to add metadata entry x-k: ${'é'.repeat(9000)}. Metadata string value "${'é'.repeat(9000)}" contains illegal characters`,
      ),
      'Failed to add metadata entry x-k: value refused (not shown)',
    );
  });
});

describe('status codes', () => {
  it('maps gRPC codes to the HTTP statuses breakers classify, and mesh-made HTTP statuses back', () => {
    assert.equal(httpStatusOf(grpc.status.OK), 200);
    assert.equal(httpStatusOf(grpc.status.UNAVAILABLE), 503);
    assert.equal(httpStatusOf(grpc.status.INTERNAL), 500);
    assert.equal(httpStatusOf(grpc.status.INVALID_ARGUMENT), 400, 'the caller’s fault: trips no breaker');
    assert.equal(httpStatusOf(99), 500);
    assert.equal(grpcCodeOf(503), grpc.status.UNAVAILABLE);
    assert.equal(grpcCodeOf(429), grpc.status.UNAVAILABLE);
    assert.equal(grpcCodeOf(403), grpc.status.PERMISSION_DENIED);
    assert.equal(grpcCodeOf(418), grpc.status.UNKNOWN);
  });

  it('retries UNAVAILABLE, and RESOURCE_EXHAUSTED only with the limiter trailer', () => {
    const md = new grpc.Metadata();
    assert.equal(retryable({ code: grpc.status.UNAVAILABLE, trailers: md }), true);
    assert.equal(retryable({ code: grpc.status.RESOURCE_EXHAUSTED, trailers: md }), false);
    assert.equal(retryable({ code: grpc.status.INTERNAL, trailers: md }), false);
    assert.equal(retryable({ code: grpc.status.DEADLINE_EXCEEDED, trailers: md }), false);
    const limited = new grpc.Metadata();
    limited.set(LIMITED_TRAILER, 'per-api');
    assert.equal(retryable({ code: grpc.status.RESOURCE_EXHAUSTED, trailers: limited }), true);
  });

  it('maps the governance errors by their codes', () => {
    const err = (code: string) => new MeshletError(code, code);
    assert.equal(statusOfError(err('MESHLET_CIRCUIT_OPEN')).code, grpc.status.UNAVAILABLE);
    assert.equal(statusOfError(err('MESHLET_NO_INSTANCE')).code, grpc.status.UNAVAILABLE);
    assert.equal(statusOfError(err('MESHLET_TIMEOUT')).code, grpc.status.DEADLINE_EXCEEDED);
    assert.equal(statusOfError(err('MESHLET_BULKHEAD_FULL')).code, grpc.status.RESOURCE_EXHAUSTED);
    assert.equal(statusOfError(err('MESHLET_TOO_MANY_DESTINATIONS')).code, grpc.status.RESOURCE_EXHAUSTED);
    assert.equal(statusOfError(new Error('boom')).code, grpc.status.INTERNAL);
  });
});

describe('registration metadata', () => {
  it('reads gRPC_port, then the legacy gRPC.port, then the port, as grpc-spring does', () => {
    assert.equal(grpcPortOf(instance('a', 8080, { [GRPC_PORT_META]: '9090' })), 9090);
    assert.equal(grpcPortOf(instance('a', 8080, { 'gRPC.port': '9091' })), 9091);
    assert.equal(grpcPortOf(instance('a', 8080)), 8080);
    assert.equal(grpcPortOf(instance('a', 8080, { [GRPC_PORT_META]: 'not-a-port' })), 8080, 'a malformed value falls back');
    assert.equal(grpcPortOf(instance('a', 8080, { [GRPC_PORT_META]: '70000' })), 8080);
  });

  it('names rpc.service and rpc.method from the path', () => {
    assert.deepEqual(rpcNames('/pkg.v1.Svc/Do'), { service: 'pkg.v1.Svc', method: 'Do', spanName: 'pkg.v1.Svc/Do' });
  });

  it('keeps at most maxChannels channels, closing the least recently used', () => {
    const pool = new ChannelPool({ maxChannels: 2 });
    const a = pool.get(instance('a', 1001));
    pool.get(instance('b', 1002));
    assert.equal(pool.get(instance('a', 1001)), a, 'reused');
    pool.get(instance('c', 1003));
    assert.equal(pool.size, 2);
    assert.equal(pool.get(instance('a', 1001)), a, 'a was used last: b was closed, not a');
    pool.close();
    assert.equal(pool.size, 0);
  });

  it('makes the channel again for an instance object whose channel was closed for the bound', () => {
    const pool = new ChannelPool({ maxChannels: 1 });
    const a = instance('a', 1001);
    const first = pool.get(a);
    assert.equal(pool.get(a), first, 'found by the instance object');
    pool.get(instance('b', 1002));
    const again = pool.get(a);
    assert.notEqual(again, first, 'a was closed past the bound: a new channel, not the closed one');
    assert.equal(pool.size, 1);
    assert.equal(pool.channel(a).target, '127.0.0.1:1001');
    pool.close();
  });

  it('turns metadata into headers, leaving binary values out', () => {
    const md = new grpc.Metadata();
    md.set('x-meshlet-tags', 'tier=gold');
    md.add('multi', 'a');
    md.add('multi', 'b');
    md.set('trace-bin', Buffer.from([1, 2]));
    assert.deepEqual(headersOf(md), { 'x-meshlet-tags': 'tier=gold', multi: ['a', 'b'] });
  });

  it("reads the metadata's own keys, not names inherited from a polluted prototype", () => {
    const proto = Object.prototype as Record<string, unknown>;
    proto['x-meshlet-tags'] = ['lane=polluted'];
    try {
      assert.deepEqual(headersOf(new grpc.Metadata()), {});
    } finally {
      delete proto['x-meshlet-tags'];
    }
  });
});

// A tiny service with hand-written serializers: no proto needed for the package's own tests.
const utf8 = {
  requestSerialize: (s: string) => Buffer.from(s),
  requestDeserialize: (b: Buffer) => b.toString(),
  responseSerialize: (s: string) => Buffer.from(s),
  responseDeserialize: (b: Buffer) => b.toString(),
};
const service: grpc.ServiceDefinition = {
  Hello: { path: '/t.T/Hello', requestStream: false, responseStream: false, ...utf8 },
};
const Client = grpc.makeGenericClientConstructor(service, 'T');

async function serve(id: string, interceptors: grpc.ServerInterceptor[] = [], answer?: () => grpc.ServiceError | undefined) {
  const server = new grpc.Server({ interceptors });
  server.addService(service, {
    Hello(call: grpc.ServerUnaryCall<string, string>, cb: grpc.sendUnaryData<string>) {
      const err = answer?.();
      if (err) return cb(err);
      cb(null, `${id}:${call.request}:${getTag('tier') ?? '-'}:${String(call.metadata.get('x-test')[0] ?? '')}`);
    },
  });
  const port = await new Promise<number>((res, rej) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))),
  );
  return { port, close: () => new Promise<void>((r) => server.tryShutdown(() => r())) };
}

const hello = (client: grpc.Client, text: string, options: grpc.CallOptions = {}) =>
  new Promise<string>((res, rej) =>
    (client as unknown as Record<string, (...a: unknown[]) => void>).Hello?.(
      text,
      new grpc.Metadata(),
      options,
      (e: Error | null, r?: string) => (e ? rej(e) : res(r ?? '')),
    ),
  );

/** Client ports whose router walks `instances` in order and whose executor retries once. */
function clientPorts(instances: Instance[], outbound: Record<string, string> = {}): GrpcClientPorts & { sent: string[] } {
  const sent: string[] = [];
  let next = 0;
  return {
    sent,
    directory: { use: () => true, ensure: async () => {} },
    router: {
      decide: () => ({ instance: instances[next++ % instances.length] as Instance, rule: undefined, lane: undefined }),
      picker: () => ({
        first: () => ({ instance: instances[next++ % instances.length] as Instance, rule: undefined, lane: undefined }),
        next: (_tags, tried) => {
          for (let k = 0; k < instances.length; k++) {
            const instance = instances[next++ % instances.length] as Instance;
            if (!tried.has(instance.id)) return { instance, rule: undefined, lane: undefined };
          }
          return undefined;
        },
      }),
    },
    executor: {
      async call<R extends { readonly status: number }>(call: ExecutorCall<R>): Promise<R> {
        const tried = new Set<string>();
        let i = call.pick(tried);
        for (;;) {
          if (!i) throw new Error('no instance');
          sent.push(i.id);
          const r = await call.send(i, call.signal);
          if (r.status < 500) return r;
          tried.add(i.id);
          const again = call.pick(tried);
          if (!again || tried.size > 1) return r;
          i = again;
        }
      },
    },
    tracing: undefined,
    outboundHeaders: () => outbound,
    clock: new ManualClock(),
    logger: silentLogger,
  };
}

describe('meshInterceptor with fake ports on real servers', () => {
  it('sends each call to the instance the router picked, on its gRPC_port, with the mesh headers', async () => {
    const a = await serve('a');
    const b = await serve('b');
    const ports = clientPorts(
      [instance('a', 1, { [GRPC_PORT_META]: String(a.port) }), instance('b', 1, { [GRPC_PORT_META]: String(b.port) })],
      {
        'x-test': 'from-mesh',
      },
    );
    const pool = new ChannelPool();
    const client = new Client('dns:///svc.meshlet.invalid', grpc.credentials.createInsecure(), {
      interceptors: [meshInterceptor(ports, 'svc', { pool })],
    });
    try {
      assert.equal(await hello(client, 'x'), 'a:x:-:from-mesh');
      assert.equal(await hello(client, 'y'), 'b:y:-:from-mesh');
    } finally {
      client.close();
      pool.close();
      await a.close();
      await b.close();
    }
  });

  it('retries UNAVAILABLE on the next instance but not INTERNAL (the veto is in pick)', async () => {
    let code: grpc.status = grpc.status.UNAVAILABLE;
    const bad = await serve('bad', [], () => ({ code, details: 'no', name: 'e', message: 'no', metadata: new grpc.Metadata() }));
    const good = await serve('good');
    const ports = clientPorts([instance('bad', bad.port), instance('good', good.port)]);
    const pool = new ChannelPool();
    const client = new Client('dns:///svc.meshlet.invalid', grpc.credentials.createInsecure(), {
      interceptors: [meshInterceptor(ports, 'svc', { pool })],
    });
    try {
      assert.equal(await hello(client, 'r'), 'good:r:-:');
      assert.deepEqual(ports.sent, ['bad', 'good']);
      code = grpc.status.INTERNAL;
      ports.sent.length = 0;
      await assert.rejects(hello(client, 'r'), (e: grpc.ServiceError) => e.code === grpc.status.INTERNAL);
      assert.deepEqual(ports.sent, ['bad'], 'INTERNAL is not retried');
    } finally {
      client.close();
      pool.close();
      await bad.close();
      await good.close();
    }
  });
});

describe('meshServerInterceptor with fake ports', () => {
  it('runs the handler inside the context built from the metadata, and refuses with the admission’s status', async () => {
    const contexts: MeshContext[] = [];
    let refuse = false;
    const server = await serve('s', [
      meshServerInterceptor({
        context: (headers) => {
          const ctx = createContext({ tags: [['tier', String(headers['x-tier'] ?? '')]] });
          contexts.push(ctx);
          return ctx;
        },
        admit: () =>
          refuse
            ? { code: grpc.status.PERMISSION_DENIED, details: 'denied by rule r', trailers: { 'x-why': 'r' }, errorType: 'auth_denied' }
            : { release: () => {} },
        tracing: undefined,
        logger: silentLogger,
      }),
    ]);
    const client = new Client(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
    const md = new grpc.Metadata();
    md.set('x-tier', 'gold');
    const call = (m: grpc.Metadata) =>
      new Promise<string>((res, rej) =>
        (client as unknown as Record<string, (...a: unknown[]) => void>).Hello?.('q', m, {}, (e: Error | null, r?: string) =>
          e ? rej(e) : res(r ?? ''),
        ),
      );
    try {
      assert.equal(await call(md), 's:q:gold:', 'the handler saw the tag through getTag');
      refuse = true;
      await assert.rejects(call(md), (e: grpc.ServiceError) => {
        assert.equal(e.code, grpc.status.PERMISSION_DENIED);
        assert.deepEqual(e.metadata.get('x-why'), ['r']);
        return true;
      });
      assert.equal(contexts.length, 2);
    } finally {
      client.close();
      await server.close();
    }
  });

  it('refuses a call whose context cannot be built (INTERNAL, the handler never runs), admits one whose limiter failed, and logs both with per-request codes, one line per interval', async () => {
    const memory = new MemoryLogger();
    const logger = throttledLogger(memory, { clock: new ManualClock(0) });
    let failContext = true;
    let admitThrows = false;
    let admissions = 0;
    let handled = 0;
    const server = await serve(
      's',
      [
        meshServerInterceptor({
          context: () => {
            if (failContext) throw new Error(`no context ${'x'.repeat(10_000)}`);
            return createContext();
          },
          admit: () => {
            admissions++;
            // Auth (or the limiter) throwing where it decides; the limiter's store failing after.
            if (admitThrows) throw new Error('auth rule broke');
            return Promise.reject(new Error('limiter down'));
          },
          tracing: undefined,
          logger,
        }),
      ],
      () => {
        handled++;
        return undefined;
      },
    );
    const client = new Client(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
    const call = () =>
      new Promise<string>((res, rej) =>
        (client as unknown as Record<string, (...a: unknown[]) => void>).Hello?.(
          'q',
          new grpc.Metadata(),
          {},
          (e: Error | null, r?: string) => (e ? rej(e) : res(r ?? '')),
        ),
      );
    try {
      // No context: no caller, no tags for auth and limits to decide on. Refused, never run ungoverned.
      for (let i = 0; i < 5; i++) await assert.rejects(call(), (e: grpc.ServiceError) => e.code === grpc.status.INTERNAL);
      assert.equal(admissions, 0);
      assert.equal(handled, 0);
      failContext = false;
      for (let i = 0; i < 5; i++) await call(); // admitted although the limiter threw
      assert.equal(handled, 5);
      assert.equal(logger.counts.get('MESHLET_CONTEXT_FAILED'), 5);
      assert.equal(logger.counts.get('MESHLET_RATELIMIT_FAILED'), 5);
      const lines = memory.entries.filter((e) => e.message.startsWith('gRPC '));
      assert.deepEqual(
        lines.map((e) => e.fields?.code),
        ['MESHLET_CONTEXT_FAILED', 'MESHLET_RATELIMIT_FAILED'],
      );
      assert.ok(String(lines[0]?.fields?.error).length <= 200, 'the error cut short');
      // A throw where auth decides: refused, never the handler without it.
      admitThrows = true;
      for (let i = 0; i < 3; i++) await assert.rejects(call(), (e: grpc.ServiceError) => e.code === grpc.status.INTERNAL);
      assert.equal(handled, 5);
      assert.equal(logger.counts.get('MESHLET_ADMISSION_FAILED'), 3);
    } finally {
      client.close();
      await server.close();
    }
  });

  it('keeps every step of a call in its context: a client stream’s messages and end, after an async admission, and an interceptor after the mesh’s', async () => {
    const streamService: grpc.ServiceDefinition = {
      Join: { path: '/t.T/Join', requestStream: true, responseStream: false, ...utf8 },
    };
    const seen: string[] = [];
    // Placed after the mesh's interceptor: it runs inside the call's context at each step.
    const after: grpc.ServerInterceptor = (_method, call) =>
      new grpc.ServerInterceptingCall(call, {
        start: (next) =>
          next({
            onReceiveMetadata: (md, n) => {
              seen.push(`metadata:${getTag('tier') ?? '-'}`);
              n(md);
            },
            onReceiveMessage: (m, n) => {
              seen.push(`message:${getTag('tier') ?? '-'}`);
              n(m);
            },
            onReceiveHalfClose: (n) => {
              seen.push(`half-close:${getTag('tier') ?? '-'}`);
              n();
            },
          }),
      });
    const server = new grpc.Server({
      interceptors: [
        meshServerInterceptor({
          context: (headers) => createContext({ tags: [['tier', String(headers['x-tier'] ?? '')]] }),
          // Decided later, as a distributed rate limit is.
          admit: () => new Promise((res) => setImmediate(() => res({ release: () => {} }))),
          tracing: undefined,
          logger: silentLogger,
        }),
        after,
      ],
    });
    server.addService(streamService, {
      Join(call: grpc.ServerReadableStream<string, string>, cb: grpc.sendUnaryData<string>) {
        const parts: string[] = [`start:${getTag('tier') ?? '-'}`];
        call.on('data', (m: string) => parts.push(`${m}:${getTag('tier') ?? '-'}`));
        call.on('end', () => cb(null, [...parts, `end:${getTag('tier') ?? '-'}`].join(',')));
      },
    });
    const port = await new Promise<number>((res, rej) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))),
    );
    const client = new (grpc.makeGenericClientConstructor(streamService, 'T'))(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    try {
      const join = (tier: string) =>
        new Promise<string>((res, rej) => {
          const md = new grpc.Metadata();
          md.set('x-tier', tier);
          const stream = (client as unknown as Record<string, (...a: unknown[]) => grpc.ClientWritableStream<string>>).Join?.(
            md,
            (e: Error | null, r?: string) => (e ? rej(e) : res(r ?? '')),
          );
          stream?.write('a');
          stream?.write('b');
          stream?.end();
        });
      const [gold, silver] = await Promise.all([join('gold'), join('silver')]);
      assert.equal(gold, 'start:gold,a:gold,b:gold,end:gold');
      assert.equal(silver, 'start:silver,a:silver,b:silver,end:silver');
      assert.deepEqual(
        seen.filter((x) => x.endsWith(':-')),
        [],
        'no step of the next interceptor ran outside the context',
      );
      assert.equal(seen.filter((x) => x.startsWith('message:')).length, 4);
      assert.equal(seen.filter((x) => x.startsWith('half-close:')).length, 2);
    } finally {
      client.close();
      await new Promise<void>((r) => server.tryShutdown(() => r()));
    }
  });

  it("ends the SERVER span with the status the call ended with: a refusal's code and what refused, DEADLINE_EXCEEDED past the deadline, CANCELLED for the client's cancel", async () => {
    const ends: { code: unknown; errorType: unknown }[] = [];
    let ended: (() => void) | undefined;
    const nextEnd = () => new Promise<void>((res) => (ended = res));
    const tracing: GrpcTracing = {
      tracer: undefined as unknown as GrpcTracing['tracer'],
      propagation: { extract: () => ROOT_CONTEXT, inject: () => {} },
      active: () => ROOT_CONTEXT,
      run: (_ctx, fn) => fn(),
    };
    const startServerSpan = () => {
      const attributes: Record<string, unknown> = {};
      return {
        setAttribute(k: string, v: unknown) {
          attributes[k] = v;
          return this;
        },
        setStatus() {
          return this;
        },
        end() {
          ends.push({ code: attributes['rpc.grpc.status_code'], errorType: attributes['error.type'] });
          ended?.();
        },
      } as unknown as Span;
    };
    type Admission = ReturnType<GrpcServerPorts['admit']>;
    let admit: () => Admission = () => ({ release: () => {} });
    let handled = 0;
    const server = await serve(
      's',
      [meshServerInterceptor({ context: () => createContext(), admit: () => admit(), tracing, startServerSpan, logger: silentLogger })],
      () => {
        handled++;
        return undefined;
      },
    );
    const client = new Client(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
    const code = (p: Promise<unknown>) =>
      p.then(
        () => grpc.status.OK,
        (e: grpc.ServiceError) => e.code,
      );
    try {
      admit = () => ({
        code: grpc.status.RESOURCE_EXHAUSTED,
        details: 'limited',
        trailers: { [LIMITED_TRAILER]: 'r' },
        errorType: 'rate_limited',
      });
      let end = nextEnd();
      assert.equal(await code(hello(client, 'q')), grpc.status.RESOURCE_EXHAUSTED);
      await end;
      admit = () => {
        throw new Error('auth rule broke');
      };
      end = nextEnd();
      assert.equal(await code(hello(client, 'q')), grpc.status.INTERNAL);
      await end;
      assert.deepEqual(ends.splice(0), [
        { code: grpc.status.RESOURCE_EXHAUSTED, errorType: 'rate_limited' },
        { code: grpc.status.INTERNAL, errorType: 'admission_failed' },
      ]);
      // The server's deadline alone (a raw HTTP/2 client that never cancels): grpc-js ends the
      // call below the interceptors while the admission is still out.
      let asked: () => void = () => {};
      const askedP = new Promise<void>((res) => (asked = res));
      let decide: (a: Admitted) => void = () => {};
      admit = () => {
        asked();
        return new Promise<Admitted>((res) => (decide = res));
      };
      end = nextEnd();
      const session = http2.connect(`http://127.0.0.1:${server.port}`);
      const req = session.request({
        ':method': 'POST',
        ':path': '/t.T/Hello',
        'content-type': 'application/grpc',
        te: 'trailers',
        'grpc-timeout': '30m',
      });
      // A status with no message is trailers-only: grpc-status in the response headers.
      const status = new Promise<string>((res) => req.on('response', (h) => res(String(h['grpc-status']))));
      req.on('data', () => {});
      req.end(Buffer.concat([Buffer.from([0, 0, 0, 0, 1]), Buffer.from('q')]));
      await askedP;
      await end;
      assert.equal(await status, String(grpc.status.DEADLINE_EXCEEDED));
      session.close();
      decide({ release: () => {} });
      assert.deepEqual(ends.splice(0), [{ code: grpc.status.DEADLINE_EXCEEDED, errorType: 'DEADLINE_EXCEEDED' }]);
      // The client's cancel before its deadline.
      const askedAgain = new Promise<void>((res) => (asked = res));
      end = nextEnd();
      const cancelled = (client as unknown as Record<string, (...a: unknown[]) => grpc.ClientUnaryCall>).Hello?.(
        'q',
        new grpc.Metadata(),
        { deadline: Date.now() + 600_000 },
        () => {},
      ) as grpc.ClientUnaryCall;
      await askedAgain;
      cancelled.cancel();
      await end;
      assert.deepEqual(ends.splice(0), [{ code: grpc.status.CANCELLED, errorType: undefined }]);
      admit = () => ({ release: () => {} });
      assert.equal(await hello(client, 'after'), 's:after:-:');
      assert.equal(handled, 1);
    } finally {
      client.close();
      await server.close();
    }
  });

  it('a call the client cancelled while its admission was out runs no handler, whether the limiter then admits it (its slot given back) or fails', async () => {
    let asked: () => void = () => {};
    let decide: (a: Admitted) => void = () => {};
    let fail: (e: Error) => void = () => {};
    let late = false;
    let cancelled: () => void = () => {};
    let handled = 0;
    let released = 0;
    const server = await serve(
      's',
      [
        meshServerInterceptor({
          context: () => createContext(),
          admit: () => {
            if (!late) return { release: () => {} };
            asked();
            return new Promise<Admitted>((res, rej) => {
              decide = res;
              fail = rej;
            });
          },
          tracing: undefined,
          logger: silentLogger,
        }),
        // After the mesh's: hears the cancel once the mesh's listener has.
        (_method, call) =>
          new grpc.ServerInterceptingCall(call, {
            start: (next) => next({ onCancel: () => cancelled() }),
          }),
      ],
      () => {
        handled++;
        return undefined;
      },
    );
    const client = new Client(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
    const cancelWhileAsked = async () => {
      late = true;
      const askedP = new Promise<void>((res) => (asked = res));
      const cancelledP = new Promise<void>((res) => (cancelled = res));
      const call = (client as unknown as Record<string, (...a: unknown[]) => grpc.ClientUnaryCall>).Hello?.(
        'q',
        new grpc.Metadata(),
        {},
        () => {},
      ) as grpc.ClientUnaryCall;
      await askedP;
      call.cancel();
      await cancelledP;
      late = false;
    };
    try {
      await cancelWhileAsked();
      decide({ release: () => released++ });
      await cancelWhileAsked();
      fail(new Error('limiter store gone'));
      // A call after them: had either late admission run its handler, it would have by now.
      assert.equal(await hello(client, 'after'), 's:after:-:');
      assert.deepEqual([handled, released], [1, 1]);
    } finally {
      client.close();
      await server.close();
    }
  });
});

describe('the CLIENT span of an attempt', () => {
  /** A span that records what is done to it. */
  function recorder() {
    const calls: unknown[][] = [];
    const span: GrpcClientSpan = {
      setAttribute: (k, v) => void calls.push(['attr', k, v]),
      setStatus: (s) => void calls.push(['status', s]),
      inject: (h) => {
        h.traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
      },
      end: () => void calls.push(['end']),
    };
    return { calls, span };
  }
  const parent = ROOT_CONTEXT.setValue(Symbol('test'), 'parent');
  const expected = {
    'rpc.system': 'grpc',
    'rpc.service': 'demo.Greeter',
    'rpc.method': 'Hello',
    'service.peer.name': 'greeter',
    'server.address': '127.0.0.1',
    'server.port': 7001,
    'io.meshlet.instance': 'g-1',
    'io.meshlet.route': 'canary',
    'io.meshlet.attempt': 1,
  };
  const ended = [
    ['attr', 'rpc.grpc.status_code', 14],
    ['status', { code: 2, message: 'UNAVAILABLE: down' }],
    ['attr', 'error.type', 'UNAVAILABLE'],
    ['end'],
  ];

  it('is started through the startClientSpan port when the ports give one, with the rpc.* attributes', () => {
    const { calls, span } = recorder();
    const started: unknown[] = [];
    const tracing = { active: () => parent } as unknown as GrpcTracing;
    const ports = {
      ...clientPorts([]),
      tracing,
      startClientSpan: (t: GrpcTracing, options: unknown) => {
        started.push(t, options);
        return span;
      },
    };
    const choice = { instance: instance('g-1', 7001), rule: 'canary', lane: undefined };
    const handle = rpcSpan(ports, undefined, '/demo.Greeter/Hello', 'greeter', choice, 1);
    assert.ok(handle);
    assert.equal(started[0], tracing);
    const options = started[1] as { name: string; attributes: Record<string, unknown>; parent: unknown };
    assert.equal(options.name, 'demo.Greeter/Hello');
    assert.deepEqual(Object.entries(options.attributes), Object.entries(expected));
    assert.equal(options.parent, parent);
    const md = new grpc.Metadata();
    handle.inject(md);
    assert.deepEqual(md.get('traceparent'), ['00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01']);
    handle.end(grpc.status.UNAVAILABLE, 'down');
    handle.end(grpc.status.OK, 'again');
    assert.deepEqual(calls, ended);
  });

  it("is the attempt chain's observer: a span whose propagator throws does not fail the call, and still ends with the call's status", async () => {
    const server = await serve('t');
    const { calls, span } = recorder();
    const ports: GrpcClientPorts = {
      ...clientPorts([instance('t', server.port)]),
      tracing: { active: () => parent } as unknown as GrpcTracing,
      startClientSpan: () => ({
        ...span,
        inject: () => {
          throw new Error('propagator broke');
        },
      }),
    };
    const pool = new ChannelPool();
    const client = new Client('dns:///svc.meshlet.invalid', grpc.credentials.createInsecure(), {
      interceptors: [meshInterceptor(ports, 'svc', { pool })],
    });
    try {
      assert.equal(await hello(client, 'x'), 't:x:-:', 'answered without the trace context');
      assert.deepEqual(calls, [['attr', 'rpc.grpc.status_code', grpc.status.OK], ['end']]);
    } finally {
      client.close();
      pool.close();
      await server.close();
    }
  });

  it("without the port, is started with the tracing's tracer: the same name, kind, attributes and ending", () => {
    const { calls, span } = recorder();
    const started: unknown[] = [];
    const tracing = {
      active: () => parent,
      tracer: {
        startSpan: (name: string, options: unknown, ctx: unknown) => {
          started.push(name, options, ctx);
          return { ...span, setAttribute: span.setAttribute, setStatus: span.setStatus, end: span.end };
        },
      },
      propagation: { inject: () => {} },
    } as unknown as GrpcTracing;
    const ports = { ...clientPorts([]), tracing };
    const choice = { instance: instance('g-1', 7001), rule: 'canary', lane: undefined };
    const handle = rpcSpan(ports, undefined, '/demo.Greeter/Hello', 'greeter', choice, 1);
    assert.ok(handle);
    assert.equal(started[0], 'demo.Greeter/Hello');
    const options = started[1] as { kind: number; attributes: Record<string, unknown> };
    assert.equal(options.kind, 2);
    assert.deepEqual(Object.entries(options.attributes), Object.entries(expected));
    assert.equal(started[2], parent);
    handle.end(grpc.status.UNAVAILABLE, 'down');
    assert.deepEqual(calls, ended);
  });
});
