// What the mesh writes into a governed call's outbound gRPC metadata: only what grpc-js takes
// (Metadata.set throws outside printable ASCII), the rest left out and logged with
// MESHLET_HEADER_DROPPED; and a stream whose opening throws fails with a coded status
// instead of the throw escaping grpc-js's connectivity callback. Fake ports, real grpc-js
// servers on 127.0.0.1.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import {
  createContext,
  type Instance,
  ManualClock,
  MemoryLogger,
  grpcMetadataProblem as metadataProblem,
  runWithContext,
  throttledLogger,
} from '@meshlet/core';
import {
  ChannelPool,
  GRPC_PORT_META,
  type GrpcClientPorts,
  type GrpcStreamAttempt,
  HEADER_DROPPED,
  meshInterceptor,
  StreamOpenError,
} from '../src/index.js';

const TRACEPARENT = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';

describe('the values gRPC metadata takes', () => {
  it("follows grpc-js's rules: printable ASCII values, lower-case token keys, no string under a -bin key", () => {
    assert.equal(metadataProblem('x-user', 'a b~!'), undefined);
    assert.equal(metadataProblem('X-User', 'ok'), undefined, 'keys are lower-cased first, as grpc-js does');
    assert.match(metadataProblem('x-user', 'a\tb') ?? '', /printable ASCII/);
    assert.match(metadataProblem('x-user', 'Jos\u00e9') ?? '', /printable ASCII/);
    assert.match(metadataProblem('x-user', 'a\u007fb') ?? '', /printable ASCII/);
    assert.match(metadataProblem('x user', 'ok') ?? '', /name/);
    assert.match(metadataProblem('x-trace-bin', 'ok') ?? '', /-bin/);
    // Whatever the check passes, grpc-js takes; whatever it refuses, grpc-js throws on.
    for (const [k, v] of [
      ['x-user', 'a b~!'],
      ['x-user', 'a\tb'],
      ['x-user', 'Jos\u00e9'],
      ['x user', 'ok'],
      ['x-trace-bin', 'ok'],
    ] as const) {
      const md = new grpc.Metadata();
      let threw = false;
      try {
        md.set(k, v);
      } catch {
        threw = true;
      }
      assert.equal(threw, metadataProblem(k, v) !== undefined, `${k}: ${JSON.stringify(v)}`);
    }
  });
});

// A bidi stream with hand-written serializers: no proto needed.
const utf8 = {
  requestSerialize: (s: string) => Buffer.from(s),
  requestDeserialize: (b: Buffer) => b.toString(),
  responseSerialize: (s: string) => Buffer.from(s),
  responseDeserialize: (b: Buffer) => b.toString(),
};
const service: grpc.ServiceDefinition = {
  Hello: { path: '/t.T/Hello', requestStream: false, responseStream: false, ...utf8 },
  Chat: { path: '/t.T/Chat', requestStream: true, responseStream: true, ...utf8 },
};
const Client = grpc.makeGenericClientConstructor(service, 'T');
type TClient = grpc.Client & {
  Hello(req: string, md: grpc.Metadata, cb: (e: grpc.ServiceError | null, r?: string) => void): void;
  Chat(): grpc.ClientDuplexStream<string, string>;
};

/** A server whose calls answer with their metadata as `key=value;` (grpc-js's own keys left out). */
async function serve() {
  const server = new grpc.Server();
  const shown = (md: grpc.Metadata) =>
    Object.entries(md.getMap())
      .filter(([k]) => k.startsWith('x-') || k.startsWith('trace'))
      .map(([k, v]) => `${k}=${String(v)};`)
      .join('');
  server.addService(service, {
    Hello(call: grpc.ServerUnaryCall<string, string>, cb: grpc.sendUnaryData<string>) {
      cb(null, shown(call.metadata));
    },
    Chat(call: grpc.ServerDuplexStream<string, string>) {
      call.on('data', (m: string) => call.write(`${m}:${shown(call.metadata)}`));
      call.on('end', () => call.end());
    },
  });
  const port = await new Promise<number>((res, rej) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))),
  );
  return { port, close: () => new Promise<void>((r) => server.tryShutdown(() => r())) };
}

const instanceOn = (port: number): Instance => ({
  id: 'a',
  service: 'svc',
  address: '127.0.0.1',
  port: 1,
  tags: [],
  metadata: { [GRPC_PORT_META]: String(port) },
  health: 'passing',
});

/** Client ports to one instance, its mesh headers from `outbound`; a permit per try that records how it settled. */
function ports(instance: Instance, outbound: () => Record<string, string>, logger: MemoryLogger) {
  const settled: string[] = [];
  const permit = (): GrpcStreamAttempt => ({
    answered: () => {
      settled.push('answered');
      return false;
    },
    responded: () => {},
    failed: () => void settled.push('failed'),
    released: () => void settled.push('released'),
  });
  const choice = { instance, rule: undefined, lane: undefined };
  const clock = new ManualClock();
  const p: GrpcClientPorts = {
    directory: { use: () => true, ensure: async () => {} },
    router: { decide: () => choice, picker: () => ({ first: () => choice, next: () => undefined }) },
    executor: { call: async (call) => call.send(call.pick(new Set()) as never, undefined) },
    tracing: undefined,
    outboundHeaders: outbound,
    trackStream: () => ({ outcome: permit(), attempt: permit, retry: () => false }),
    clock,
    // The mesh's logger: per-request codes once per interval, every one counted.
    logger: throttledLogger(logger, { clock }),
  };
  return { ports: p, settled, counts: (p.logger as ReturnType<typeof throttledLogger>).counts };
}

