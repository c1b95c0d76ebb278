import { type BreakerPolicy, type BreakerRules, parseBreakerRules } from '@meshlet/breaker';
import { ApiMatcher, type ApiTemplate, apiKey, RuleRepository } from '@meshlet/core';
import type { LoggedSpan } from '@meshlet/trace';
import { NotFoundError, UsageError } from './cli-error.js';
import { type Command, printJson, STORE_OPTIONS, STORE_USAGE } from './command.js';
import { ExitCode } from './exit-code.js';
import { printable } from './table.js';

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

/** Rule documents (service and revision) `explain` looks up in a store for one trace, at most. */
export const MAX_EXPLAINED_REVISIONS = 100;

/** A condition's text is cut to this many characters in explain's lines. */
const MAX_CONDITION_TEXT = 300;

/** A span's status message is cut to this many characters in explain's lines. */
const MAX_STATUS_TEXT = 500;

const cut = (text: string, max: number) => (text.length > max ? `${text.slice(0, max - 1)}…` : text);

/** The version of a service's rules that a span's `io.meshlet.rules.revision` names (core's RuleVersion, as explain reads it). */
export interface ExplainedRules {
  readonly version: number;
  readonly author: string;
  readonly at: number;
  readonly reason?: string;
  readonly action?: string;
  /** The document text (null for a delete). */
  readonly document: string | null;
}

/** Finds the version of `service`'s rules written at store `revision` (core's RuleRepository.versionAt). */
export type RuleVersionLookup = (service: string, revision: number) => Promise<ExplainedRules | undefined>;

/** The rules a span was decided under: whose, the store revision, and the version when a store said. */
export interface SpanRules {
  readonly service: string;
  readonly revision: number;
  readonly version: ExplainedRules | undefined;
  /** The document's sections, parsed once per revision. */
  readonly sections: Readonly<Record<string, unknown>> | undefined;
}

const revisionOf = (a: Readonly<Record<string, unknown>>): number | undefined => {
  const r = a['io.meshlet.rules.revision'];
  return typeof r === 'number' && Number.isSafeInteger(r) && r > 0 ? r : undefined;
};

/** Whose rules decided on a span: the called service's on a CLIENT span, the span's own service's otherwise. */
const rulesServiceOf = (span: SpanLike): string =>
  (span.kind === 3 ? str(span.attributes['service.peer.name']) : undefined) ?? span.service;

const keyOf = (service: string, revision: number) => `${service}@${revision}`;

/** A condition of a rule document, in words (`ua.family equals "Chrome"`). */
function conditionText(c: unknown): string {
  const o = (c ?? {}) as Record<string, unknown>;
  const tag = String(o.tag ?? '?');
  switch (o.op) {
    case 'equals':
    case 'notEquals':
      return `${tag} ${o.op === 'equals' ? 'equals' : 'is not'} ${JSON.stringify(o.value)}`;
    case 'in':
    case 'notIn':
      return `${tag} ${o.op === 'in' ? 'in' : 'not in'} [${(Array.isArray(o.values) ? o.values : []).map((v) => JSON.stringify(v)).join(', ')}]`;
    case 'regex':
      return `${tag} matches /${String(o.pattern)}/`;
    case 'exists':
      return `${tag} is set`;
    case 'range':
      return `${tag} in [${o.min ?? '-∞'}, ${o.max ?? '∞'}]`;
    default:
      return JSON.stringify(o);
  }
}

const apiText = (a: unknown) => {
  const o = (a ?? {}) as Record<string, unknown>;
  return `${String(o.method ?? '*')} ${String(o.path ?? '')}`;
};

/**
 * What made rule `name` of section `kind` match, from the document in force: its API,
 * callers and tag conditions; `always` for a rule without any. Undefined when the document
 * has no such rule.
 */
