// One client of a client-path benchmark in a process of its own (`isolatedClient`): the
// parent sends `{ load: { total, concurrency } }` and gets the run's LoadResult back,
// measured here (this process's CPU only). A process per client keeps each client's code
// as a service running one mesh would have it: its JIT feedback, its heap and its
// keep-alive pool are its own, not shared with the other clients of the bench (in one
// process the governed clients' code is compiled for every configuration at once, and a
// client's figures move by several percent with what else ran beside it).
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { TraceLineBuilder, TraceProtoBuilder } from '@meshlet/trace';
import type { ExportResult } from '@opentelemetry/core';
import type { MeshOptions } from 'meshlet';
import { Agent, request } from 'undici';
import { type GovernedClient, governedClient } from './governed-client.js';
import { type LoadResult, load, median, sized } from './harness.js';
import { cockatielFetch, opossumFetch } from './peers.js';

const OK: ExportResult = { code: 0 };
/** Takes every span and drops it: the span record and its context are made, nothing is encoded. */
const discardSpans = { export: (_s: unknown, done: (r: ExportResult) => void) => done(OK), shutdown: async () => {} };
/** Encodes every span into a trace-log line as the trace log does, then drops the line: the encoding without the write. */
const discardLines = {
  ...discardSpans,
  lineBuilder: () => new TraceLineBuilder(64 * 1024),
  exportLine: (_line: Buffer, done: (r: ExportResult) => void) => done(OK),
};
/** The same, encoded as the protobuf trace log's batches (`log.format: 'proto'`). */
const discardProto = { ...discardLines, lineBuilder: () => new TraceProtoBuilder(16 * 1024) };
const EXPORTERS = { 'discard-spans': discardSpans, 'discard-lines': discardLines, 'discard-proto': discardProto };

/** What one client process runs (plain data: it crosses the IPC channel). */
export type ClientSpec =
  | { readonly kind: 'raw-request'; readonly headers?: Readonly<Record<string, string>> }
  | { readonly kind: 'raw-fetch' }
  | { readonly kind: 'cockatiel' }
  | { readonly kind: 'opossum' }
  | {
      readonly kind: 'mesh.request' | 'mesh.fetch';
      /** Tracing as governed-client.ts sets it: 100% into a temp trace log, or unsampled. */
      readonly traced?: boolean | 'unsampled';
      /** The mesh's `tracing` option; with `exporter`, that exporter of the bench's own in its `exporters`. */
      readonly tracing?: MeshOptions['tracing'];
      readonly exporter?: keyof typeof EXPORTERS;
      readonly inboundTraceparent?: string;
      /** Governed attempts through global fetch (the mesh's `fetch` option): `mesh.fetch` before issue 19. */
      readonly overGlobalFetch?: boolean;
    };

/** What a traced client wrote: spans and the trace log's bytes. */
export type TraceStats = Awaited<ReturnType<GovernedClient['traceStats']>>;

interface Request {
  readonly load?: { readonly total: number; readonly concurrency: number };
  readonly stats?: true;
  readonly close?: true;
}

/** A client running in its own process. */
export interface IsolatedClient {
  load(total: number, concurrency: number): Promise<LoadResult>;
  /** A governed client's trace stats (zero for the others). */
  traceStats(): Promise<TraceStats>;
  close(): Promise<void>;
}

/** Starts `spec` against the upstream on `port` in a forked process, ready to take load. */
export async function isolatedClient(spec: ClientSpec, port: number): Promise<IsolatedClient> {
  const { fork } = await import('node:child_process');
  const child = fork(fileURLToPath(import.meta.url), [JSON.stringify(spec), String(port)], { stdio: 'inherit' });
  child.setMaxListeners(0);
  const answer = async <T>(): Promise<T> => {
    const [msg] = (await Promise.race([once(child, 'message'), once(child, 'exit').then(() => [{ error: 'exited' }])])) as [
      { error?: string; result?: T },
    ];
    if (msg.error !== undefined) throw new Error(`bench client ${JSON.stringify(spec)}: ${msg.error}`);
    return msg.result as T;
  };
  await answer<void>();
  return {
    load(total, concurrency) {
      child.send({ load: { total, concurrency } } satisfies Request);
      return answer<LoadResult>();
    },
    traceStats() {
      child.send({ stats: true } satisfies Request);
      return answer<TraceStats>();
    },
    async close() {
      if (child.exitCode !== null) return;
      const exited = once(child, 'exit');
      child.send({ close: true } satisfies Request);
      await exited;
    },
  };
}

/**
 * Requests a new client process takes before its first measured turn, at concurrency 50
 * at least. Measured (governed `mesh.request` and raw undici, c=50, turns of 4,000): a fresh
 * process runs its first four turns at a quarter to three quarters of its steady rate
 * (11k, 23k, 17k, 27k req/s, then 35–44k), the mesh longer than raw undici, which has
 * less code to compile. A warm-up of 1,500 left those turns in the figures: in the mesh's
 * disfavour, and as noise. 24,000 is past them.
 */
export const WARMUP_REQUESTS = sized('BENCH_WARMUP', 24_000, 1_000);
const WARMUP_CONCURRENCY = 50;