/** One message on a new stream, in `ctx`: the answer, or the error's code and details. */
function chat(client: TClient, ctx = createContext()): Promise<string> {
  return runWithContext(ctx, () => {
    const stream = client.Chat();
    return new Promise<string>((resolve) => {
      stream.on('data', (m: string) => {
        resolve(m);
        stream.end();
      });
      stream.on('error', (e: grpc.ServiceError) => resolve(`error ${e.code}: ${e.details}`));
      stream.write('hi');
    });
  });
}

describe('outbound metadata of governed calls', () => {
  it('leaves out a mesh header gRPC refuses (a Latin-1 pass-through value), counts and logs it once per interval, and sends the stream', async () => {
    const server = await serve();
    const logger = new MemoryLogger();
    // One headers object, as the SDK hands back while a request's tags stay the same.
    const headers = Object.freeze({ 'x-user-name': 'Jos\u00e9', 'x-user-id': '42' });
    const { ports: p, counts } = ports(instanceOn(server.port), () => headers, logger);
    const pool = new ChannelPool();
    const client = new Client('dns:///svc.meshlet.invalid', grpc.credentials.createInsecure(), {
      interceptors: [meshInterceptor(p, 'svc', { pool })],
    }) as unknown as TClient;
    try {
      // The first stream opens from grpc-js's connectivity callback (the channel was IDLE).
      assert.equal(await chat(client), 'hi:x-user-id=42;');
      assert.equal(await chat(client), 'hi:x-user-id=42;');
      assert.equal(counts.get(HEADER_DROPPED), 1, 'checked and counted once per mesh headers object');
      const lines = logger.entries.filter((e) => e.fields?.code === HEADER_DROPPED);
      assert.equal(lines.length, 1);
      assert.equal(lines[0]?.fields?.header, 'x-user-name');
      assert.ok(!JSON.stringify(lines[0]?.fields).includes('Jos'), 'the value is not logged');
    } finally {
      client.close();
      pool.close();
      await server.close();
    }
  });

  it('with tracing off, passes a traceparent with a TAB on to neither a stream nor a unary call, and a valid one to both', async () => {
    const server = await serve();
    const logger = new MemoryLogger();
    const { ports: p, counts } = ports(instanceOn(server.port), () => ({}), logger);
    const pool = new ChannelPool();
    const client = new Client('dns:///svc.meshlet.invalid', grpc.credentials.createInsecure(), {
      interceptors: [meshInterceptor(p, 'svc', { pool })],
    }) as unknown as TClient;
    const hello = (ctx: ReturnType<typeof createContext>) =>
      runWithContext(
        ctx,
        () =>
          new Promise<string>((resolve) =>
            client.Hello('x', new grpc.Metadata(), (e, r) => resolve(e ? `error ${e.code}: ${e.details}` : (r ?? ''))),
          ),
      );
    // A context keeps only valid W3C trace context (core's keptTraceContext), told to its logger.
    const contextLog = new MemoryLogger();
    const bad = createContext({ trace: { traceparent: `${TRACEPARENT}\tx`, tracestate: 'a=b' }, logger: contextLog });
    assert.equal(bad.trace, undefined);
    assert.equal(contextLog.entries[0]?.fields?.code, HEADER_DROPPED);
    const good = createContext({ trace: { traceparent: TRACEPARENT, tracestate: 'a=b' } });
    try {
      assert.equal(await chat(client, bad), 'hi:');
      assert.equal(await hello(bad), '');
      assert.equal(await hello(good), `traceparent=${TRACEPARENT};tracestate=a=b;`);
      assert.equal(await chat(client, good), `hi:traceparent=${TRACEPARENT};tracestate=a=b;`);
      assert.equal(counts.get(HEADER_DROPPED), undefined, 'nothing left out at the call: the context held none');
    } finally {
      client.close();
      pool.close();
      await server.close();
    }
  });

  it('a stream whose opening throws in the connectivity callback ends INTERNAL with a code, the process going on, its instance not blamed', async () => {
    const server = await serve();
    const logger = new MemoryLogger();
    let calls = 0;
    const { ports: p, settled } = ports(
      instanceOn(server.port),
      () => {
        // The stream's routing reads nothing here; the first read is the stream's opening.
        calls++;
        throw new Error('mesh headers failed');
      },
      logger,
    );
    const pool = new ChannelPool();
    const client = new Client('dns:///svc.meshlet.invalid', grpc.credentials.createInsecure(), {
      interceptors: [meshInterceptor(p, 'svc', { pool })],
    }) as unknown as TClient;
    let uncaught: unknown;
    const onUncaught = (err: unknown) => {
      uncaught = err;
    };
    process.on('uncaughtException', onUncaught);
    try {
      const answer = await chat(client);
      assert.equal(uncaught, undefined);
      assert.equal(calls, 1);
      assert.match(answer, new RegExp(`^error ${grpc.status.INTERNAL}: meshlet: the stream could not be opened: mesh headers failed$`));
      assert.equal(StreamOpenError.code, 'MESHLET_GRPC_STREAM_OPEN_FAILED');
      assert.deepEqual(settled, ['released', 'released'], 'neither the instance breaker nor the service breaker counts it');
    } finally {
      process.off('uncaughtException', onUncaught);
      client.close();
      pool.close();
      await server.close();
    }
  });
});
