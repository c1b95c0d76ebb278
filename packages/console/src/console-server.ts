import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  AdminClient,
  type AdminResult,
  type CheckedRuleKind,
  canonicalDocument,
  checkRuleDocument,
  explainFromLogs,
  type RegistryView,
  Slots,
  unifiedDiff,
} from '@meshlet/cli';
import {
  badOption,
  type Clock,
  hasControlCharacter,
  type Instance,
  type KvStore,
  type Logger,
  MAX_RULE_VERSION,
  MetaKey,
  RULES_PREFIX,
  RuleConflictError,
  RuleRepository,
  RuleValidationError,
  SERVICE_NAME,
  silentLogger,
  systemClock,
  throttledLogger,
  urlHost,
} from '@meshlet/core';
import { CounterHistory, parsePrometheus } from './metrics.js';
import {
  ConsoleError,
  CSRF_HEADER,
  checkCsrf,
  checkHost,
  checkOrigin,
  clearedCookie,
  LoginThrottle,
  type Session,
  Sessions,
  sessionCookie,
  unauthorized,
} from './security.js';
import { ruleSplit, servedRequests, TrafficSplits } from './traffic.js';

export interface ConsoleOptions {
  /** Where rules live (the CLI's `--dir` or `--consul` target). */
  readonly kv: KvStore;
  readonly storeDescription: string;
  /** The rule kinds the validator checks (the CLI's, as its host gave them: the mesh's `RULE_KINDS` from `meshlet/rule-kinds`). */
  readonly kinds: readonly CheckedRuleKind[];
  /** Where instances are listed; without one, services are those with rules. */
  readonly registry?: RegistryView | undefined;
  /**
   * The admin secret the instances were given (MESHLET_ADMIN_TOKEN). Never sent: each instance
   * gets its own token derived from it (AdminClient).
   */
  readonly adminToken?: string | undefined;
  /** Per admin endpoint. Default 2,000 ms. */
  readonly adminTimeoutMs?: number;
  /** The login token; default 24 random bytes, printed at start. At least 16 characters. */
  readonly token?: string | undefined;
  /** Default 127.0.0.1. */
  readonly host?: string;
  /** Default 7070; 0 picks a free port. */
  readonly port?: number;
  /**
   * Extra `host[:port]` names the console answers to (the Host header): the machine's name or
   * address when it listens beyond loopback, a proxy's name.
   */
  readonly allowedHosts?: readonly string[];
  /**
   * Origins the console's page is served from besides its own `http://` ones, e.g.
   * `https://console.example.com` behind a TLS proxy: logins and changes are accepted from
   * them (the Origin header), and their host is answered to. A `host` beyond loopback needs
   * this or `allowedHosts`.
   */
  readonly publicOrigins?: readonly string[];
  /** Trace logs (OTLP JSON Lines) the Explain page reads. */
  readonly traceLogs?: readonly string[];
  /** Store sections no kind knows (the CLI's --allow-unknown). Default false. */
  readonly allowUnknown?: boolean;
  readonly clock?: Clock;
  readonly logger?: Logger;
}

export interface RunningConsole {
  readonly url: string;
  readonly token: string;
  readonly server: Server;
  close(): Promise<void>;
}

/** Request bodies are JSON of at most this many bytes (a rule document is at most 128,000 bytes). */
export const MAX_BODY_BYTES = 640 * 1024;
/** Instances asked for their status per page refresh, at most. */
export const MAX_INSTANCES_POLLED = 200;
/** Services the services page lists, at most (the first by name); the answer counts the rest. */
export const MAX_SERVICES_LISTED = 1_000;
/** Registry and store reads the console makes at once, over all pages (Consul refuses many connections from one client). */
export const STORE_READS_AT_ONCE = 16;
/** History versions per page (the newest first come with the service; older ones with `before`). */
export const HISTORY_PAGE = 50;
/** Breakers, and rule documents, shown per instance; the rest are counted. */
export const MAX_INSTANCE_ENTRIES = 50;
/** Breakers and rule documents shown in one answer over all its instances; past it, instances show counts only. */
export const MAX_ANSWER_ENTRIES = 2_000;
/** Names and texts an instance's status gives are cut to this many characters. */
const MAX_STATUS_TEXT = 200;
/** Log codes a request can cause, throttled to one line per code per minute. */
const PER_REQUEST_CONSOLE_CODES = ['MESHLET_CONSOLE_FAILURE', 'MESHLET_CONSOLE_LOGIN_REFUSED'];
/**
 * Services the topology page polls and shows, at most: the first by name. Calls to any other
 * service (not registered, or past this bound) are left out and counted, up to MAX_SERVICES_LISTED names.
 */
