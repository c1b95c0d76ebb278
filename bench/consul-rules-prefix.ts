// The rule watches of N services on a real Consul agent, read three ways:
//   keys       one blocking query of meshlet/rules/'s key list for all of them, then a
//              check-index transaction of the watched keys and a read of the changed ones
//              (ConsulKvStore's default, `sharedQuery: 'keys'`)
//   recurse    one blocking query of meshlet/rules/ bringing every document (`sharedQuery: 'recurse'`)
//   per watch  one blocking query per service (`sharedPrefixes: []`)
// For each: the connections the process holds to the agent once every watcher has its
// document (from /proc, Linux; the agent refuses past http_max_conns_per_client, 200 by
// default), the bytes the store received for one change (every answer's body, counted
// through the client's fetch, from the PUT to the watcher having it; the dev agent indents
// its JSON), and the ms from the PUT of one service's document to its
// watcher having it in force (RuleWatcher.until, the mesh's own kinds parse it), median of
// CHANGES changes 100 ms apart (the query loop's rate limit is 10 a second).
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { RULES_PREFIX, RuleWatcher, silentLogger } from '@meshlet/core';
import { ConsulKvStore } from '@meshlet/registry';
import { startConsulAgent } from '@meshlet/registry/testing';
import { ruleKinds } from 'meshlet';
import { fmt, machine, median, sized, table } from './harness.js';

const CHANGES = sized('BENCH_RULES_CHANGES', 20, 5);
const SIZES = (process.env.BENCH_RULES_SIZES ?? '10,100,150,500').split(',').map(Number);
/** Past this many watches the per-watch way is not run: the agent refuses it (HTTP 429) from about 200. */
const PER_WATCH_MAX = 150;

function consulBinary(): string {
  const given = process.env.MESHLET_CONSUL_BIN;
  if (given) return given;
  const script = fileURLToPath(new URL('../../scripts/install-consul.sh', import.meta.url));
  const bin =
    execFileSync(script, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] })
      .trim()
      .split('\n')
      .pop() ?? '';
  process.env.MESHLET_CONSUL_BIN = bin;
  return bin;
}

/** A typical rule document, about 1.1 KB: a gray release by header, path and user-agent, a default split, breakers and a retry. */
const ruleDocument = (service: string, n: number) =>
  JSON.stringify({
    service,
    description: `gray release of ${service}: 20% of Chrome requests to v1.21, beta users to v1.22 (change ${n})`,
    route: {
      rules: [
        {
          name: 'beta-users',
          when: [{ tag: 'user.group', op: 'equals', value: 'beta' }],
          destinations: [{ group: { version: '1.22.0' }, weight: 100 }],
        },
        {
          name: 'canary-by-header',
          when: [
            { tag: 'header.x-canary', op: 'equals', value: 'true' },
            { tag: 'request.path', op: 'regex', pattern: '^/api/v2/' },
          ],
          destinations: [{ group: { version: '1.22.0', lane: 'canary' }, weight: 100 }],
        },
        {
          name: 'chrome-to-v1.21',
          when: [{ tag: 'ua.family', op: 'equals', value: 'Chrome' }],
          destinations: [
            { group: { version: '1.21.0' }, weight: 20 },
            { group: { version: '1.20.0' }, weight: 80 },
          ],
        },
      ],
      default: [
        { group: { version: '1.20.0', zone: 'zone-a' }, weight: 50 },
        { group: { version: '1.20.0', zone: 'zone-b' }, weight: 50 },
      ],
    },
    breaker: {
      rules: [
        { level: 'instance', consecutiveFailures: 5, sleepWindowMs: 30_000, probes: 1, maxEjectionPercent: 50 },
        { level: 'service', consecutiveFailures: 50, sleepWindowMs: 10_000, probes: 3 },
      ],
      retry: { maxRetries: 2, backoff: { baseMs: 25, maxMs: 250 } },
    },
  });

