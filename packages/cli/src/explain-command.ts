import type { LoggedSpan } from '@meshlet/trace';
import { NotFoundError, UsageError } from './cli-error.js';
import { type Command, printJson } from './command.js';
import { ExitCode } from './exit-code.js';

/** What `explain` reads of a logged span. */
type SpanLike = Omit<LoggedSpan, 'statusCode' | 'attributes'> & { readonly attributes: Readonly<Record<string, unknown>> };

/** One hop of a trace, and what Meshlet decided there. */
export interface ExplainedHop {
  readonly depth: number;
  readonly service: string;
  readonly side: 'server' | 'client' | 'internal';
  readonly name: string;
  readonly status: number | null;
  readonly durationMs: number;
  readonly decisions: readonly string[];
}

/** Spans a trace may hold before `explain` stops reading it (a loop must not print forever). */
export const MAX_EXPLAINED_SPANS = 10_000;

const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);

/** The decisions a span's attributes record, in words; what a span does not record is said so. */
export function decisionsOf(span: SpanLike): string[] {
  const a = span.attributes;
  const error = str(a['error.type']);
  const out: string[] = [];
  if (span.kind === 2) {
    const limiter = str(a['io.meshlet.limiter']);
    if (limiter) out.push(`limit: ${limiter.replace(/:rejected$/, '')} refused it (429)`);
    else if (error !== 'rate_limited')
      out.push(str(a['io.meshlet.shadow'])?.startsWith('ratelimit:') ? 'limit: admitted' : 'limit: admitted (no limit rule refused it)');
    if (error === 'auth_denied') out.push('auth: denied (403) by the auth rules of this service');
  } else if (span.kind === 3) {
    const route = str(a['io.meshlet.route']);
    out.push(
      route
        ? `route: rule "${route}" chose the destination group`
        : 'route: no route rule matched (default destinations or every instance)',
    );
    const lane = str(a['io.meshlet.lane']);
    if (lane) out.push(`lane: ${lane}`);
    const instance = str(a['io.meshlet.instance']);
    if (instance) out.push(`instance: ${instance}`);
    const breaker = str(a['io.meshlet.breaker']);
    if (breaker) out.push(`breaker: ${breaker}${error === 'circuit_open' ? ' — the call was refused without being sent' : ''}`);
    const resend = a['http.request.resend_count'];
    if (typeof resend === 'number' && resend > 0) out.push(`retry: attempt ${resend + 1}`);
    if (error === 'no_instance') out.push('no instance to send to');
    if (error === 'timeout') out.push('timed out (breaker rule timeoutMs)');
  }
  const shadow = str(a['io.meshlet.shadow']);
  // One note per kind that would have decided otherwise, space-separated.
  for (const note of shadow?.split(' ').filter(Boolean) ?? []) {
    const [kind, rule, outcome] = note.split(':');
    const what = (outcome ?? 'would decide otherwise').replaceAll('-', ' ').replaceAll('+', ' and ');
    // A breaker note names a level (service, api, instance) or `timeout`, not a rule.
    const subject = kind === 'breaker' ? (rule === 'timeout' ? 'breaker timeoutMs' : `${rule} breaker`) : `${kind} rule "${rule}"`;
    out.push(`shadow: ${subject} ${what} (not enforced)`);
  }
  if (error && !['rate_limited', 'auth_denied', 'circuit_open', 'no_instance', 'timeout'].includes(error)) out.push(`error: ${error}`);
  return out;
}

/** The spans of one trace as a tree (callers before what they called, siblings by start time). */
export function explainTrace(spans: readonly SpanLike[]): ExplainedHop[] {
  const ids = new Set(spans.map((s) => s.spanId));
  const children = new Map<string | undefined, SpanLike[]>();
  for (const s of spans) {
    const parent = s.parentSpanId !== undefined && ids.has(s.parentSpanId) ? s.parentSpanId : undefined;
    let list = children.get(parent);
    if (!list) {
      list = [];
      children.set(parent, list);
    }
    list.push(s);
  }
  for (const list of children.values()) list.sort((a, b) => (a.startTimeUnixNano < b.startTimeUnixNano ? -1 : 1));
  const out: ExplainedHop[] = [];
  const seen = new Set<string>();
  const visit = (parent: string | undefined, depth: number) => {
    for (const s of children.get(parent) ?? []) {
      if (seen.has(s.spanId) || out.length >= MAX_EXPLAINED_SPANS) continue;
      seen.add(s.spanId);
      const status = s.attributes['http.response.status_code'];
      out.push({
        depth,
        service: s.service,
        side: s.kind === 2 ? 'server' : s.kind === 3 ? 'client' : 'internal',
        name: s.name,
        status: typeof status === 'number' ? status : null,
        durationMs: s.durationMs,
        decisions: decisionsOf(s),
      });
      visit(s.spanId, depth + 1);
    }
  };
  visit(undefined, 0);
  return out;
}

/** Reads trace logs and explains one trace; NotFoundError when no span of it is there. */
export async function explainFromLogs(traceId: string, files: readonly string[]): Promise<{ hops: ExplainedHop[]; badLines: number }> {
  if (!/^[0-9a-f]{32}$/i.test(traceId)) throw new UsageError(`trace id: 32 hex digits (got ${JSON.stringify(traceId.slice(0, 64))})`);
  // Loaded here, as for `topology`: tracing brings OpenTelemetry.
  const { readTraceLog } = await import('@meshlet/trace');
  const { spans, badLines } = await readTraceLog(files);
  const id = traceId.toLowerCase();
  const mine = spans.filter((s) => s.traceId.toLowerCase() === id);
  if (mine.length === 0) throw new NotFoundError(`trace ${traceId}: no span in ${files.join(', ')}`);
  return { hops: explainTrace(mine), badLines };
}

export const explain: Command = {
  words: ['explain'],
  summary: 'what Meshlet decided at each hop of one trace: route rule, instance, limit, breaker, auth (from trace logs)',
  usage: `explain <trace-id> <trace-log>... [--json]
  Reads OTLP JSON Lines trace logs (@meshlet/trace's \`tracing.log\`) and prints the trace as a
  tree: each server hop's limit and auth outcome, each call's route rule, lane, instance,
  breaker state and retries. The trace id is the 32 hex digits of a traceparent header.`,
  options: {},
  positionals: [2, 1000],
  async run(ctx) {
    const [traceId, ...files] = ctx.positionals as [string, ...string[]];
    const { hops, badLines } = await explainFromLogs(traceId, files);
    const id = traceId.toLowerCase();
    if (ctx.values.json) {
      printJson(ctx.io, { traceId: id, badLines, hops });
      return ExitCode.ok;
    }
    const lines: string[] = [`trace ${id}`];
    for (const h of hops) {
      const pad = '  '.repeat(h.depth + 1);
      lines.push(`${pad}${h.service} ${h.side} ${h.name}${h.status !== null ? ` → ${h.status}` : ''} (${h.durationMs.toFixed(1)} ms)`);
      for (const d of h.decisions) lines.push(`${pad}  ${d}`);
    }
    if (badLines > 0) lines.push(`(${badLines} unreadable lines skipped)`);
    ctx.io.out(`${lines.join('\n')}\n`);
    return ExitCode.ok;
  },
};
