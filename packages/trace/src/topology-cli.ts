// `meshlet topology <trace-log>...`: the service dependency graph of trace logs.
// bin/meshlet-topology.js runs it. No run-when-executed check here: its top-level await kept
// require() from loading @meshlet/trace, and in a bundle every app passed for the executed file.
import { writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { buildTopology, renderTopologyMermaid, renderTopologySvg, renderTopologyTable } from './topology.js';
import { readTraceLog } from './trace-log-reader.js';

const USAGE = `usage: meshlet-topology <trace-log>... [--format table|mermaid|svg] [--out <file>]
  Reads OTLP JSON Lines trace logs (rotated files too: pass log.jsonl log.jsonl.1 ...)
  and prints the service dependency graph with calls, errors, p50 and p99 per edge.`;

/** Runs the command; returns the exit code. */
export async function topologyCommand(
  argv: readonly string[],
  out: (text: string) => void = (t) => process.stdout.write(t),
): Promise<number> {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (err) {
    out(`${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  const { values, positionals } = parsed;
  const format = values.format ?? 'table';
  if (values.help || positionals.length === 0 || !['table', 'mermaid', 'svg'].includes(format)) {
    out(`${USAGE}\n`);
    return values.help ? 0 : 2;
  }
  const { spans, badLines } = await readTraceLog(positionals);
  const edges = buildTopology(spans);
  const text =
    format === 'mermaid' ? renderTopologyMermaid(edges) : format === 'svg' ? renderTopologySvg(edges) : renderTopologyTable(edges);
  if (values.out) await writeFile(values.out, `${text}\n`);
  else out(`${text}\n`);
  if (badLines > 0) process.stderr.write(`topology: skipped ${badLines} line(s) that were not OTLP JSON\n`);
  return 0;
}

function parse(argv: readonly string[]) {
  return parseArgs({
    args: [...argv],
    allowPositionals: true,
    options: { format: { type: 'string', short: 'f' }, out: { type: 'string', short: 'o' }, help: { type: 'boolean', short: 'h' } },
  });
}
