import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { buildTopology, type OtlpSpan, renderTopologyMermaid, renderTopologySvg, renderTopologyTable } from '../src/index.js';
import { topologyCommand } from '../src/topology-cli.js';

/** A trace-log line with the given spans of one service. */
function line(service: string, spans: OtlpSpan[]): string {
  return JSON.stringify({
    resourceSpans: [
      {
        resource: { attributes: [{ key: 'service.name', value: { stringValue: service } }] },
        scopeSpans: [{ scope: { name: 't' }, spans }],
      },
    ],
  });
}

let n = 0;
const id = () => (++n).toString(16).padStart(16, '0');
const T0 = 1_700_000_000_000_000_000n;

function span(
  kind: 2 | 3,
  traceId: string,
  parent: string | undefined,
  ms: number,
  opts: { error?: boolean; peer?: string } = {},
): OtlpSpan {
  return {
    traceId,
    spanId: id(),
    ...(parent ? { parentSpanId: parent } : {}),
    name: 'GET',
    kind,
    startTimeUnixNano: String(T0),
    endTimeUnixNano: String(T0 + BigInt(Math.round(ms * 1e6))),
    attributes: opts.peer ? [{ key: 'service.peer.name', value: { stringValue: opts.peer } }] : [],
    status: { code: opts.error ? 2 : 0 },
  };
}

/** web calls api 100 times (latency 1..100 ms, 3 errors); api calls db each time; web calls an untraced "legacy" 5 times. */
function generate(): string[] {
  const web: OtlpSpan[] = [];
  const api: OtlpSpan[] = [];
  for (let i = 1; i <= 100; i++) {
    const trace = i.toString(16).padStart(32, '0');
    const root = span(2, trace, undefined, i + 1);
    const call = span(3, trace, root.spanId, i, { error: i > 97, peer: 'api' });
    const served = span(2, trace, call.spanId, i - 0.5);
    const db = span(3, trace, served.spanId, 0.25, { peer: 'db' });
    web.push(root, call);
    api.push(served, db);
    if (i <= 5) web.push(span(3, trace, root.spanId, 7, { peer: 'legacy' }));
  }
  return [line('web', web.slice(0, 150)), line('web', web.slice(150)), line('api', api)];
}

describe('topology', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'meshlet-topo-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('builds edges with calls, errors, p50 and p99 from a generated log', async () => {
    const path = join(dir, 'gen.jsonl');
    await writeFile(path, `${generate().join('\n')}\nnot json\n`);
    const { readTraceLog } = await import('../src/index.js');
    const { spans, badLines } = await readTraceLog([path]);
    assert.equal(badLines, 1);
    const edges = buildTopology(spans);
    assert.deepEqual(edges, [
      { from: 'api', to: 'db', calls: 100, errors: 0, p50Ms: 0.25, p99Ms: 0.25 },
      { from: 'web', to: 'api', calls: 100, errors: 3, p50Ms: 50, p99Ms: 99 },
      { from: 'web', to: 'legacy', calls: 5, errors: 0, p50Ms: 7, p99Ms: 7 },
    ]);
    assert.equal(
      renderTopologyTable(edges),
      [
        'from  to      calls  errors  p50 ms  p99 ms',
        '----  ------  -----  ------  ------  ------',
        'api   db        100       0    0.25    0.25',
        'web   api       100       3    50.0    99.0',
        'web   legacy      5       0    7.00    7.00',
      ].join('\n'),
    );
    const mermaid = renderTopologyMermaid(edges);
    assert.equal(mermaid.split('\n')[0], 'flowchart LR');
    assert.match(mermaid, /s2\["web"\] -->\|"100 calls, 3 err, p50 50\.0 ms, p99 99\.0 ms"\| s0\["api"\]/);
    const svg = renderTopologySvg(edges);
    assert.match(svg, /^<svg /);
    assert.equal(svg.match(/<rect /g)?.length, 4);
    assert.equal(svg.match(/<line /g)?.length, 3);
  });

  it('runs as a command: table by default, mermaid or svg to a file', async () => {
    const path = join(dir, 'cli.jsonl');
    await writeFile(path, `${generate().join('\n')}\n`);
    let printed = '';
    assert.equal(await topologyCommand([path], (t) => (printed += t)), 0);
    assert.match(printed, /^web {3}legacy {6}5 {7}0/m);
    const out = join(dir, 'graph.mmd');
    assert.equal(await topologyCommand([path, '--format', 'mermaid', '--out', out]), 0);
    assert.match(await readFile(out, 'utf8'), /^flowchart LR/);
    let usage = '';
    assert.equal(await topologyCommand([], (t) => (usage += t)), 2);
    assert.match(usage, /^usage: meshlet-topology </, 'the usage names the command a user runs');
    assert.equal(await topologyCommand([path, '--format', 'png'], () => undefined), 2);
  });

  it('runs only from its bin: the module run as the main script (as a bundle of an app is) does nothing', () => {
    // An app bundled with esbuild is one file holding this module: a check "am I the executed
    // file?" passed there, and every bundled app ran the topology command on its own argv.
    const module = fileURLToPath(new URL('../src/topology-cli.js', import.meta.url));
    const run = spawnSync(process.execPath, [module, 'app-argument'], { encoding: 'utf8' });
    assert.deepEqual([run.status, run.stdout, run.stderr], [0, '', '']);
  });
});
