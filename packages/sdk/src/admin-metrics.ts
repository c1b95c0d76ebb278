import { escapeLabel } from '@meshlet/trace';
import type { AdminBreakerShadowStatus, AdminHedgeStatus, AdminOutboundAdaptiveStatus, AdminStatus } from './admin-handler.js';

/**
 * The admin status as Prometheus metrics: what runs degraded (registry, Redis), rule
 * documents in force and refused, breaker states, limiter counters. The endpoint serves it
 * at `<admin path>/metrics`, so an outage that the app survives on its last known state is
 * still a number an alert can watch.
 */
export function renderStatusMetrics(status: AdminStatus): string {
  const out: string[] = [];
  const family = (name: string, type: 'gauge' | 'counter', help: string) => out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
  const labels = (pairs: Readonly<Record<string, string | undefined>>) =>
    Object.entries(pairs)
      .filter((e): e is [string, string] => e[1] !== undefined)
      .map(([k, v]) => `${k}="${escapeLabel(v)}"`)
      .join(',');

  /** Families with one sample per called service (a row's value undefined: no sample). */
  const byService = <T extends { readonly service: string }>(
    rows: readonly T[],
    families: readonly [string, 'gauge' | 'counter', (row: T) => number | undefined, string][],
  ) => {
    for (const [name, type, value, help] of families) {
      family(name, type, help);
      for (const row of rows) {
        const v = value(row);
        if (v !== undefined) out.push(`${name}{${labels({ service: row.service })}} ${v}`);
      }
    }
  };

  family(
    'meshlet_degraded',
    'gauge',
    'Running on a fallback (1): the last known registry state, the last rules read (kv), local shares of distributed limits.',
  );
  for (const [what, on] of Object.entries(status.degraded)) out.push(`meshlet_degraded{${labels({ what })}} ${on ? 1 : 0}`);
  if (status.registry.errors !== undefined) {
    family('meshlet_registry_errors_total', 'counter', 'Registry requests that failed.');
    out.push(`meshlet_registry_errors_total ${status.registry.errors}`);
  }
  if (status.registry.snapshotErrors !== undefined) {
    family(
      'meshlet_registry_snapshot_errors_total',
      'counter',
      'Registry snapshot files that could not be read (corrupt, unreadable) or written.',
    );
    out.push(`meshlet_registry_snapshot_errors_total ${status.registry.snapshotErrors}`);
  }

  if (status.conditions) {
    family(
      'meshlet_conditions_total',
      'counter',
      'Coded conditions (bad headers, dropped tags, degraded states) by code, logged or throttled.',
    );
    for (const [code, n] of Object.entries(status.conditions)) out.push(`meshlet_conditions_total{${labels({ code })}} ${n}`);
  }

  if (status.identity) {
    family(
      'meshlet_identity_checks_total',
      'counter',
      'Inbound identity headers checked, by outcome (anything but verified: the caller was anonymous).',
    );
    for (const [outcome, n] of Object.entries(status.identity)) out.push(`meshlet_identity_checks_total{${labels({ outcome })}} ${n}`);
  }

  family('meshlet_rules_revision', 'gauge', 'Store revision of the rule document in force, by service (0: none).');
  for (const r of status.rules) out.push(`meshlet_rules_revision{${labels({ service: r.service })}} ${r.revision}`);
  family('meshlet_rules_rejected_total', 'counter', 'Rule documents refused (the last good ones stayed in force), by service.');
  for (const r of status.rules) out.push(`meshlet_rules_rejected_total{${labels({ service: r.service })}} ${r.rejected}`);

  // Each family's samples right after its HELP and TYPE, as the text format wants.
  const breakers = status.breakers.map((b) => ({
    b,
    l: labels({ level: b.breaker.level, service: b.breaker.service, api: b.breaker.api, instance: b.breaker.instance }),
  }));
  family('meshlet_breaker_open', 'gauge', 'Breaker state, by breaker: 1 open, 0.5 half-open, 0 closed.');
  for (const { b, l } of breakers) out.push(`meshlet_breaker_open{${l}} ${b.state === 'open' ? 1 : b.state === 'half-open' ? 0.5 : 0}`);
  family('meshlet_breaker_opened_total', 'counter', 'Times a breaker opened.');
  for (const { b, l } of breakers) out.push(`meshlet_breaker_opened_total{${l}} ${b.opened}`);

  if (status.breakerShadow && status.breakerShadow.length > 0) {
    // Beside meshlet_breaker_opened_total and the breakers' rejections: what a section in
    // shadow mode would have done, where the safe defaults governed instead.
    const shadow: [string, keyof Omit<AdminBreakerShadowStatus, 'service'>, string][] = [
      [
        'meshlet_breaker_shadow_rejected_total',
        'wouldReject',
        'Calls a breaker section in shadow mode would have rejected, by called service.',
      ],
      [
        'meshlet_breaker_shadow_opened_total',
        'wouldOpen',
        'Breakers of a section in shadow mode that would have opened, by called service.',
      ],
      [
        'meshlet_breaker_shadow_excluded_total',
        'wouldExclude',
        'Attempts sent to an instance a section in shadow mode would have kept out of routing, by called service.',
      ],
      [
        'meshlet_breaker_shadow_timed_out_total',
        'wouldTimeOut',
        "Attempts that outlived a shadow-mode section's timeoutMs, by called service.",
      ],
    ];
    for (const [name, key, help] of shadow) {
      family(name, 'counter', help);
      for (const b of status.breakerShadow) out.push(`${name}{${labels({ service: b.service })}} ${b[key]}`);
    }
  }

  if (status.retries && status.retries.length > 0) {
    family(
      'meshlet_retries_total',
      'counter',
      'Retries sent, by called service and reason (not-sent, broken, stale, other, 5xx…, answer).',
    );
    for (const r of status.retries)
      for (const [reason, n] of Object.entries(r.sent)) out.push(`meshlet_retries_total{${labels({ service: r.service, reason })}} ${n}`);
    family(
      'meshlet_retries_budget_refused_total',
      'counter',
      'Retries the retry budget refused (the failure went to the caller), by called service and reason.',
    );
    for (const r of status.retries)
      for (const [reason, n] of Object.entries(r.budgetRefused))
        out.push(`meshlet_retries_budget_refused_total{${labels({ service: r.service, reason })}} ${n}`);
  }

  if (status.hedges && status.hedges.length > 0) {
    const hedges = status.hedges;
    const perService: [string, 'gauge' | 'counter', (h: AdminHedgeStatus) => number | undefined, string][] = [
      [
        'meshlet_hedge_eligible_total',
        'counter',
        (h) => h.eligible,
        'Calls that could have hedged (idempotent, a delay known), by called service.',
      ],
      ['meshlet_hedges_total', 'counter', (h) => h.hedges, 'Second attempts sent by hedging, by called service.'],
      ['meshlet_hedge_wins_total', 'counter', (h) => h.wins, 'Hedged calls the second attempt won, by called service.'],
      ['meshlet_hedges_budget_refused_total', 'counter', (h) => h.denied, 'Hedges the retry budget refused, by called service.'],
      [
        'meshlet_hedge_delay_ms',
        'gauge',
        (h) => h.delayMs,
        'The hedge delay in force, ms, by called service (absent while a percentile has too few samples).',
      ],
    ];
    byService(hedges, perService);
  }

  const limiter = status.limiter;
  if (limiter) {
    const counters: [string, number, string][] = [
      ['meshlet_ratelimit_allowed_total', limiter.allowed, 'Inbound requests the limiter admitted.'],
      [
        'meshlet_ratelimit_refused_total',
        limiter.refused,
        'Inbound requests refused: by a rate limit rule (429) or the adaptive limit (503 or 429).',
      ],
      [
        'meshlet_ratelimit_redis_outages_total',
        limiter.outages,
        'Times Redis stopped answering (distributed limits fell back to local shares).',
      ],
      ['meshlet_ratelimit_degraded_decisions_total', limiter.degradedDecisions, 'Distributed-limit decisions made from local shares.'],
    ];
    for (const [name, value, help] of counters) {
      family(name, 'counter', help);
      out.push(`${name} ${value}`);
    }
    if (limiter.redisKeysOverflowed !== undefined) {
      family(
        'meshlet_ratelimit_redis_keys_overflowed_total',
        'counter',
        "Distributed-limit requests counted on their rule's overflow key: a new `by` value while the rule's Redis keys were at their bound.",
      );
      out.push(`meshlet_ratelimit_redis_keys_overflowed_total ${limiter.redisKeysOverflowed}`);
    }
    if (limiter.redisKeys !== undefined) {
      family('meshlet_ratelimit_redis_keys', 'gauge', 'Redis keys of distributed rules this instance has written and Redis still holds.');
      out.push(`meshlet_ratelimit_redis_keys ${limiter.redisKeys}`);
    }
    if (limiter.inFlight !== undefined) {
      family('meshlet_ratelimit_in_flight', 'gauge', 'Inbound requests holding a concurrency slot now.');
      out.push(`meshlet_ratelimit_in_flight ${limiter.inFlight}`);
    }
    if (limiter.shadowRefused !== undefined) {
      family(
        'meshlet_ratelimit_shadow_refused_total',
        'counter',
        'Requests admitted that a ratelimit section in shadow mode would have refused.',
      );
      out.push(`meshlet_ratelimit_shadow_refused_total ${limiter.shadowRefused}`);
    }
    if (limiter.rules && limiter.rules.length > 0) {
      const perRule: [string, 'allowed' | 'refused' | 'shadowRefused', string][] = [
        ['meshlet_ratelimit_rule_allowed_total', 'allowed', 'Inbound requests a rate limit rule matched and that were admitted, by rule.'],
        ['meshlet_ratelimit_rule_refused_total', 'refused', 'Inbound requests a rate limit rule refused, by rule.'],
        [
          'meshlet_ratelimit_rule_shadow_refused_total',
          'shadowRefused',
          'Inbound requests a rate limit rule in shadow mode would have refused (admitted), by rule.',
        ],
      ];
      for (const [name, key, help] of perRule) {
        family(name, 'counter', help);
        for (const r of limiter.rules) out.push(`${name}{${labels({ rule: r.name })}} ${r[key]}`);
      }
    }
    const adaptive = limiter.adaptive;
    if (adaptive) {
      const gauges: [string, number, string][] = [
        ['meshlet_adaptive_limit', adaptive.limit, 'Inbound requests the adaptive concurrency limit admits in flight now.'],
        ['meshlet_adaptive_in_flight', adaptive.inFlight, 'Inbound requests in flight under the adaptive limit.'],
        ['meshlet_adaptive_min_rtt_ms', adaptive.minRttMs, 'Minimum RTT the adaptive limit last measured at its floor, ms.'],
        ['meshlet_adaptive_sample_rtt_ms', adaptive.sampleRttMs, "The last window's RTT (quantile plus event-loop delay), ms."],
        ['meshlet_adaptive_event_loop_delay_ms', adaptive.eventLoopDelayMs, 'Event-loop delay read for the last window, ms.'],
        [
          'meshlet_adaptive_probing',
          adaptive.mode === 'probe' ? 1 : 0,
          '1 while the minimum RTT is measured (the limit pinned to its floor).',
        ],
      ];
      for (const [name, value, help] of gauges) {
        family(name, 'gauge', help);
        out.push(`${name} ${value}`);
      }
      family('meshlet_adaptive_admitted_total', 'counter', 'Inbound requests the adaptive limit admitted, by traffic class.');
      for (const c of adaptive.classes) out.push(`meshlet_adaptive_admitted_total{${labels({ class: c.name })}} ${c.admitted}`);
      family('meshlet_adaptive_refused_total', 'counter', 'Inbound requests the adaptive limit refused (load shed), by traffic class.');
      for (const c of adaptive.classes) out.push(`meshlet_adaptive_refused_total{${labels({ class: c.name })}} ${c.refused}`);
    }
  }
  const outbound = status.outboundAdaptive;
  if (outbound && outbound.length > 0) {
    const perService: [string, 'gauge' | 'counter', (a: AdminOutboundAdaptiveStatus) => number, string][] = [
      ['meshlet_outbound_adaptive_limit', 'gauge', (a) => a.limit, 'Calls to the destination its adaptive limit lets in flight now.'],
      ['meshlet_outbound_adaptive_in_flight', 'gauge', (a) => a.inFlight, 'Calls to the destination in flight under its adaptive limit.'],
      ['meshlet_outbound_adaptive_min_rtt_ms', 'gauge', (a) => a.minRttMs, "Minimum RTT of the destination's adaptive limit, ms."],
      ['meshlet_outbound_adaptive_admitted_total', 'counter', (a) => a.admitted, "Calls the destination's adaptive limit let through."],
      [
        'meshlet_outbound_adaptive_refused_total',
        'counter',
        (a) => a.refused,
        "Calls refused by the destination's adaptive limit (OutboundLimitError, MESHLET_OUTBOUND_LIMITED).",
      ],
    ];
    byService(outbound, perService);
  }
  return `${out.join('\n')}\n`;
}
