import { Attr } from './attributes.js';
import { OtlpSpanKind } from './otlp-json.js';
import type { LoggedSpan } from './trace-log-reader.js';

/** One caller -> callee edge of the service dependency graph. */
export interface TopologyEdge {
  readonly from: string;
  readonly to: string;
  readonly calls: number;
  readonly errors: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
}

/**
 * The service dependency graph of a set of spans. An edge goes from a CLIENT span's service
 * to the service of its child SERVER span; a CLIENT span with no child in the log (the
 * callee is not traced, or its log was not given) is an edge to its `service.peer.name`,
 * else its `server.address`. Latency and errors are the CLIENT spans' (what the caller saw).
 */
export function buildTopology(spans: readonly LoggedSpan[]): TopologyEdge[] {
  const serverChild = new Map<string, LoggedSpan>();
  for (const s of spans) {
    if (s.kind === OtlpSpanKind.server && s.parentSpanId) serverChild.set(`${s.traceId}/${s.parentSpanId}`, s);
  }
  const edges = new Map<string, { from: string; to: string; durations: number[]; errors: number }>();
  for (const s of spans) {
    if (s.kind !== OtlpSpanKind.client) continue;
    const child = serverChild.get(`${s.traceId}/${s.spanId}`);
    const to = child?.service ?? String(s.attributes[Attr.servicePeerName] ?? s.attributes[Attr.serverAddress] ?? 'unknown');
    const key = `${s.service}\u0000${to}`;
    let e = edges.get(key);
    if (!e) {
      e = { from: s.service, to, durations: [], errors: 0 };
      edges.set(key, e);
    }
    e.durations.push(s.durationMs);
    if (s.statusCode === 2) e.errors++;
  }
  return [...edges.values()]
    .map((e) => {
      const sorted = e.durations.sort((a, b) => a - b);
      return {
        from: e.from,
        to: e.to,
        calls: sorted.length,
        errors: e.errors,
        p50Ms: quantile(sorted, 0.5),
        p99Ms: quantile(sorted, 0.99),
      };
    })
    .sort((a, b) => a.from.localeCompare(b.from) || a.to.localeCompare(b.to));
}

/** Nearest-rank quantile of sorted values. */
function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] as number;
}

const ms = (n: number) => (n < 10 ? n.toFixed(2) : n < 100 ? n.toFixed(1) : n.toFixed(0));

/** The graph as an aligned text table. */
export function renderTopologyTable(edges: readonly TopologyEdge[]): string {
  const rows = [
    ['from', 'to', 'calls', 'errors', 'p50 ms', 'p99 ms'],
    ...edges.map((e) => [e.from, e.to, String(e.calls), String(e.errors), ms(e.p50Ms), ms(e.p99Ms)]),
  ];
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  const numeric = (i: number) => i >= 2;
  const line = (r: string[]) =>
    r
      .map((c, i) => (numeric(i) ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(rows[0] ?? []), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.slice(1).map(line)].join('\n');
}

/** Mermaid node ids must be plain words; names are shown as labels. */
const mermaidId = (name: string, ids: Map<string, string>) => {
  let id = ids.get(name);
  if (!id) {
    id = `s${ids.size}`;
    ids.set(name, id);
  }
  return id;
};
const mermaidLabel = (s: string) => s.replace(/"/g, '#quot;');

/** The graph as a Mermaid flowchart. */
export function renderTopologyMermaid(edges: readonly TopologyEdge[]): string {
  const ids = new Map<string, string>();
  const lines = ['flowchart LR'];
  for (const e of edges) {
    const a = mermaidId(e.from, ids);
    const b = mermaidId(e.to, ids);
    const label = `${e.calls} calls, ${e.errors} err, p50 ${ms(e.p50Ms)} ms, p99 ${ms(e.p99Ms)} ms`;
    lines.push(`  ${a}["${mermaidLabel(e.from)}"] -->|"${label}"| ${b}["${mermaidLabel(e.to)}"]`);
  }
  return lines.join('\n');
}

const xml = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** The graph as a standalone SVG: services in columns by call depth, edges labelled. */
export function renderTopologySvg(edges: readonly TopologyEdge[]): string {
  const nodes = [...new Set(edges.flatMap((e) => [e.from, e.to]))];
  // Depth = longest chain of callers above a node (bounded by the node count, so cycles end).
  const depth = new Map(nodes.map((n) => [n, 0]));
  for (let round = 0; round < nodes.length; round++) {
    for (const e of edges) {
      if (e.from === e.to) continue;
      const d = (depth.get(e.from) ?? 0) + 1;
      if (d > (depth.get(e.to) ?? 0) && d < nodes.length) depth.set(e.to, d);
    }
  }
  const columns = new Map<number, string[]>();
  for (const n of nodes) {
    const d = depth.get(n) ?? 0;
    columns.set(d, [...(columns.get(d) ?? []), n]);
  }
  const W = 180;
  const H = 40;
  const GX = 160;
  const GY = 50;
  const pos = new Map<string, { x: number; y: number }>();
  for (const [d, col] of columns) {
    for (const [i, n] of col.entries()) pos.set(n, { x: 20 + d * (W + GX), y: 20 + i * (H + GY) });
  }
  const width = 40 + (Math.max(0, ...columns.keys()) + 1) * (W + GX) - GX;
  const height = 40 + Math.max(1, ...[...columns.values()].map((c) => c.length)) * (H + GY) - GY;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto"><path d="M0,0 L10,5 L0,10 z"/></marker></defs>',
  ];
  for (const e of edges) {
    const a = pos.get(e.from);
    const b = pos.get(e.to);
    if (!a || !b) continue;
    const x1 = a.x + W;
    const y1 = a.y + H / 2;
    const x2 = e.from === e.to ? a.x + W / 2 : b.x;
    const y2 = e.from === e.to ? a.y + H : b.y + H / 2;
    const colour = e.errors > 0 ? '#c0392b' : '#555';
    parts.push(`<line x1="${x1}" y1="${y1}" x2="${x2}" y2="${y2}" stroke="${colour}" marker-end="url(#arrow)"/>`);
    parts.push(
      `<text x="${(x1 + x2) / 2}" y="${(y1 + y2) / 2 - 4}" text-anchor="middle" fill="${colour}">${e.calls} calls · ${e.errors} err · p99 ${ms(e.p99Ms)} ms</text>`,
    );
  }
  for (const [n, p] of pos) {
    parts.push(`<rect x="${p.x}" y="${p.y}" width="${W}" height="${H}" rx="6" fill="#eef3fb" stroke="#35659c"/>`);
    parts.push(`<text x="${p.x + W / 2}" y="${p.y + H / 2 + 4}" text-anchor="middle">${xml(n)}</text>`);
  }
  parts.push('</svg>');
  return parts.join('\n');
}