export function ruleCondition(sections: Readonly<Record<string, unknown>> | undefined, kind: string, name: string): string | undefined {
  const rules = (sections?.[kind] as { rules?: unknown } | undefined)?.rules;
  if (!Array.isArray(rules)) return undefined;
  const rule = rules.find((r) => (r as { name?: unknown })?.name === name) as Record<string, unknown> | undefined;
  if (!rule) return undefined;
  const parts: string[] = [];
  if (rule.api) parts.push(`api ${apiText(rule.api)}`);
  if (Array.isArray(rule.apis) && rule.apis.length) parts.push(`api ${rule.apis.map(apiText).join(' or ')}`);
  if (Array.isArray(rule.services) && rule.services.length) parts.push(`caller ${rule.services.join(' or ')}`);
  if (Array.isArray(rule.namespaces) && rule.namespaces.length) parts.push(`namespace ${rule.namespaces.join(' or ')}`);
  if (typeof rule.identity === 'string' && rule.identity !== 'any') parts.push(`identity ${rule.identity}`);
  if (Array.isArray(rule.when) && rule.when.length) parts.push(rule.when.map(conditionText).join(' and '));
  if (Array.isArray(rule.by) && rule.by.length) parts.push(`per ${rule.by.join(', ')}`);
  return cut(parts.length ? parts.join('; ') : 'always (no condition)', MAX_CONDITION_TEXT);
}

const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);

/** A CLIENT span's `error.type`s that mean the call was refused before routing picked anything. */
const BEFORE_ROUTING: ReadonlySet<string> = new Set(['circuit_open', 'BulkheadFullError', 'OutboundLimitError']);
/** `error.type`s a decision line already tells. */
const TOLD_ERRORS: ReadonlySet<string> = new Set([
  'rate_limited',
  'auth_denied',
  'circuit_open',
  'no_instance',
  'timeout',
  'BulkheadFullError',
  'OutboundLimitError',
]);

/**
 * What a route rule chose, from the attributes routing put on the span: the group, `sticky
 * by <tag>` for a rule with `stickyBy`, and where the call went when the group had nothing
 * to route to. A span without the group (a refused call, or one from a version before
 * routing named it) says only that the rule chose.
 */
function routeChoiceText(a: SpanLike['attributes']): string {
  const group = str(a['io.meshlet.route.group']);
  if (group === undefined) return 'chose the destination group';
  const sticky = str(a['io.meshlet.route.sticky_by']);
  let text = `chose ${groupText(group)}${sticky ? ` (sticky by ${sticky})` : ''}`;
  const fallback = str(a['io.meshlet.route.fallback']);
  const m = fallback ? /^(fallback|default):(.*)$/s.exec(fallback) : null;
  if (m) {
    const [, list, to = ''] = m;
    text += `, which had no instance to route to: sent to ${list === 'fallback' ? 'its fallback' : 'the default route'}, ${groupText(to)}`;
  }
  return text;
}

/** A group as routing names it on the span (its selector as JSON), in words. */
const groupText = (group: string) => (group === '{}' ? 'every instance' : `group ${group}`);

/**
 * The decisions a span's attributes record, in words; what a span does not record is said
 * so. With `rules` (the document its revision names, from a store), each named rule's
 * version and condition too.
 */
