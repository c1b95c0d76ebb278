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
import { type LoadResult, load } from './harness.js';

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
  | {
      readonly kind: 'mesh.request' | 'mesh.fetch';
      /** The mesh's `tracing` option; with `exporter`, that exporter of the bench's own in its `exporters`. */
      readonly tracing?: MeshOptions['tracing'];
      readonly exporter?: keyof typeof EXPORTERS;
      readonly inboundTraceparent?: string;
    };

interface Request {
  readonly load?: { readonly total: number; readonly concurrency: number };
  readonly close?: true;
}

/** A client running in its own process. */
export interface IsolatedClient {
  load(total: number, concurrency: number): Promise<LoadResult>;
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
    async close() {
      if (child.exitCode !== null) return;
      const exited = once(child, 'exit');
      child.send({ close: true } satisfies Request);
      await exited;
    },
  };
}

/** How `isolatedRounds` runs: rounds in all, sets of fresh processes they are spread over, load per turn. */
export interface RoundsPlan {
  readonly rounds: number;
  readonly generations: number;
  readonly total: number;
  readonly concurrency: number;
  /** Requests each new process takes before its first measured turn (JIT, keep-alive pool). */
  readonly warmup: number;
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
      for (const client of clients) await client.load(plan.warmup, plan.concurrency);
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

async function makeClient(spec: ClientSpec, port: number): Promise<{ call: () => Promise<unknown>; close(): Promise<void> }> {
  if (spec.kind === 'raw-request') {
    const agent = new Agent();
    const url = `http://127.0.0.1:${port}/api/users/42`;
    const options = spec.headers !== undefined ? { dispatcher: agent, headers: spec.headers } : { dispatcher: agent };
    return { call: () => request(url, options).then((r) => r.body.arrayBuffer()), close: () => agent.close() };
  }
  const tracing = spec.exporter !== undefined ? { ...(spec.tracing as object), exporters: [EXPORTERS[spec.exporter]] } : spec.tracing;
  const client: GovernedClient = await governedClient({
    port,
    tracing: false,
    ...(tracing !== undefined ? { tracingOptions: tracing as MeshOptions['tracing'] } : {}),
    ...(spec.inboundTraceparent !== undefined ? { inboundTraceparent: spec.inboundTraceparent } : {}),
  });
  return { call: spec.kind === 'mesh.request' ? client.request : client.call, close: () => client.close() };
}

async function serve(spec: ClientSpec, port: number): Promise<void> {
  const client = await makeClient(spec, port);
  process.on('message', (msg: Request) => {
    if (msg.close) {
      void client.close().finally(() => process.disconnect());
      return;
    }
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
