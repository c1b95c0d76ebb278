import { type Instance, MetaKey } from '@meshlet/core';

/**
 * Inbound requests an instance has served since it started, from its `/metrics` (the
 * tracing package's `meshlet_server_requests_total`, summed over callers and APIs). No
 * series yet means none served: the series appear with the first request.
 */
export function servedRequests(prometheusText: string): number {
  let total = 0;
  for (const line of prometheusText.split('\n')) {
    if (!line.startsWith('meshlet_server_requests_total{') && !line.startsWith('meshlet_server_requests_total ')) continue;
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (Number.isFinite(value)) total += value;
  }
  return total;
}

/** The split by version as the route section says it: per rule, and the default. */
export interface RuleSplit {
  readonly name: string;
  readonly when: string;
  readonly destinations: readonly { readonly group: string; readonly weight: number }[];
  /** A rule's `stickyBy`: the request tag whose value picks the group (a user stays in one). */
  readonly stickyBy?: string;
}

const groupLabel = (g: unknown): string =>
  g && typeof g === 'object'
    ? Object.entries(g as Record<string, unknown>)
        .map(([k, v]) => `${k}=${String(v)}`)
        .join(', ')
    : 'all';

const whenLabel = (when: unknown): string =>
  Array.isArray(when)
    ? when
        .map((c) => {
          const x = c as { tag?: unknown; op?: unknown; value?: unknown; values?: unknown };
          return `${String(x.tag)} ${String(x.op ?? 'equals')} ${JSON.stringify(x.value ?? x.values ?? '')}`;
        })
        .join(' and ')
    : 'always';

/** Reads a route section (already accepted by the validator) into rows to show. */
export function ruleSplit(documentText: string | undefined): RuleSplit[] {
  if (documentText === undefined) return [];
  let doc: { route?: { rules?: unknown[]; default?: unknown[] } };
  try {
    doc = JSON.parse(documentText) as typeof doc;
  } catch {
    return [];
  }
  const dests = (list: unknown) =>
    Array.isArray(list)
      ? list.map((d) => {
          const x = d as { group?: unknown; weight?: unknown };
          return { group: groupLabel(x.group), weight: typeof x.weight === 'number' ? x.weight : 100 };
        })
      : [];
  const out: RuleSplit[] = [];
  for (const [i, r] of (doc.route?.rules ?? []).entries()) {
    const x = r as { name?: unknown; when?: unknown; destinations?: unknown; stickyBy?: unknown };
    out.push({
      name: typeof x.name === 'string' ? x.name : `rule ${i + 1}`,
      when: whenLabel(x.when),
      destinations: dests(x.destinations),
      ...(typeof x.stickyBy === 'string' ? { stickyBy: x.stickyBy } : {}),
    });
  }
  if (doc.route?.default) out.push({ name: 'default', when: 'no rule matched', destinations: dests(doc.route.default) });
  return out;
}

interface Baseline {
  revision: number;
  since: number;
  readonly counts: Map<string, number>;
}

/** Traffic by version since the rules in force changed: what the instances served, from their metrics. */
export interface LiveSplit {
  readonly revision: number;
  /** When this console first saw that revision (epoch ms). */
  readonly since: number;
  readonly byVersion: readonly { readonly version: string; readonly requests: number }[];
  /** Instances whose metrics answered / all instances. */
  readonly measured: number;
  readonly instances: number;
}

/**
 * Per service, the instances' request counters when the console first saw the current
 * rule revision; the split is what each version served since. Bounded: services kept at
 * most `maxServices`, instances per service as many as the registry lists.
 */
export class TrafficSplits {
  readonly #baselines = new Map<string, Baseline>();
  readonly #max: number;
  constructor(maxServices = 1_000) {
    this.#max = maxServices;
  }

  observe(
    service: string,
    revision: number,
    now: number,
    samples: readonly { instance: Instance; served: number | undefined }[],
  ): LiveSplit {
    let base = this.#baselines.get(service);
    if (!base || base.revision !== revision) {
      if (!base && this.#baselines.size >= this.#max) {
        const oldest = this.#baselines.keys().next().value;
        if (oldest !== undefined) this.#baselines.delete(oldest);
      }
      base = { revision, since: now, counts: new Map() };
      for (const s of samples) if (s.served !== undefined) base.counts.set(s.instance.id, s.served);
      this.#baselines.set(service, base);
    }
    const byVersion = new Map<string, number>();
    let measured = 0;
    const present = new Set<string>();
    for (const s of samples) {
      const version = s.instance.metadata[MetaKey.version] ?? '-';
      if (!byVersion.has(version)) byVersion.set(version, 0);
      present.add(s.instance.id);
      if (s.served === undefined) continue;
      measured++;
      // An instance first seen after the change starts from its first sample; a restarted one from zero.
      const before = base.counts.get(s.instance.id);
      if (before === undefined) {
        base.counts.set(s.instance.id, s.served);
        continue;
      }
      const delta = s.served >= before ? s.served - before : s.served;
      if (s.served < before) base.counts.set(s.instance.id, 0);
      byVersion.set(version, (byVersion.get(version) ?? 0) + delta);
    }
    for (const id of base.counts.keys()) if (!present.has(id)) base.counts.delete(id);
    return {
      revision,
      since: base.since,
      byVersion: [...byVersion.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([version, requests]) => ({ version, requests })),
      measured,
      instances: samples.length,
    };
  }
}