export const MAX_TOPOLOGY_SERVICES = 100;
/** Rule names the limits page sums and follows per service, at most (a section's rules are bounded at 1,000). */
export const MAX_LIMIT_RULES = 1_000;
const BREAKER_SHADOW_KEYS = ['wouldOpen', 'wouldReject', 'wouldExclude', 'wouldTimeOut'] as const;
type BreakerShadowKey = (typeof BREAKER_SHADOW_KEYS)[number];
/** A counter from an admin status (JSON from another process): a finite, non-negative number, else 0. */
const count = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : 0);
/** A field of an admin status that should be an object, or undefined. */
const objectOf = (v: unknown): Record<string, unknown> | undefined =>
  typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
/** A field of an admin status that should be a list, or none. */
const listOf = (v: unknown): readonly unknown[] => (Array.isArray(v) ? v : []);
/** A field of an admin status that should be a string: cut to MAX_STATUS_TEXT, or null. */
const textOf = (v: unknown): string | null => (typeof v === 'string' ? v.slice(0, MAX_STATUS_TEXT) : null);
/** Author names are kept to this many characters. */
const CONSOLE_MAX_AUTHOR_LENGTH = 100;

const STATIC: Readonly<Record<string, { file: string; type: string }>> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/console.js': { file: 'console.js', type: 'text/javascript; charset=utf-8' },
  '/console.css': { file: 'console.css', type: 'text/css; charset=utf-8' },
};

const SECURITY_HEADERS = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};

/**
 * Starts the console: a node:http server with a few static files and a JSON API. Reads
 * need a session (a login with the token); every POST also needs the session's CSRF
 * header and the console's own Origin. Resolves once it listens.
 */