/** How `isolatedRounds` runs: rounds in all, sets of fresh processes they are spread over, load per turn. */
export interface RoundsPlan {
  readonly rounds: number;
  readonly generations: number;
  readonly total: number;
  readonly concurrency: number;
}

/**
 * Runs every spec's client in turn, `plan.rounds` times (who goes first rotates), and
 * returns each client's runs in round order. The rounds are spread over
 * `plan.generations` sets of processes, each set started fresh: one process's speed is
 * its own (its JIT's choices, its heap's layout: a few percent either way, and a tenth
 * now and then), so a figure over several processes is not one process's luck.
 */
export async function isolatedRounds(specs: readonly ClientSpec[], port: number, plan: RoundsPlan): Promise<LoadResult[][]> {
  const runs: LoadResult[][] = specs.map(() => []);
  let round = 0;
  for (let g = 0; g < plan.generations; g++) {
    const until = Math.round(((g + 1) * plan.rounds) / plan.generations);
    const clients: IsolatedClient[] = [];
    try {
      for (const spec of specs) clients.push(await isolatedClient(spec, port));
      for (const client of clients) await client.load(WARMUP_REQUESTS, Math.max(plan.concurrency, WARMUP_CONCURRENCY));
      for (; round < until; round++)
        for (let k = 0; k < clients.length; k++) {
          const i = (k + round) % clients.length;
          runs[i]?.push(await (clients[i] as IsolatedClient).load(plan.total, plan.concurrency));
        }
    } finally {
      for (const client of clients) await client.close();
    }
  }
  return runs;
}

/**
 * The median of `values` (one per round, in round order, as isolatedRounds gives them) within
 * each generation of processes: a process's luck is shared by its rounds, so the spread of
 * these medians, not of the rounds, tells how far one set of processes can move a figure.
 * With 5 generations, their min–max holds the median generation's figure with 94% confidence
 * (all five fall on one side of it with probability 2/32).
 */
export function generationMedians(values: readonly number[], plan: Pick<RoundsPlan, 'rounds' | 'generations'>): number[] {
  const medians: number[] = [];
  let from = 0;
  for (let g = 0; g < plan.generations; g++) {
    const until = Math.round(((g + 1) * plan.rounds) / plan.generations);
    if (until > from) medians.push(median(values.slice(from, until)));
    from = until;
  }
  return medians;
}

interface Client {
  readonly call: () => Promise<unknown>;
  traceStats(): Promise<TraceStats>;
  close(): Promise<void>;
}

const NO_TRACE: TraceStats = { exported: 0, dropped: 0, bytes: 0 };

async function makeClient(spec: ClientSpec, port: number): Promise<Client> {
  const path = '/api/users/42';
  const url = `http://127.0.0.1:${port}${path}`;
  const none = async () => NO_TRACE;
  if (spec.kind === 'raw-request') {
    const agent = new Agent();
    const options = spec.headers !== undefined ? { dispatcher: agent, headers: spec.headers } : { dispatcher: agent };
    return { call: () => request(url, options).then((r) => r.body.arrayBuffer()), traceStats: none, close: () => agent.close() };
  }
  if (spec.kind === 'raw-fetch')
    return { call: () => globalThis.fetch(url).then((r) => r.arrayBuffer()), traceStats: none, close: async () => {} };
  if (spec.kind === 'cockatiel' || spec.kind === 'opossum') {
    // The peers' round robin over the governed client's two instances (the same upstream).
    const instances = [`http://127.0.0.1:${port}`, `http://127.0.0.1:${port}`];
    const peer = spec.kind === 'cockatiel' ? cockatielFetch(instances, path) : opossumFetch(instances, path);
    return { call: peer.call, traceStats: none, close: async () => peer.close() };
  }
  const tracing = spec.exporter !== undefined ? { ...(spec.tracing as object), exporters: [EXPORTERS[spec.exporter]] } : spec.tracing;
  const client: GovernedClient = await governedClient({
    port,
    tracing: spec.traced ?? false,
    ...(spec.overGlobalFetch === true ? { fetch: globalThis.fetch } : {}),
    ...(tracing !== undefined ? { tracingOptions: tracing as MeshOptions['tracing'] } : {}),
    ...(spec.inboundTraceparent !== undefined ? { inboundTraceparent: spec.inboundTraceparent } : {}),
  });
  return {
    call: spec.kind === 'mesh.request' ? client.request : client.call,
    traceStats: () => client.traceStats(),
    close: () => client.close(),
  };
}

async function serve(spec: ClientSpec, port: number): Promise<void> {
  const client = await makeClient(spec, port);
  process.on('message', (msg: Request) => {
    if (msg.close) {
      void client.close().finally(() => process.disconnect());
      return;
    }
    if (msg.stats)
      client.traceStats().then(
        (result) => process.send?.({ result }),
        (err: unknown) => process.send?.({ error: String(err) }),
      );
    if (msg.load)
      load(client.call, msg.load.total, msg.load.concurrency).then(
        (result) => process.send?.({ result }),
        (err: unknown) => process.send?.({ error: String(err) }),
      );
  });
  process.on('disconnect', () => process.exit(0));
  process.send?.({ result: null });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [specText, portText] = process.argv.slice(2);
  serve(JSON.parse(specText as string) as ClientSpec, Number(portText)).catch((err: unknown) => {
    process.send?.({ error: String(err) });
    process.exit(1);
  });
}
