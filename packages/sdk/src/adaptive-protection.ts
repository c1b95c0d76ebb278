import {
  type AdaptiveSection,
  type EventLoopDelaySampler,
  eventLoopDelayMonitor,
  eventLoopUtilizationSampler,
  parseAdaptiveSection,
} from '@meshlet/ratelimit';

/**
 * The `ratelimit.adaptive` mesh option: `true` for every default, or the fields of a rule's
 * `ratelimit.adaptive` section (the same names, bounds and defaults). A service's rule
 * document, when it has the section, wins over the option.
 */
export type AdaptiveOption = true | Readonly<Record<string, unknown>>;

/**
 * The `ratelimit.outboundAdaptive` mesh option: an adaptive concurrency limit per
 * destination, on the caller's side. `true`: every destination, every default; else
 * `defaults` (the numbers of `ratelimit.adaptive`, without `status` and `classes`),
 * `services` (a destination's own numbers, or `false` for none) and `only` (limit only
 * these destinations). A call over its destination's limit is refused at once with
 * OutboundLimitError (`MESHLET_OUTBOUND_LIMITED`).
 */
export type OutboundAdaptiveOption =
  | true
  | {
      readonly defaults?: Readonly<Record<string, unknown>>;
      readonly services?: Readonly<Record<string, Readonly<Record<string, unknown>> | false>>;
      readonly only?: readonly string[];
    };

/** What the rate limiter needs for the adaptive limit, and the monitor to stop at shutdown. */
export interface AdaptiveProtection {
  readonly adaptive: AdaptiveSection | undefined;
  readonly eventLoopDelay: () => number;
  readonly eventLoopUtilization: () => number;
  close(): void;
}

/**
 * Validates the option (a RuleValidationError naming `ratelimit.adaptive.<field>` when it is
 * bad) and gives the event-loop delay sampler, started on first read: a mesh that never
 * turns the adaptive limit on (by option or rule) runs no monitor.
 */
export function adaptiveProtection(option: AdaptiveOption | undefined): AdaptiveProtection {
  const adaptive = option === undefined ? undefined : parseAdaptiveSection(option === true ? {} : option, 'ratelimit.adaptive');
  let monitor: EventLoopDelaySampler | undefined;
  let utilization: (() => number) | undefined;
  let closed = false;
  return {
    adaptive,
    eventLoopDelay: () => {
      if (closed) return 0;
      monitor ??= eventLoopDelayMonitor();
      return monitor();
    },
    eventLoopUtilization: () => {
      utilization ??= eventLoopUtilizationSampler();
      return utilization();
    },
    close: () => {
      closed = true;
      monitor?.close();
    },
  };
}