export async function startConsole(options: ConsoleOptions): Promise<RunningConsole> {
  const clock = options.clock ?? systemClock;
  // Failures and refused logins happen per request: at most one line per code per minute,
  // with a count. Changes (MESHLET_CONSOLE_CHANGE) are the audit trail: every one is written.
  const logger = throttledLogger(options.logger ?? silentLogger, { clock, codes: PER_REQUEST_CONSOLE_CODES });
  const token = options.token ?? randomBytes(24).toString('base64url');
  const sessions = new Sessions({ token, clock });
  const throttle = new LoginThrottle(clock);
  const ttlMs = 12 * 3600_000;
  const repo = new RuleRepository({
    kv: options.kv,
    kinds: options.kinds.map((k) => k.kind),
    clock,
    logger,
    unknownSections: options.allowUnknown ? 'keep' : 'refuse',
  });
  const splits = new TrafficSplits();
  const counters = new CounterHistory();
  const publicDir = new URL('../../public/', import.meta.url);
  const host = options.host ?? '127.0.0.1';
  const allowed = new Set<string>((options.allowedHosts ?? []).map((h, k) => hostName(h, `allowedHosts[${k}]`)));
  const origins = new Set<string>();
  (options.publicOrigins ?? []).forEach((o, k) => {
    const u = publicOrigin(o, `publicOrigins[${k}]`);
    origins.add(u.origin);
    allowed.add(u.host);
  });
  if (!isLoopback(host) && allowed.size === 0) {
    throw badOption(
      'host',
      `${host} is reachable beyond this machine, and browsers there name it in ways the console cannot know: give the names it answers to, allowedHosts (--allowed-host <host[:port]>) or, behind a TLS proxy, publicOrigins (--public-origin <https://name>)`,
    );
  }

  const check = (text: string, service?: string) =>
    checkRuleDocument(text, options.kinds, { allowUnknown: options.allowUnknown === true, schemas: true }, service);

  // Shared by every page and poll: one page's services, however many, cannot flood the registry.
  const storeReads = new Slots(STORE_READS_AT_ONCE);

  async function instancesOf(service: string): Promise<readonly Instance[]> {
    const registry = options.registry;
    if (!registry) return [];
    return (await storeReads.run(() => registry.instances(service))).slice(0, MAX_INSTANCES_POLLED);
  }

  /**
   * One for the console (made now, so a bad adminTimeoutMs is refused at start): every
   * page's admin fetches, however many tabs poll, share its slots (ADMIN_CONCURRENCY).
   */
  const adminClient = new AdminClient({ token: options.adminToken, timeoutMs: options.adminTimeoutMs ?? 2_000 });

  async function metricsOf(instance: Instance): Promise<number | undefined> {
    const text = await adminClient.metricsText(instance);
    return text === undefined ? undefined : servedRequests(text);
  }

  async function serviceNames(): Promise<string[]> {
    const names = new Set<string>();
    if (options.registry) for (const n of await options.registry.services()) names.add(n);
    for (const e of await options.kv.list(RULES_PREFIX)) {
      const name = e.key.slice(RULES_PREFIX.length);
      if (SERVICE_NAME.test(name)) names.add(name);
    }
    return [...names].sort();
  }

  /**
   * The breakers of calls to `service`, from every caller's admin status: what happened
   * (breakers opened, calls rejected) beside what its `breaker` section in shadow mode
   * would have done. Callers: every service's instances, bounded as the topology page's.
   */
  async function breakersAsCalled(service: string) {
    const names = (await serviceNames()).slice(0, MAX_TOPOLOGY_SERVICES);
    const out = { callers: 0, opened: 0, rejected: 0, shadow: null as null | Record<BreakerShadowKey, number> };
    await Promise.all(
      names.map(async (caller) => {
        const statuses = await Promise.all((await instancesOf(caller)).map((i) => adminClient.status(i)));
        for (const a of statuses) {
          if (!a.ok) continue;
          let calls = false;
          for (const entry of listOf(a.status.breakers)) {
            const b = objectOf(entry);
            if (objectOf(b?.breaker)?.service !== service) continue;
            calls = true;
            out.opened += count(b?.opened);
            out.rejected += count(b?.rejected);
          }
          for (const entry of listOf(a.status.breakerShadow)) {
            const sh = objectOf(entry);
            if (sh?.service !== service) continue;
            calls = true;
            out.shadow ??= { wouldOpen: 0, wouldReject: 0, wouldExclude: 0, wouldTimeOut: 0 };
            for (const k of BREAKER_SHADOW_KEYS) out.shadow[k] += count(sh[k]);
          }
          if (calls) out.callers++;
        }
      }),
    );
    return out;
  }

  /**
   * Up to HISTORY_PAGE versions of a service's history, newest last: the newest ones, or those
   * before version `before`; with how many older ones there are. No documents and no diffs
   * (GET /api/diff gives one): the page is small however large and long the history.
   */
  async function historyPage(service: string, before: number | undefined) {
    const all = await repo.history(service);
    const end = before === undefined ? all.length : all.findIndex((v) => v.version >= before);
    const upTo = end === -1 ? all.length : end;
    const start = Math.max(0, upTo - HISTORY_PAGE);
    return {
      history: all.slice(start, upTo).map((v) => ({
        version: v.version,
        at: v.at,
        author: v.author,
        reason: v.reason ?? '',
        action: v.action,
        restored: v.restored ?? null,
      })),
      olderVersions: start,
    };
  }

  /** An optional store revision: undefined when absent. */
  function revisionParam(url: URL, name: string): number | undefined {
    const raw = url.searchParams.get(name);
    if (raw === null) return undefined;
    const v = Number(raw);
    if (raw === '' || !Number.isSafeInteger(v) || v < 0)
      throw new ConsoleError(400, 'MESHLET_CONSOLE_BAD_REQUEST', `${name}: a store revision`, name);
    return v;
  }

  function versionParam(url: URL, name: string): number {
    const v = Number(url.searchParams.get(name) ?? '');
    if (!Number.isSafeInteger(v) || v < 1 || v > MAX_RULE_VERSION)
      throw new ConsoleError(400, 'MESHLET_CONSOLE_BAD_REQUEST', `${name}: a version number`, name);
    return v;
  }

  function serviceParam(url: URL): string {
    const name = url.searchParams.get('service') ?? '';
    if (!SERVICE_NAME.test(name)) throw new ConsoleError(400, 'MESHLET_CONSOLE_BAD_REQUEST', 'service: not a service name', 'service');
    return name;
  }

  const routes: Record<string, (req: IncomingMessage, url: URL, session: Session, body: Record<string, unknown>) => Promise<unknown>> = {
    'GET /api/session': async (_req, _url, s) => ({ author: s.author, csrf: s.csrf, store: options.storeDescription }),

    'GET /api/services': async () => {
      const names = await serviceNames();
      const listed = names.slice(0, MAX_SERVICES_LISTED);
      return {
        store: options.storeDescription,
        registry: options.registry?.description ?? null,
        notListed: names.length - listed.length,
        services: await Promise.all(
          listed.map(async (name) => {
            const [all, current] = await Promise.all([instancesOf(name), storeReads.run(() => repo.current(name))]);
            return {
              name,
              instances: all.length,
              passing: all.filter((i) => i.health === 'passing').length,
              versions: [...new Set(all.map((i) => i.metadata[MetaKey.version] ?? '-'))].sort(),
              revision: current.revision,
            };
          }),
        ),
      };
    },

    // The live tabs poll this every 2 s with `historyAt`, the rules revision of the history
    // they show: the history (every version, read whole from the store) is read again only
    // when the rules changed since, and is left out of the answer otherwise.
    'GET /api/service': async (_req, url) => {
      const service = serviceParam(url);
      const historyAt = revisionParam(url, 'historyAt');
      const [list, current] = await Promise.all([instancesOf(service), repo.current(service)]);
      // Read after the rules: a version written since changes their revision, so the next poll reads it.
      const [admin, served, history] = await Promise.all([
        Promise.all(list.map((i) => adminClient.status(i))),
        Promise.all(list.map((i) => metricsOf(i))),
        historyAt === current.revision ? undefined : historyPage(service, undefined),
      ]);
      const live = splits.observe(
        service,
        current.revision,
        clock.now(),
        list.map((instance, k) => ({ instance, served: served[k] })),
      );
      const budget = { entries: MAX_ANSWER_ENTRIES };
      return {
        service,
        instances: list.map((i, k) => instanceView(i, admin[k] as AdminResult, budget)),
        rules: { text: current.text ?? null, revision: current.revision, sections: sectionsOf(current.text) },
        kinds: options.kinds.map((k) => k.kind.name),
        split: { rules: ruleSplit(current.text), live },
        ...history,
      };
    },

    // Older history, a page at a time: the versions before `before`, newest last.
    'GET /api/history': async (_req, url) => historyPage(serviceParam(url), versionParam(url, 'before')),

    // One version's change against the version before it, when the page asks for it.
    'GET /api/diff': async (_req, url) => {
      const service = serviceParam(url);
      const version = versionParam(url, 'version');
      const history = await repo.history(service);
      const k = history.findIndex((v) => v.version === version);
      const v = history[k];
      if (!v) throw new ConsoleError(404, 'MESHLET_CONSOLE_NOT_FOUND', `${service} has no version ${version}`, 'version');
      const previous = history[k - 1];
      return {
        version,
        diff: unifiedDiff(canonicalDocument(previous?.document ?? undefined), canonicalDocument(v.document ?? undefined), {
          from: `version ${previous?.version ?? 0}`,
          to: `version ${v.version}`,
        }),
      };
    },

    'GET /api/topology': async () => {
      const known = await serviceNames();
      const names = known.slice(0, MAX_TOPOLOGY_SERVICES);
      const shown = new Set(names);
      // Called services not shown (not registered, or past the bound): counted, up to a bound.
      const calledNotShown = new Set<string>();
      const now = clock.now();
      const edges = new Map<string, { from: string; to: string; requests: number; errors: number }>();
      let measured = 0;
      let instances = 0;
      await Promise.all(
        names.map(async (from) => {
          const list = await instancesOf(from);
          instances += list.length;
          for (const text of await Promise.all(list.map((i) => adminClient.metricsText(i)))) {
            if (text === undefined) continue;
            measured++;
            for (const sample of parsePrometheus(text, ['meshlet_client_'])) {
              const isRequests = sample.name === 'meshlet_client_requests_total';
              if (!isRequests && sample.name !== 'meshlet_client_errors_total') continue;
              const to = sample.labels.service ?? '';
              // Only services shown: an instance's metrics name what they like, and would
              // otherwise make the graph (and the browser drawing it) as large as they say.
              if (!shown.has(to)) {
                if (calledNotShown.size < MAX_SERVICES_LISTED) calledNotShown.add(to.slice(0, MAX_STATUS_TEXT));
                continue;
              }
              const key = `${from}>${to}`;
              let e = edges.get(key);
              if (!e) {
                e = { from, to, requests: 0, errors: 0 };
                edges.set(key, e);
              }
              if (isRequests) e.requests += sample.value;
              else e.errors += sample.value;
            }
          }
        }),
      );
      return {
        services: names,
        notShown: { services: known.length - names.length, called: calledNotShown.size },
        measured,
        instances,
        edges: [...edges.values()]
          .sort((a, b) => (a.from + a.to < b.from + b.to ? -1 : 1))
          .map((e) => {
            const rk = `edge:${e.from}>${e.to}:requests`;
            const ek = `edge:${e.from}>${e.to}:errors`;
            counters.record(rk, now, e.requests);
            counters.record(ek, now, e.errors);
            const lastRequests = counters.steps(rk).at(-1)?.delta ?? 0;
            const lastErrors = counters.steps(ek).at(-1)?.delta ?? 0;
            return {
              ...e,
              rate: counters.rate(rk) ?? null,
              errorRate: lastRequests > 0 ? lastErrors / lastRequests : e.requests > 0 ? e.errors / e.requests : 0,
            };
          }),
      };
    },

    'GET /api/limits': async (_req, url) => {
      const service = serviceParam(url);
      const [list, current] = await Promise.all([instancesOf(service), repo.current(service)]);
      const admin = await Promise.all(list.map((i) => adminClient.status(i)));
      const now = clock.now();
      let allowed = 0;
      let refused = 0;
      let shadowRefused = 0;
      const shadow = shadowCounts(undefined);
      const rows = list.map((i, k) => {
        const a = admin[k] as AdminResult;
        const l = a.ok ? objectOf(a.status.limiter) : undefined;
        if (l) {
          allowed += count(l.allowed);
          refused += count(l.refused);
          shadowRefused += count(l.shadowRefused);
        }
        const own = a.ok ? shadowCounts(objectOf(a.status.conditions) as Record<string, number> | undefined) : undefined;
        if (own) for (const kind of SHADOW_KINDS) shadow[kind] += own[kind];
        return {
          id: i.id,
          version: i.metadata[MetaKey.version] ?? null,
          admin: a.ok ? 'ok' : a.reason,
          allowed: l ? count(l.allowed) : null,
          refused: l ? count(l.refused) : null,
          degraded: l?.degraded === true,
          inFlight: typeof l?.inFlight === 'number' ? count(l.inFlight) : null,
          shadowRefused: typeof l?.shadowRefused === 'number' ? count(l.shadowRefused) : null,
          shadow: own ?? null,
        };
      });
      counters.record(`limit:${service}:allowed`, now, allowed);
      counters.record(`limit:${service}:refused`, now, refused);
      counters.record(`limit:${service}:shadow`, now, shadowRefused);
      // Per rule, summed over the instances that report it (instances on another revision
      // may name other rules): bounded by MAX_LIMIT_RULES names.
      const perRule = new Map<string, { allowed: number; refused: number; shadowRefused: number }>();
      for (const a of admin) {
        for (const entry of listOf(a.ok ? objectOf(a.status.limiter)?.rules : undefined)) {
          const r = objectOf(entry);
          const name = textOf(r?.name);
          if (r === undefined || name === null) continue;
          let sum = perRule.get(name);
          if (!sum) {
            if (perRule.size >= MAX_LIMIT_RULES) continue;
            sum = { allowed: 0, refused: 0, shadowRefused: 0 };
            perRule.set(name, sum);
          }
          sum.allowed += count(r.allowed);
          sum.refused += count(r.refused);
          sum.shadowRefused += count(r.shadowRefused);
        }
      }
      const byRule = [...perRule].map(([name, sum]) => {
        const key = `limit:${service}:rule:${name}`;
        counters.record(`${key}:allowed`, now, sum.allowed);
        counters.record(`${key}:refused`, now, sum.refused);
        counters.record(`${key}:shadow`, now, sum.shadowRefused);
        return {
          name,
          ...sum,
          over: {
            allowed: counters.steps(`${key}:allowed`),
            refused: counters.steps(`${key}:refused`),
            shadow: counters.steps(`${key}:shadow`),
          },
        };
      });
      // Each instance's adaptive limit per destination it calls (`ratelimit.outboundAdaptive`),
      // bounded like the per-rule counts.
      const outbound: unknown[] = [];
      list.forEach((i, k) => {
        const a = admin[k] as AdminResult;
        for (const entry of listOf(a.ok ? a.status.outboundAdaptive : undefined)) {
          const o = objectOf(entry);
          const to = textOf(o?.service);
          if (o === undefined || to === null || outbound.length >= MAX_LIMIT_RULES) continue;
          const key = `outbound:${i.id}>${to}:refused`;
          counters.record(key, now, count(o.refused));
          outbound.push({
            instance: i.id,
            service: to,
            limit: count(o.limit),
            inFlight: count(o.inFlight),
            admitted: count(o.admitted),
            refused: count(o.refused),
            probing: o.mode === 'probe',
            over: { refused: counters.steps(key) },
          });
        }
      });
      const section = sectionsOf(current.text).ratelimit as { rules?: unknown[]; mode?: unknown } | undefined;
      return {
        service,
        revision: current.revision,
        rules: (Array.isArray(section?.rules) ? section.rules : []).map((r) => JSON.stringify(r)),
        instances: rows,
        mode: section?.mode === 'shadow' ? 'shadow' : 'enforce',
        totals: { allowed, refused, shadowRefused, shadow },
        byRule,
        breakers: await breakersAsCalled(service),
        outbound,
        over: {
          allowed: counters.steps(`limit:${service}:allowed`),
          refused: counters.steps(`limit:${service}:refused`),
          shadow: counters.steps(`limit:${service}:shadow`),
        },
      };
    },

    'GET /api/explain': async (_req, url) => {
      const files = options.traceLogs ?? [];
      if (files.length === 0)
        throw new ConsoleError(404, 'MESHLET_CONSOLE_NO_TRACE_LOG', 'no trace log: start the console with --trace-log <file>');
      const trace = url.searchParams.get('trace') ?? '';
      if (!/^[0-9a-f]{32}$/i.test(trace)) throw new ConsoleError(400, 'MESHLET_CONSOLE_BAD_REQUEST', 'trace: 32 hex digits', 'trace');
      try {
        // Each revision a span names, told as its version (author, reason) and each rule's condition, from the store's history.
        return { trace: trace.toLowerCase(), ...(await explainFromLogs(trace, files, (svc, revision) => repo.versionAt(svc, revision))) };
      } catch (err) {
        if ((err as { code?: unknown }).code === 'MESHLET_CLI_NOT_FOUND')
          throw new ConsoleError(404, 'MESHLET_CONSOLE_NOT_FOUND', (err as Error).message);
        throw err;
      }
    },

    'POST /api/validate': async (_req, _url, _s, body) => {
      const { text, service } = documentBody(body);
      try {
        const checked = await check(text, service);
        return { ok: true, sections: [...checked.document.sections.keys()] };
      } catch (err) {
        if (err instanceof RuleValidationError) return { ok: false, error: errorBody(err) };
        throw err;
      }
    },

    'POST /api/diff': async (_req, _url, _s, body) => {
      const { text, service } = documentBody(body);
      const current = await repo.current(service);
      return {
        revision: current.revision,
        diff: unifiedDiff(canonicalDocument(current.text), canonicalDocument(text), {
          from: `${service} in force (revision ${current.revision})`,
          to: 'this page',
        }),
      };
    },

    'POST /api/apply': async (_req, _url, s, body) => {
      const { text, service } = documentBody(body);
      const revision = numberField(body, 'revision');
      const reason = reasonField(body);
      await check(text, service);
      const before = await repo.current(service);
      const diff = unifiedDiff(canonicalDocument(before.text), canonicalDocument(text), {
        from: `revision ${before.revision}`,
        to: 'applied',
      });
      const v = await repo.apply(text, { author: s.author, ifRevision: revision, reason });
      logger.info('console: rules applied', {
        code: 'MESHLET_CONSOLE_CHANGE',
        service,
        version: v.version,
        author: s.author,
        reason,
        diff,
      });
      return { version: v.version, revision: (await repo.current(service)).revision, diff };
    },

    'POST /api/rollback': async (_req, _url, s, body) => {
      const service = stringField(body, 'service');
      if (!SERVICE_NAME.test(service)) throw new ConsoleError(400, 'MESHLET_CONSOLE_BAD_REQUEST', 'service: not a service name', 'service');
      const to = numberField(body, 'to');
      const revision = numberField(body, 'revision');
      const reason = reasonField(body);
      const v = await repo.rollback(service, { author: s.author, to, ifRevision: revision, reason });
      logger.info('console: rules rolled back', {
        code: 'MESHLET_CONSOLE_CHANGE',
        service,
        version: v.version,
        to,
        author: s.author,
        reason,
      });
      return { version: v.version, restored: v.restored, revision: (await repo.current(service)).revision };
    },

    'POST /api/logout': async (_req, _url, s) => {
      sessions.logout(s.id);
      return { ok: true };
    },
  };

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    checkHost(req, allowed);
    const url = new URL(req.url ?? '/', 'http://console.invalid');
    const method = req.method ?? 'GET';
    if (method === 'GET' && STATIC[url.pathname]) {
      const f = STATIC[url.pathname] as { file: string; type: string };
      const body = await readFile(new URL(f.file, publicDir));
      res.writeHead(200, { ...SECURITY_HEADERS, 'content-type': f.type, 'content-length': body.length });
      res.end(body);
      return;
    }
    if (method === 'GET' && url.pathname === '/favicon.ico') {
      res.writeHead(204, SECURITY_HEADERS);
      res.end();
      return;
    }
    if (method === 'POST' && url.pathname === '/api/login') {
      checkOrigin(req, allowed, origins);
      throttle.check();
      const body = await readJson(req);
      const given = typeof body.token === 'string' ? body.token : '';
      const author = typeof body.author === 'string' ? body.author.trim().slice(0, CONSOLE_MAX_AUTHOR_LENGTH) : '';
      if (author === '' || hasControlCharacter(author)) {
        throw new ConsoleError(400, 'MESHLET_CONSOLE_BAD_REQUEST', 'author: your name, recorded with every change', 'author');
      }
      const session = sessions.login(given, author);
      if (!session) {
        throttle.failed();
        throw new ConsoleError(401, 'MESHLET_CONSOLE_UNAUTHORIZED', 'token: not the console token', 'token');
      }
      logger.info('console: login', { code: 'MESHLET_CONSOLE_LOGIN', author });
      send(res, 200, { author: session.author, csrf: session.csrf }, { 'set-cookie': sessionCookie(session, ttlMs) });
      return;
    }
    const route = routes[`${method} ${url.pathname}`];
    if (!route) throw new ConsoleError(404, 'MESHLET_CONSOLE_NOT_FOUND', `${method} ${url.pathname}: no such page or API`);
    const session = sessions.of(req);
    if (method === 'POST') {
      // Origin first: a foreign page learns nothing, not even whether a session exists.
      checkOrigin(req, allowed, origins);
      if (!session) throw unauthorized();
      checkCsrf(req, session);
    } else if (!session) throw unauthorized();
    const body = method === 'POST' ? await readJson(req) : {};
    const result = await route(req, url, session as Session, body);
    const extra: Record<string, string> = url.pathname === '/api/logout' ? { 'set-cookie': clearedCookie } : {};
    send(res, 200, result, extra);
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      const e = toConsoleError(err);
      if (e.status >= 500) logger.error('console: request failed', { code: e.code, error: (err as Error)?.message });
      else if (e.status === 401 && e.path === 'token') logger.warn('console: login refused', { code: 'MESHLET_CONSOLE_LOGIN_REFUSED' });
      send(res, e.status, { error: errorBody(e) });
    });
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 7070, host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const named = urlHost(host);
  allowed.add(`${named}:${port}`);
  if (isLoopback(host)) allowed.add(`localhost:${port}`);
  return {
    url: `http://${named}:${port}/`,
    token,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

const isLoopback = (host: string): boolean => host === '127.0.0.1' || host === '::1' || host === 'localhost';

/** `host[:port]` as a Host header names it, else MESHLET_BAD_OPTION naming `field`. */
function hostName(value: unknown, field: string): string {
  const u = typeof value === 'string' && value !== '' && !/[/\\?#@\s]/.test(value) ? URL.parse(`http://${value}`) : null;
  if (!u)
    throw badOption(field, `${JSON.stringify(value)} must be a host name or address, with a port if not 80 (e.g. console.internal:7070)`);
  return u.host;
}

/** An origin (`https://name[:port]`, or http), else MESHLET_BAD_OPTION naming `field`. */
function publicOrigin(value: unknown, field: string): URL {
  const u = typeof value === 'string' ? URL.parse(value) : null;
  if (!u || (u.protocol !== 'https:' && u.protocol !== 'http:') || u.username || u.password || u.pathname !== '/' || u.search || u.hash)
    throw badOption(field, `${JSON.stringify(value)} must be an origin the page is served from, e.g. https://console.example.com`);
  return u;
}

function instanceView(i: Instance, admin: AdminResult, budget: { entries: number }) {
  const m = i.metadata;
  const base = {
    id: i.id,
    address: `${i.address}:${i.port}`,
    health: i.health,
    zone: m[MetaKey.zone] ?? null,
    version: m[MetaKey.version] ?? null,
    lane: m[MetaKey.lane] ?? null,
    weight: m.weight ?? null,
    // Wire names of @meshlet/route's warm-up (REGISTERED_AT_META, BASE_WEIGHT_META).
    registeredAt: Number(m['registered-at']) || null,
    warmup: m['warmup-base-weight'] !== undefined ? `weight ${m.weight ?? '?'} of ${m['warmup-base-weight']}` : null,
  };
  if (!admin.ok) return { ...base, admin: { ok: false, reason: admin.reason } };
  // Another process's JSON: every field read for what it is, and bounded.
  const s = admin.status as Record<string, unknown>;
  const shown = (all: readonly unknown[]) => {
    const n = Math.min(all.length, MAX_INSTANCE_ENTRIES, budget.entries);
    budget.entries -= n;
    return all.slice(0, n);
  };
  const breakers = listOf(s.breakers);
  const rules = listOf(s.rules);
  const limiter = objectOf(s.limiter);
  const shownBreakers = shown(breakers).map((entry) => {
    const b = objectOf(entry);
    const at = objectOf(b?.breaker);
    const service = textOf(at?.service) ?? '?';
    return {
      name:
        at?.level === 'instance'
          ? `${service}[${textOf(at.instance) ?? ''}]`
          : at?.level === 'api'
            ? `${service} ${textOf(at.api) ?? ''}`
            : service,
      state: textOf(b?.state) ?? 'unknown',
      calls: count(b?.calls),
      failures: count(b?.failures),
    };
  });
  const shownRules = shown(rules).map((entry) => {
    const r = objectOf(entry);
    const lastError = objectOf(r?.lastError);
    return {
      service: textOf(r?.service) ?? '?',
      revision: count(r?.revision),
      lastError: lastError ? { path: textOf(lastError.path) ?? '', message: textOf(lastError.message) ?? '' } : null,
    };
  });
  return {
    ...base,
    admin: {
      ok: true,
      degraded: Object.entries(objectOf(s.degraded) ?? {})
        .filter(([, on]) => on === true)
        .slice(0, MAX_INSTANCE_ENTRIES)
        .map(([k]) => k.slice(0, MAX_STATUS_TEXT)),
      breakers: shownBreakers,
      breakersNotShown: breakers.length - shownBreakers.length,
      inFlight: typeof limiter?.inFlight === 'number' ? count(limiter.inFlight) : null,
      limiter: limiter ? { allowed: count(limiter.allowed), refused: count(limiter.refused) } : null,
      rules: shownRules,
      rulesNotShown: rules.length - shownRules.length,
    },
  };
}

function sectionsOf(text: string | undefined): Record<string, unknown> {
  if (text === undefined) return {};
  try {
    const { service: _s, ...rest } = JSON.parse(text) as Record<string, unknown>;
    return rest;
  } catch {
    return {};
  }
}

function toConsoleError(err: unknown): ConsoleError {
  if (err instanceof ConsoleError) return err;
  if (err instanceof RuleValidationError) return new ConsoleError(422, err.code, err.message, err.path);
  if (err instanceof RuleConflictError)
    return new ConsoleError(409, err.code, 'the rules changed since this page read them; reload to see the change, then apply again');
  const e = err as { code?: unknown; message?: unknown };
  if (e?.code === 'MESHLET_NO_RULE_VERSION') return new ConsoleError(404, e.code, String(e.message));
  return new ConsoleError(500, 'MESHLET_CONSOLE_FAILURE', `the console could not do that: ${String(e?.message ?? err)}`);
}

function errorBody(err: { code: string; message: string; path?: string | undefined }) {
  return { code: err.code, message: err.message, ...(err.path !== undefined ? { path: err.path } : {}) };
}

function send(res: ServerResponse, status: number, body: unknown, extra: Record<string, string> = {}): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, {
    ...SECURITY_HEADERS,
    ...extra,
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const type = req.headers['content-type'] ?? '';
  if (!/^application\/json\b/i.test(type))
    throw new ConsoleError(415, 'MESHLET_CONSOLE_BAD_REQUEST', 'send JSON (content-type: application/json)');
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new ConsoleError(413, 'MESHLET_CONSOLE_TOO_LARGE', `request body over ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk as Buffer);
  }
  try {
    const v = JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
    if (v && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {
    // below
  }
  throw new ConsoleError(400, 'MESHLET_CONSOLE_BAD_REQUEST', 'the body must be a JSON object');
}

function stringField(body: Record<string, unknown>, name: string): string {
  const v = body[name];
  if (typeof v !== 'string') throw new ConsoleError(400, 'MESHLET_CONSOLE_BAD_REQUEST', `${name}: required (a string)`, name);
  return v;
}

function numberField(body: Record<string, unknown>, name: string): number {
  const v = body[name];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0)
    throw new ConsoleError(400, 'MESHLET_CONSOLE_BAD_REQUEST', `${name}: required (a whole number)`, name);
  return v;
}

/** Why: required for every change made in the console. */
function reasonField(body: Record<string, unknown>): string {
  const v = typeof body.reason === 'string' ? body.reason.trim() : '';
  if (v === '') throw new ConsoleError(400, 'MESHLET_CONSOLE_BAD_REQUEST', 'reason: say why (recorded in the history)', 'reason');
  return v;
}

function documentBody(body: Record<string, unknown>): { text: string; service: string } {
  const service = stringField(body, 'service');
  if (!SERVICE_NAME.test(service)) throw new ConsoleError(400, 'MESHLET_CONSOLE_BAD_REQUEST', 'service: not a service name', 'service');
  return { text: stringField(body, 'text'), service };
}

export { CSRF_HEADER };

/** The rule kinds with a shadow mode, each counted under MESHLET_<KIND>_SHADOW in an instance's conditions. */
export const SHADOW_KINDS = ['route', 'ratelimit', 'auth', 'breaker', 'fault'] as const;

/**
 * Shadow decisions an instance counted, by kind, from its admin status's conditions (every
 * one is counted there, though logged at most once per interval); zeros when it has none.
 */
export function shadowCounts(conditions: Readonly<Record<string, number>> | undefined): Record<(typeof SHADOW_KINDS)[number], number> {
  const out = { route: 0, ratelimit: 0, auth: 0, breaker: 0, fault: 0 };
  for (const kind of SHADOW_KINDS) {
    const n = conditions?.[`MESHLET_${kind.toUpperCase()}_SHADOW`];
    if (typeof n === 'number' && Number.isFinite(n) && n >= 0) out[kind] = n;
  }
  return out;
}