export function decisionsOf(span: SpanLike, rules?: SpanRules): string[] {
  const a = span.attributes;
  const error = str(a['error.type']);
  const out: string[] = [];
  const revision = revisionOf(a);
  if (revision !== undefined) {
    const whose = rulesServiceOf(span);
    const v = rules?.version;
    out.push(
      v
        ? `rules: ${whose} version ${v.version} (revision ${revision}), ${v.action ?? 'applied'} by ${v.author} at ${new Date(v.at).toISOString()}${v.reason ? ` — "${v.reason}"` : ''}`
        : `rules: ${whose} at revision ${revision}${rules ? ' (no version in the store’s history for it)' : ''}`,
    );
  }
  /** ` — when <condition>` of a named rule, from the document in force, when known. */
  const when = (kind: string, name: string) => {
    const c = ruleCondition(rules?.sections, kind, name);
    return c ? ` — when ${c}` : '';
  };
  if (span.kind === 2) {
    const limiter = str(a['io.meshlet.limiter']);
    if (limiter) {
      const name = limiter.replace(/:rejected$/, '');
      // The rule's one bucket for requests without its `by` tags refused it: a misnamed tag
      // makes a per-caller limit one for everybody.
      const shared =
        a['io.meshlet.limiter.bucket'] === 'shared' ? ' from its shared bucket (requests without its `by` tags count together)' : '';
      out.push(`limit: ${name} refused it (429)${shared}${when('ratelimit', name)}`);
    } else if (error !== 'rate_limited')
      out.push(str(a['io.meshlet.shadow'])?.startsWith('ratelimit:') ? 'limit: admitted' : 'limit: admitted (no limit rule refused it)');
    const auth = str(a['io.meshlet.auth']);
    const m = auth ? /^(.*):(allowed|denied)$/.exec(auth) : null;
    if (m) {
      const [, name = '', outcome] = m;
      out.push(
        name === '(default)'
          ? `auth: ${outcome} by the default of this service's auth rules${outcome === 'denied' ? ' (403)' : ''}`
          : `auth: rule "${name}" ${outcome} it${outcome === 'denied' ? ' (403)' : ''}${when('auth', name)}`,
      );
    } else if (error === 'auth_denied') out.push('auth: denied (403) by the auth rules of this service');
  } else if (span.kind === 3) {
    const route = str(a['io.meshlet.route']);
    const instance = str(a['io.meshlet.instance']);
    // A service or API breaker, the bulkhead and the outbound adaptive limit refuse before
    // routing: no route decision to tell.
    // A refusal the fallback answered has no error.type but refused before routing all the same.
    const beforeRouting = (error !== undefined && BEFORE_ROUTING.has(error)) || a['io.meshlet.fallback'] !== undefined;
    if (route || instance || !beforeRouting)
      out.push(
        route
          ? `route: rule "${route}" ${routeChoiceText(a)}${when('route', route)}`
          : 'route: no route rule matched (default destinations or every instance)',
      );
    // Instances of the pool routing picked from that it skipped because their breakers are open.
    const ejected = a['io.meshlet.route.ejected'];
    if (typeof ejected === 'number' && ejected > 0) {
      const ids = str(a['io.meshlet.route.ejected_ids']);
      out.push(`route: ${ejected} instance${ejected === 1 ? '' : 's'} skipped: breaker open${ids ? ` (${ids})` : ''}`);
    }
    const lane = str(a['io.meshlet.lane']);
    if (lane) out.push(`lane: ${lane}`);
    if (instance) out.push(`instance: ${instance}`);
    const breaker = str(a['io.meshlet.breaker']);
    const refusedBy = refusalText(span, rules);
    const skipped = str(a['io.meshlet.circuit.instances']);
    if (refusedBy) out.push(refusedBy);
    else if (skipped && instance) out.push(`breaker: the instance breakers of ${skipped} refused the pick; sent to ${instance} instead`);
    if (!refusedBy) {
      // No breaker refused this call, or the span is from a version before the executor named
      // the refusing breaker (io.meshlet.circuit.*): the breaker rules that governed it, the
      // api breaker it passed as the span names it (io.meshlet.breaker.api), inferred from
      // the span's method and path only for spans from versions before that attribute.
      const refused = error === 'circuit_open' ? ' — the call was refused without being sent' : '';
      const named = breakerRuleText(span, rules);
      if (named.length > 0) for (const line of named) out.push(`${line}${refused}`);
      else if (breaker) out.push(`breaker: ${breaker}${refused}`);
    }
    const resend = a['http.request.resend_count'];
    if (typeof resend === 'number' && resend > 0) {
      // Why (io.meshlet.retry): `stale` is a kept-alive connection that went stale, sent again on a new one.
      const why = str(a['io.meshlet.retry']);
      out.push(`retry: attempt ${resend + 1}${why ? ` (after ${why})` : ''}`);
    }
    if (error === 'no_instance') out.push('no instance to send to');
    if (error === 'BulkheadFullError') out.push(`limit: the bulkhead of calls to ${rulesServiceOf(span)} was full — the call was not sent`);
    if (error === 'OutboundLimitError')
      out.push(
        `limit: the adaptive limit of calls to ${rulesServiceOf(span)} (ratelimit.outboundAdaptive) refused it — the call was not sent`,
      );
    if (error === 'timeout') {
      // The mesh's own timeout names itself on the span; any other `timeout` (a TimeoutError
      // from the caller's AbortSignal.timeout, an inbound gRPC deadline) was not a rule's.
      const timeoutMs = a['io.meshlet.timeout_ms'];
      out.push(
        typeof timeoutMs === 'number'
          ? `timed out: no answer within ${timeoutMs} ms (breaker rule timeoutMs)`
          : "timed out: the caller's deadline or abort (not a breaker rule)",
      );
    }
  }
  const shadow = str(a['io.meshlet.shadow']);
  // One note per kind that would have decided otherwise, space-separated.
  for (const note of shadow?.split(' ').filter(Boolean) ?? []) {
    const [kind, rule, outcome] = note.split(':');
    const what = (outcome ?? 'would decide otherwise').replaceAll('-', ' ').replaceAll('+', ' and ');
    // A breaker note names a level (service, api, instance) or `timeout`, not a rule; an api
    // breaker's would-be refusal names its API (io.meshlet.circuit.shadow_api).
    const shadowApi = kind === 'breaker' && rule === 'api' ? str(a['io.meshlet.circuit.shadow_api']) : undefined;
    const subject =
      kind === 'breaker'
        ? rule === 'timeout'
          ? 'breaker timeoutMs'
          : `${rule} breaker${shadowApi ? ` of ${rulesServiceOf(span)} ${shadowApi}` : ''}`
        : `${kind} rule "${rule}"`;
    const policy =
      kind === 'breaker' && (rule === 'service' || shadowApi) ? breakerPolicyOf(rules, rule as 'service' | 'api', shadowApi) : undefined;
    const extra = kind && rule && kind !== 'breaker' ? when(kind, rule) : policy ? ` — ${breakerThresholds(policy)}` : '';
    out.push(`shadow: ${subject} ${what} (not enforced)${extra}`);
  }
  if (error && !TOLD_ERRORS.has(error)) out.push(`error: ${error}`);
  // The span's status message: the error's own words (routing's says which groups were empty).
  // Printable: a message may hold a line break or an escape sequence from a remote's answer.
  if (span.statusMessage) out.push(`status: ${cut(printable(span.statusMessage), MAX_STATUS_TEXT)}`);
  return out;
}