/** TCP connections established from this process to `port`, from /proc. */
function connectionsTo(port: number): number {
  const inodes = new Set<string>();
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`));
      if (m) inodes.add(m[1] as string);
    } catch {
      // closed while listed
    }
  }
  let n = 0;
  for (const t of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of readFileSync(t, 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f[3] === '01' && Number.parseInt((f[2] as string).split(':')[1] as string, 16) === port && inodes.has(f[9] as string)) n++;
    }
  }
  return n;
}

type Way = 'keys' | 'recurse' | 'per watch';
const WAYS: readonly Way[] = ['per watch', 'recurse', 'keys'];

/** A fetch that adds the bytes of every answer's body to `counter.bytes`. */
function countingFetch(counter: { bytes: number }): typeof fetch {
  return async (input, init) => {
    const res = await fetch(input, init);
    if (!res.body) return res;
    const counted = res.body.pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, controller) {
          counter.bytes += chunk.byteLength;
          controller.enqueue(chunk);
        },
      }),
    );
    return new Response(counted, { status: res.status, statusText: res.statusText, headers: res.headers });
  };
}

interface Run {
  readonly way: string;
  readonly n: number;
  readonly connections: number;
  readonly queries: number;
  readonly bytes: number;
  readonly applyMs: number;
  readonly refused: number;
}

async function run(n: number, way: Way): Promise<Run> {
  const agent = await startConsulAgent();
  try {
    const service = (i: number) => `svc-${String(i).padStart(4, '0')}`;
    const writer = new ConsulKvStore({ address: agent.address, logger: silentLogger });
    // One at a time: the writer keeps one connection, so the count below is the watches'.
    for (let i = 0; i < n; i++) await writer.put(`${RULES_PREFIX}${service(i)}`, ruleDocument(service(i), 0));
    const received = { bytes: 0 };
    const store = new ConsulKvStore({
      address: agent.address,
      logger: silentLogger,
      fetch: countingFetch(received),
      ...(way === 'per watch' ? { sharedPrefixes: [] } : { sharedQuery: way }),
    });
    let refused = 0;
    const request = store.client.request.bind(store.client);
    store.client.request = ((method, target, options) =>
      request(method, target, options).catch((err: { status?: number }) => {
        if (err.status === 429) refused++;
        throw err;
      })) as typeof store.client.request;
    const watchers = Array.from({ length: n }, (_, i) =>
      new RuleWatcher({ kv: store, service: service(i), kinds: ruleKinds, logger: silentLogger }).start(),
    );
    try {
      await Promise.race([Promise.all(watchers.map((w) => w.ready)), new Promise((r) => setTimeout(r, 10_000))]);
      const connections = connectionsTo(agent.httpPort);
      const times: number[] = [];
      const bytes: number[] = [];
      for (let c = 1; c <= CHANGES && refused === 0; c++) {
        const target = service((c * 7) % n);
        received.bytes = 0;
        const t0 = performance.now();
        await writer.put(`${RULES_PREFIX}${target}`, ruleDocument(target, c));
        const revision = (await writer.get(`${RULES_PREFIX}${target}`))?.revision ?? 0;
        await watchers[(c * 7) % n]?.until(revision);
        times.push(performance.now() - t0);
        bytes.push(received.bytes);
        await new Promise((r) => setTimeout(r, 100));
      }
      return {
        way,
        n,
        connections,
        queries: [...store.queries.keys()].length,
        bytes: bytes.length ? median(bytes) : Number.NaN,
        applyMs: times.length ? median(times) : Number.NaN,
        refused,
      };
    } finally {
      for (const w of watchers) w.close();
    }
  } finally {
    await agent.stop();
  }
}

export async function consulRulesPrefix(): Promise<string> {
  consulBinary();
  const rows: (string | number)[][] = [];
  for (const n of SIZES) {
    for (const way of WAYS) {
      if (way === 'per watch' && n > PER_WATCH_MAX) continue;
      process.stderr.write(`consul-rules-prefix: ${n} services, ${way}\n`);
      const r = await run(n, way);
      rows.push([r.n, r.way, r.queries, r.connections, r.refused, fmt(r.bytes), Number.isNaN(r.applyMs) ? '—' : fmt(r.applyMs, 1)]);
    }
  }
  return [
    `## Consul: rule watches of N services, one query (key list, or every document) or one each (${machine()})`,
    '',
    `Document ${fmt(Buffer.byteLength(ruleDocument(`svc-0000`, 0)))} bytes; one process follows every service; bytes received and ms to apply: medians of ${CHANGES} changes, PUT to the watcher having it in force.`,
    '',
    table(
      [
        'services',
        'way',
        'blocking queries',
        'connections to the agent',
        'HTTP 429',
        'bytes received per change',
        'ms to apply one change',
      ],
      rows,
    ),
  ].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(await consulRulesPrefix());
