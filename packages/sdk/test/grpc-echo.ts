// The Echo service of the gRPC tests (fixtures/echo.proto) on real grpc-js servers on 127.0.0.1.
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { type Clock, getTag, type Instance, silentLogger } from '@meshlet/core';
import type { GrpcClientPorts } from '@meshlet/grpc';

const here = dirname(fileURLToPath(import.meta.url));
/** The proto, from test/ (sources) or dist/test/ (compiled). */
export const ECHO_PROTO = [resolve(here, 'fixtures/echo.proto'), resolve(here, '../../test/fixtures/echo.proto')].find((p) =>
  existsSync(p),
) as string;

export interface Text {
  text: string;
}

export interface EchoClient extends grpc.Client {
  Say(req: Text, md: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: Text) => void): grpc.ClientUnaryCall;
  Relay(
    req: Text,
    md: grpc.Metadata,
    opts: grpc.CallOptions,
    cb: (err: grpc.ServiceError | null, res?: Text) => void,
  ): grpc.ClientUnaryCall;
  Count(req: Text, md?: grpc.Metadata, opts?: grpc.CallOptions): grpc.ClientReadableStream<Text>;
  Collect(
    md: grpc.Metadata,
    opts: grpc.CallOptions,
    cb: (err: grpc.ServiceError | null, res?: Text) => void,
  ): grpc.ClientWritableStream<Text>;
  Chat(md?: grpc.Metadata, opts?: grpc.CallOptions): grpc.ClientDuplexStream<Text, Text>;
}

const definition = protoLoader.loadSync(ECHO_PROTO, { keepCase: true, defaults: true });
const loaded = grpc.loadPackageDefinition(definition) as unknown as {
  meshlet: { interop: { Echo: grpc.ServiceClientConstructor } };
};
export const Echo = loaded.meshlet.interop.Echo as unknown as {
  new (address: string, credentials: grpc.ChannelCredentials, options?: grpc.ClientOptions): EchoClient;
  readonly service: grpc.ServiceDefinition;
};

/** What a handler answers: its instance id, the tags it saw, and the trace header that arrived. */
export function describeCall(id: string, call: { metadata: grpc.Metadata }, text: string): string {
  return `${id}|in=${text}|tier=${getTag('tier') ?? ''}|traceparent=${String(call.metadata.get('traceparent')[0] ?? '')}`;
}

export interface EchoBehaviour {
  /** Answer Say with this status instead of a message. */
  fail?: { code: grpc.status; details?: string } | undefined;
  /** Hold Say until released. */
  hold?: Promise<void> | undefined;
}

export interface EchoServer {
  readonly id: string;
  readonly port: number;
  readonly server: grpc.Server;
  /** `cancelled`: Say calls the server saw cancelled by the client (RST_STREAM). */
  readonly state: EchoBehaviour & { hits: number; cancelled: number };
  close(): Promise<void>;
}

/** Starts an Echo server on 127.0.0.1 with the given server interceptors. */
export async function startEcho(
  id: string,
  interceptors: grpc.ServerInterceptor[] = [],
  relay?: (target: string, call: grpc.ServerUnaryCall<Text, Text>) => Promise<string>,
): Promise<EchoServer> {
  const state: EchoBehaviour & { hits: number; cancelled: number } = { hits: 0, cancelled: 0 };
  const server = new grpc.Server({ interceptors });
  server.addService(Echo.service, {
    Say(call: grpc.ServerUnaryCall<Text, Text>, cb: grpc.sendUnaryData<Text>) {
      state.hits++;
      call.on('cancelled', () => state.cancelled++);
      const answer = () => {
        if (state.fail) return cb({ code: state.fail.code, details: state.fail.details ?? 'failing' });
        cb(null, { text: describeCall(id, call, call.request.text) });
      };
      if (state.hold) void state.hold.then(answer);
      else answer();
    },
    Relay(call: grpc.ServerUnaryCall<Text, Text>, cb: grpc.sendUnaryData<Text>) {
      state.hits++;
      if (!relay) return cb({ code: grpc.status.UNIMPLEMENTED, details: 'no relay here' });
      relay(call.request.text, call).then(
        (text) => cb(null, { text: `${id} relayed\n${text}` }),
        (err: grpc.ServiceError) => cb({ code: err.code ?? grpc.status.INTERNAL, details: err.details ?? err.message }),
      );
    },
    Count(call: grpc.ServerWritableStream<Text, Text>) {
      state.hits++;
      const n = Number(call.request.text);
      for (let i = 1; i <= n; i++) call.write({ text: `${id}:${i}:tier=${getTag('tier') ?? ''}` });
      call.end();
    },
    Collect(call: grpc.ServerReadableStream<Text, Text>, cb: grpc.sendUnaryData<Text>) {
      state.hits++;
      const got: string[] = [];
      call.on('data', (m: Text) => got.push(m.text));
      call.on('end', () => cb(null, { text: `${id}:${got.join(',')}:tier=${getTag('tier') ?? ''}` }));
    },
    Chat(call: grpc.ServerDuplexStream<Text, Text>) {
      state.hits++;
      call.on('data', (m: Text) => call.write({ text: `${id}:${m.text}` }));
      call.on('end', () => call.end());
    },
  });
  const port = await new Promise<number>((res, rej) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? rej(err) : res(p))),
  );
  return {
    id,
    port,
    server,
    state,
    close: () =>
      new Promise<void>((res) => {
        server.tryShutdown(() => res());
      }),
  };
}

/** A unary call as a promise: resolves with the reply, rejects with the ServiceError. */
export function say(
  client: EchoClient,
  text: string,
  options: grpc.CallOptions = {},
  metadata = new grpc.Metadata(),
  method: 'Say' | 'Relay' = 'Say',
): Promise<string> {
  return new Promise((res, rej) => {
    client[method]({ text }, metadata, options, (err, reply) => (err ? rej(err) : res(reply?.text ?? '')));
  });
}

/** The status of a call that must fail. */
export async function failure(p: Promise<unknown>): Promise<grpc.ServiceError> {
  try {
    await p;
  } catch (err) {
    return err as grpc.ServiceError;
  }
  throw new Error('the call succeeded; it should have failed');
}

/**
 * gRPC client ports whose routing has not heard of the instance breakers: it offers `first`,
 * then, to a retry or a refused pick, what of `first` and `second` is left untried. With the
 * executor's breakers, a pick they refuse is what the client itself must pass over.
 */
export function portsRoutingUnaware(
  [first, second]: readonly [Instance, Instance],
  executor: GrpcClientPorts['executor'],
  tracing: GrpcClientPorts['tracing'],
  clock: Clock,
  more: Partial<GrpcClientPorts> = {},
): GrpcClientPorts {
  const choice = (instance: Instance) => ({ instance, rule: undefined, lane: undefined });
  return {
    directory: { use: () => true, ensure: async () => {} },
    router: {
      decide: () => choice(first),
      picker: () => ({
        first: () => choice(first),
        next: (_tags, tried) => [first, second].filter((i) => !tried.has(i.id)).map(choice)[0],
      }),
    },
    executor,
    tracing,
    outboundHeaders: () => ({}),
    clock,
    logger: silentLogger,
    ...more,
  };
}
