// The two clients the gRPC benchmarks compare, to one forked grpc-js upstream: a raw
// grpc-js client as a Node team writes it by hand (one generated client, one channel), and
// `mesh.grpc.client` with the client-path benchmarks' rules in force (route rule matching
// the request's tags, service + instance breakers, timeout, retry), called inside a
// request context with two tags and a caller.
import { fork } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as core from '@meshlet/core';
import type { Mesh } from 'meshlet';
import * as sdk from 'meshlet';
import { benchRules, UPSTREAM_SERVICE } from './governed-client.js';
import { benchGrpcService } from './grpc-service.js';
import { stopUpstream } from './harness.js';

export const GrpcBenchClient = grpc.makeGenericClientConstructor(benchGrpcService, 'Upstream');
type Get = (req: Buffer, md: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null) => void) => void;
const request = Buffer.from('42');

/** One unary call on a generated client's method, as application code makes it. */
export function caller(client: grpc.Client, Metadata: typeof grpc.Metadata = grpc.Metadata): () => Promise<void> {
  const get = (client as unknown as { Get: Get }).Get.bind(client);
  return () => new Promise<void>((res, rej) => get(request, new Metadata(), {}, (err) => (err ? rej(err) : res())));
}

/**
 * One unary call on a raw client carrying what the governed client sends (the two tags in
 * `x-meshlet-tags`, the caller in `x-meshlet-caller`), set by hand: what a Node team that
 * passes tags on without a mesh writes, and what those headers cost on HTTP/2 alone.
 * `traceparent`: sent too (what a traced governed caller sends besides).
 */
export function callerWithMeshHeaders(client: grpc.Client, traceparent?: string): () => Promise<void> {
  const get = (client as unknown as { Get: Get }).Get.bind(client);
  return () =>
    new Promise<void>((res, rej) => {
      const md = new grpc.Metadata();
      md.set('x-meshlet-tags', 'user-tier=vip,ua.family=Chrome');
      md.set('x-meshlet-caller', 'service=bench-client,version=0.0.0,namespace=default');
      if (traceparent !== undefined) md.set('traceparent', traceparent);
      get(request, md, {}, (err) => (err ? rej(err) : res()));
    });
}

/**
 * The gRPC upstream in a forked process (without this process's node flags: a profiled
 * client does not profile its upstream): a raw grpc-js server, one with an empty interceptor,
 * or one governed by the mesh's server interceptor with tracing off or at 100% (grpc-upstream.ts).
 */
export async function startGrpcUpstream(
  server: 'raw' | 'interceptor' | 'governed' | 'traced' = 'raw',
): Promise<{ port: number; cpu(): Promise<number>; stop(): Promise<void> }> {
  const child = fork(fileURLToPath(new URL('./grpc-upstream.js', import.meta.url)), [server], { stdio: 'inherit', execArgv: [] });
  const [{ port }] = (await once(child, 'message')) as [{ port: number }];
  return {
    port,
    /** The upstream's CPU time so far, user + system, in µs. */
    async cpu() {
      const answer = once(child, 'message') as Promise<[{ cpu: number }]>;
      child.send('cpu');
      return (await answer)[0].cpu;
    },
    stop: () => stopUpstream(child),
  };
}

export interface GovernedGrpc {
  readonly mesh: Mesh;
  /** One call in its own request context (a context made per call). */
  readonly call: () => Promise<void>;
  /** One call in whatever request context it is made in. */
  readonly bare: () => Promise<void>;
  /**
   * Runs `fn` in the request context (two tags, a caller), as a handler runs: the inbound
   * side makes the context once per request, and the handler's calls are made in it.
   */
  inContext<T>(fn: () => T): T;
  close(): Promise<void>;
}

/** The Meshlet build a governed client is made with: this checkout's, or another's (an A/B baseline). */
export interface MeshletBuild {
  readonly core: Pick<typeof core, 'createContext' | 'InMemoryKvStore' | 'InMemoryRegistry' | 'runWithContext' | 'silentLogger'>;
  readonly sdk: Pick<typeof sdk, 'createMesh'>;
  /** The grpc-js that build resolves (grpc-js checks credentials and Metadata with instanceof). */
  readonly grpc: Pick<typeof grpc, 'makeGenericClientConstructor' | 'Metadata' | 'Client'>;
}

/**
 * The build of another checkout (its packages built with `tsc -b`), e.g. main's, for a
 * before/after comparison in one process: `BENCH_GRPC_BASELINE=/path/to/checkout`.
 */
export async function meshletBuildAt(root: string): Promise<MeshletBuild> {
  const at = (p: string) => join(root, p);
  const grpcJs = createRequire(at('packages/grpc/package.json')).resolve('@grpc/grpc-js');
  return {
    core: (await import(at('packages/core/dist/src/index.js'))) as MeshletBuild['core'],
    sdk: (await import(at('packages/sdk/dist/src/index.js'))) as MeshletBuild['sdk'],
    grpc: ((await import(grpcJs)) as { default: MeshletBuild['grpc'] }).default,
  };
}

/** `mesh.grpc.client` to two registered instances (v1, v2) of the upstream, the bench rules in force. */
export async function governedGrpc(port: number, tracing: boolean, build: MeshletBuild = { core, sdk, grpc }): Promise<GovernedGrpc> {
  const { createContext, InMemoryKvStore, InMemoryRegistry, runWithContext, silentLogger } = build.core;
  const { createMesh } = build.sdk;
  const registry = new InMemoryRegistry();
  for (const version of ['v1', 'v2'])
    await registry.register({
      id: `up-${version}`,
      service: UPSTREAM_SERVICE,
      address: '127.0.0.1',
      port,
      tags: [],
      metadata: { version },
      health: 'passing',
    });
  const kv = new InMemoryKvStore();
  await kv.put(`meshlet/rules/${UPSTREAM_SERVICE}`, JSON.stringify(benchRules));
  const dir = tracing ? await mkdtemp(join(tmpdir(), 'meshlet-bench-grpc-')) : undefined;
  const mesh = createMesh({
    service: 'bench-client',
    registry,
    rules: kv,
    logger: silentLogger,
    ...(dir ? { tracing: { sampleRatio: 1, log: { path: join(dir, 'spans.jsonl') } } } : {}),
  });
  const ctor = build.grpc === grpc ? GrpcBenchClient : build.grpc.makeGenericClientConstructor(benchGrpcService, 'Upstream');
  const client = mesh.grpc.client(ctor, UPSTREAM_SERVICE);
  const ctx = createContext({
    tags: [
      ['user-tier', 'vip'],
      ['ua.family', 'Chrome'],
    ],
    caller: { service: 'edge' },
  });
  const raw = caller(client, build.grpc.Metadata);
  const call = () => runWithContext(ctx, raw);
  await call(); // follows the service and loads its rules before any timing
  return {
    mesh,
    call,
    bare: raw,
    inContext: (fn) => runWithContext(ctx, fn),
    async close() {
      client.close();
      await mesh.close();
      if (dir) await rm(dir, { recursive: true, force: true });
    },
  };
}