/** The spans of one trace as a tree (callers before what they called, siblings by start time); `rules` by `service@revision`. */
export function explainTrace(spans: readonly SpanLike[], rules?: ReadonlyMap<string, SpanRules>): ExplainedHop[] {
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
        decisions: decisionsOf(s, spanRules(s, rules)),
      });
      visit(s.spanId, depth + 1);
    }
  };
  visit(undefined, 0);
  return out;
}

function spanRules(span: SpanLike, rules: ReadonlyMap<string, SpanRules> | undefined): SpanRules | undefined {
  const revision = revisionOf(span.attributes);
  return revision === undefined ? undefined : rules?.get(keyOf(rulesServiceOf(span), revision));
}

/** Looks up the versions the spans name (each service and revision once, at most MAX_EXPLAINED_REVISIONS). */
async function rulesOf(spans: readonly SpanLike[], lookup: RuleVersionLookup): Promise<Map<string, SpanRules>> {
  const wanted = new Map<string, { service: string; revision: number }>();
  for (const s of spans) {
    const revision = revisionOf(s.attributes);
    if (revision === undefined) continue;
    const service = rulesServiceOf(s);
    if (wanted.size < MAX_EXPLAINED_REVISIONS) wanted.set(keyOf(service, revision), { service, revision });
  }
  const out = new Map<string, SpanRules>();
  await Promise.all(
    [...wanted].map(async ([key, { service, revision }]) => {
      const version = await lookup(service, revision);
      let sections: Record<string, unknown> | undefined;
      try {
        sections = version?.document ? (JSON.parse(version.document) as Record<string, unknown>) : undefined;
      } catch {
        sections = undefined;
      }
      out.set(key, { service, revision, version, sections });
    }),
  );
  return out;
}

/**
 * Reads trace logs and explains one trace; NotFoundError when no span of it is there. With
 * `lookup` (a rule store), each revision a span names is told as its version, author and
 * reason, and each named rule with its condition.
 */
export async function explainFromLogs(
  traceId: string,
  files: readonly string[],
  lookup?: RuleVersionLookup,
): Promise<{ hops: ExplainedHop[]; badLines: number }> {
  if (!/^[0-9a-f]{32}$/i.test(traceId)) throw new UsageError(`trace id: 32 hex digits (got ${JSON.stringify(traceId.slice(0, 64))})`);
  // Loaded here, as for `topology`: tracing brings OpenTelemetry.
  const { readTraceLog } = await import('@meshlet/trace');
  const { spans, badLines } = await readTraceLog(files);
  const id = traceId.toLowerCase();
  const mine = spans.filter((s) => s.traceId.toLowerCase() === id);
  if (mine.length === 0) throw new NotFoundError(`trace ${traceId}: no span in ${files.join(', ')}`);
  return { hops: explainTrace(mine, lookup ? await rulesOf(mine, lookup) : undefined), badLines };
}

export const explain: Command = {
  words: ['explain'],
  summary: 'what Meshlet decided at each hop of one trace: route rule, instance, limit, breaker, auth (from trace logs)',
  usage: `explain <trace-id> <trace-log>... [--json] [--dir <path> | --consul <url> [--token <token>]]
  Reads OTLP JSON Lines trace logs (@meshlet/trace's \`tracing.log\`) and prints the trace as a
  tree: each server hop's limit and auth outcome, each call's route rule, lane, instance,
  breaker state and retries, and the revision of the rule document that decided
  (io.meshlet.rules.revision). The trace id is the 32 hex digits of a traceparent header.
  With a rule store (--dir or --consul), each revision is told as its version, author and
  reason, and each rule with its condition, from the store's history.
${STORE_USAGE}`,
  options: STORE_OPTIONS,
  positionals: [2, 1000],
  async run(ctx) {
    const [traceId, ...files] = ctx.positionals as [string, ...string[]];
    // Only when a store is named: explain reads files, and asks no agent unless told to.
    const withStore = ctx.values.dir !== undefined || ctx.values.consul !== undefined;
    let lookup: RuleVersionLookup | undefined;
    if (withStore) {
      // Only history is read (versionAt): no kind is needed.
      const repo = new RuleRepository({ kv: ctx.store().kv, kinds: [] });
      lookup = (service, revision) => repo.versionAt(service, revision);
    }
    const { hops, badLines } = await explainFromLogs(traceId, files, lookup);
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

/** A breaker policy's thresholds in words: `failure rate ≥ 50% over 20 calls or 5 failures in a row`. */
export function breakerThresholds(p: BreakerPolicy): string {
  const w = p.window;
  const over = w.type === 'count' ? `over ${w.size} calls` : `over ${w.ms / 1000} s (at least ${p.minimumCalls} calls)`;
  const parts = [`failure rate ≥ ${p.failureRateThreshold}% ${over}`];
  if (p.slowCallThresholdMs > 0 && p.slowCallRateThreshold > 0)
    parts.push(`slow calls (≥ ${p.slowCallThresholdMs} ms) ≥ ${p.slowCallRateThreshold}%`);
  if (p.consecutiveFailures > 0) parts.push(`${p.consecutiveFailures} failures in a row`);
  return `${parts.join(' or ')}; open ${p.sleepWindowMs / 1000} s, then ${p.probes} probes`;
}

/** The breaker section of the document in force at a span's revision, parsed; undefined without one. */
function breakerSectionOf(rules: SpanRules | undefined): BreakerRules | undefined {
  const raw = rules?.sections?.breaker;
  if (raw === undefined) return undefined;
  try {
    return parseBreakerRules(raw, 'breaker');
  } catch {
    return undefined;
  }
}

/** The policy of the breaker at `level` (for `api`, the rule listing `api`) in the document in force. */
function breakerPolicyOf(
  rules: SpanRules | undefined,
  level: 'service' | 'api' | 'instance',
  api: string | undefined,
): BreakerPolicy | undefined {
  const parsed = breakerSectionOf(rules);
  if (parsed === undefined) return undefined;
  if (level === 'service') return parsed.service?.policy;
  if (level === 'instance') return parsed.instance?.policy;
  return parsed.apis.find((r) => r.apis.some((t) => apiKey(t) === api))?.policy;
}

/** `(rules version 3, revision 57)`, `(rules revision 57)`, or nothing when the span names no revision. */
function versionText(span: SpanLike, rules: SpanRules | undefined): string {
  const revision = revisionOf(span.attributes);
  if (revision === undefined) return '';
  return rules?.version ? ` (rules version ${rules.version.version}, revision ${revision})` : ` (rules revision ${revision})`;
}

/**
 * The breaker that refused a call, as the executor named it on the span
 * (io.meshlet.circuit.level, .api, .state; .instances for instance breakers), with its
 * thresholds from the document in force when a store gave it. Undefined when the span names
 * no refusing breaker.
 */
function refusalText(span: SpanLike, rules: SpanRules | undefined): string | undefined {
  const a = span.attributes;
  const level = str(a['io.meshlet.circuit.level']);
  if (level !== 'service' && level !== 'api' && level !== 'instance') return undefined;
  const service = rulesServiceOf(span);
  const api = level === 'api' ? str(a['io.meshlet.circuit.api']) : undefined;
  const state = str(a['io.meshlet.circuit.state'])?.replace('_', '-');
  const policy = breakerPolicyOf(rules, level, api);
  const thresholds = policy ? ` — ${breakerThresholds(policy)}` : '';
  if (level === 'instance') {
    const ids = str(a['io.meshlet.circuit.instances']) ?? '?';
    return `breaker: refused by the instance breakers of ${service} (${ids})${thresholds}${versionText(span, rules)} — no instance routing offered was left to send to`;
  }
  const which = api ? `the api breaker of ${service} ${api}` : `the ${level} breaker of ${service}`;
  // io.meshlet.fallback: the breaker's fallback answered the refused call (its status on the span).
  const status = a['http.response.status_code'];
  const outcome =
    a['io.meshlet.fallback'] !== undefined
      ? `the call was not sent; the fallback answered${typeof status === 'number' ? ` ${status}` : ''}`
      : 'the call was not sent';
  return `breaker: refused by ${which}${state ? ` (${state})` : ''}${thresholds}${versionText(span, rules)} — ${outcome}`;
}

/**
 * The breaker rule that decided on a CLIENT span, from the document in force at its
 * revision: the span's `io.meshlet.breaker` is the service breaker's state; a call refused
 * (circuit_open) while the service breaker is closed was refused by the API breaker its
 * method and path fall under. Undefined without the document or a breaker rule for the call.
 */
function breakerRuleText(span: SpanLike, rules: SpanRules | undefined): string[] {
  const parsed = breakerSectionOf(rules);
  if (parsed === undefined) return [];
  const a = span.attributes;
  const state = str(a['io.meshlet.breaker']);
  const service = rulesServiceOf(span);
  const version = rules?.version ? `rules version ${rules.version.version}` : `rules revision ${rules?.revision}`;
  const serviceLine = parsed.service
    ? `breaker: service breaker of ${service} ${state ?? 'closed'} — ${breakerThresholds(parsed.service.policy)} (${version})`
    : undefined;
  // The executor names the api breaker a call passed (io.meshlet.breaker.api): no inference.
  const passed = str(a['io.meshlet.breaker.api']);
  if (passed !== undefined) {
    const policy = breakerPolicyOf(rules, 'api', passed);
    const apiLine = `breaker: passed the api breaker of ${service} ${passed}${policy ? ` — ${breakerThresholds(policy)}` : ''} (${version})`;
    return serviceLine === undefined ? [apiLine] : [serviceLine, apiLine];
  }
  let api: { key: string; policy: BreakerPolicy } | undefined;
  const method = str(a['http.request.method']);
  const url = str(a['url.full']);
  if (parsed.apis.length && method && url) {
    let path: string | undefined;
    try {
      path = new URL(url).pathname;
    } catch {
      path = undefined;
    }
    const entries: (ApiTemplate & { policy: BreakerPolicy })[] = parsed.apis.flatMap((r) =>
      r.apis.map((t) => ({ ...t, policy: r.policy })),
    );
    const m = path === undefined ? undefined : new ApiMatcher(entries).match(method, path);
    if (m) api = { key: m.key, policy: m.entry.policy };
  }
  const serviceOpen = state === 'open' || state === 'half_open';
  if (api && (a['error.type'] === 'circuit_open' ? !serviceOpen : !parsed.service))
    return [
      `breaker: api breaker of ${service} ${api.key} ${a['error.type'] === 'circuit_open' ? 'open' : 'closed'} — ${breakerThresholds(api.policy)} (${version})`,
    ];
  return serviceLine === undefined ? [] : [serviceLine];
}
