import { performance } from 'node:perf_hooks';
import { type Clock, systemClock } from '@meshlet/core';
import type { Attributes, AttributeValue, Exception, HrTime, Link, Span, SpanContext, SpanStatus, TimeInput } from '@opentelemetry/api';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import type { InstrumentationScope } from '@opentelemetry/core';
import { hrTimeDuration, isTimeInput, isTimeInputHrTime, millisToHrTime } from '@opentelemetry/core';
import type { Resource } from '@opentelemetry/resources';
import type { ReadableSpan, TimedEvent } from '@opentelemetry/sdk-trace';

/** What a recorded CLIENT span needs from its Tracing. */
export interface RecordDeps {
  readonly resource: Resource;
  readonly scope: InstrumentationScope;
  /** Hands an ended span to the batch queues. */
  readonly ended: (span: ReadableSpan) => void;
  /** Where a record's start falls on the wall clock. */
  readonly wall: WallAnchors;
}

/**
 * The wall-clock time (epoch ms, and as seconds and nanoseconds) of performance.now()'s
 * zero: a record's times are this plus its performance.now() readings, so its start is on
 * the wall clock and its duration is monotonic, as OpenTelemetry's span makes them.
 */
export interface WallAnchor {
  readonly ms: number;
  readonly s: number;
  readonly ns: number;
}

/** The anchor at `ms` since the epoch. */
export const wallAnchor = (ms: number): WallAnchor => {
  const [s, ns] = millisToHrTime(ms);
  return { ms, s, ns };
};

/** performance.timeOrigin: where the wall clock was at performance.now()'s zero (what OpenTelemetry's hrTime() adds). */
const ORIGIN_ANCHOR = wallAnchor(performance.timeOrigin);

/** A record's start reads the wall clock again after this much performance-clock time since the last read (ms). */
export const WALL_CHECK_MS = 100;
/** A wall reading this close to the anchor in force keeps it: Date.now() counts whole ms (ms). */
const WALL_JITTER_MS = 2;

/**
 * The anchor in force for a record starting now. A record reads one clock at its start
 * (performance.now()); the wall clock is read again only when WALL_CHECK_MS have passed
 * since the last read, and the anchor moves when the wall clock is away from it by more
 * than its resolution: after a step of the host's clock (NTP) or a suspend, which the
 * performance clock does not follow, records started from the next read on carry the
 * wall time (those within WALL_CHECK_MS of the step carry the time before it).
 */
export class WallAnchors {
  readonly #clock: Clock;
  #anchor = ORIGIN_ANCHOR;
  #checkedAt = Number.NEGATIVE_INFINITY;

  /** `clock`'s wall time less its monotonic time is the offset from performance.timeOrigin (the system clock's: the host's step). */
  constructor(clock: Clock = systemClock) {
    this.#clock = clock;
  }

  /** The anchor of a record whose start read `ms` on the performance clock. */
  at(ms: number): WallAnchor {
    if (ms - this.#checkedAt < WALL_CHECK_MS) return this.#anchor;
    this.#checkedAt = ms;
    const wall = performance.timeOrigin + (this.#clock.wallNow() - this.#clock.now());
    if (Math.abs(wall - this.#anchor.ms) > WALL_JITTER_MS) this.#anchor = wallAnchor(wall);
    return this.#anchor;
  }
}

/**
 * `ms` on the performance clock as epoch seconds and nanoseconds, from `anchor` (by
 * default performance.timeOrigin, which makes it OpenTelemetry's `hrTime(ms)`); the anchor
 * converted once and one array made instead of three.
 */
export function hrTimeAt(ms: number, anchor: WallAnchor = ORIGIN_ANCHOR): HrTime {
  const whole = Math.trunc(ms / 1e3);
  let s = anchor.s + whole;
  let ns = anchor.ns + Math.round((ms - whole * 1e3) * 1e6); // ms % 1e3, exactly (see writeHrTimeAt)
  if (ns >= 1e9) {
    ns -= 1e9;
    s += 1;
  }
  return [s, ns];
}

/**
 * `hrTimeAt(ms, anchor)` as its two parts handed to `write` (no array made): what the trace log
 * writes a record's times with. The same arithmetic as `hrTimeAt` (a test holds the
 * written times equal to the HrTime ones).
 */
export function writeHrTimeAt(ms: number, anchor: WallAnchor, write: { nanos(s: number, ns: number): void }): void {
  const whole = Math.trunc(ms / 1e3);
  let s = anchor.s + whole;
  // `ms % 1e3` without the floating-point remainder's call: exact all the same (whole * 1e3
  // is an integer within a factor of two of ms, so the subtraction is exact).
  let ns = anchor.ns + Math.round((ms - whole * 1e3) * 1e6);
  if (ns >= 1e9) {
    ns -= 1e9;
    s += 1;
  }
  write.nanos(s, ns);
}

// Placeholders shared by every record until it has its own: most spans get no link or
// event, and keep these until they end. Frozen, so that nothing adds to them in place.
const NO_LINKS: Link[] = Object.freeze([]) as unknown as Link[];
const NO_EVENTS: TimedEvent[] = Object.freeze([]) as unknown as TimedEvent[];
const UNSET: SpanStatus = Object.freeze({ code: SpanStatusCode.UNSET });
const NOT_ENDED: HrTime = Object.freeze([0, 0]) as unknown as HrTime;
const NO_DURATION: HrTime = Object.freeze([-1, -1]) as unknown as HrTime;

/**
 * A sampled CLIENT span, recorded by Meshlet itself rather than by OpenTelemetry's span:
 * the attributes Meshlet sets are valid by construction (strings and numbers under fixed
 * keys), so they are stored without OpenTelemetry's per-attribute checks, and start and end
 * times are read once each. It is an OpenTelemetry API span (children started under its
 * context join it) and a ReadableSpan for any exporter. Not subject to OpenTelemetry's
 * span limits (its attribute set is bounded by construction).
 */
export class ClientSpanRecord implements Span, ReadableSpan {
  readonly kind: SpanKind = SpanKind.CLIENT;
  readonly parentSpanContext?: SpanContext;
  /**
   * The attributes: the record's own object, or (`shared`) an object its maker made for
   * many records (frozen), the attributes set later kept beside it in `lateKeys` and
   * `lateValues` until someone reads `attributes`, which then makes the record its own copy.
   * Plain fields, not #private: a span wrapped by Object.create still answers.
   */
  attrs: Attributes;
  shared: boolean;
  links: Link[] = NO_LINKS;
  events: TimedEvent[] = NO_EVENTS;
  readonly resource: Resource;
  readonly instrumentationScope: InstrumentationScope;
  readonly droppedAttributesCount = 0;
  readonly droppedEventsCount = 0;
  readonly droppedLinksCount = 0;
  name: string;
  status: SpanStatus = UNSET;
  ended = false;
  /**
   * Start and end on the performance clock, in ms (the end NaN until the span ends, or when
   * it was ended at a given time): kept as numbers, made HrTime only when an exporter reads
   * `startTime`, `endTime` or `duration`; the trace log writes them from these.
   */
  readonly startMs: number;
  endMs = Number.NaN;
  /** Where the performance clock's zero fell on the wall clock at the start: the times' epoch. */
  readonly anchor: WallAnchor;
  // Plain fields, not #private: a span wrapped by Object.create still answers.
  private hrStart: HrTime | undefined;
  private hrEnd: HrTime = NOT_ENDED;
  private hrDuration: HrTime = NO_DURATION;
  /**
   * The OTLP JSON of the attributes the record was made with (`{"key":…,"value":…}`, comma
   * separated, in their order), when its maker built it from cached fragments; the trace
   * log writes it instead of encoding them again. Dropped as soon as one of them is set
   * again (or a key that would sort before them), so it never disagrees with `attributes`.
   */
  madeJson: string | undefined;
  /**
   * `madeJson` as UTF-8, in pieces its maker cached (the trace log copies them into its
   * line instead of encoding the string); dropped with `madeJson`.
   */
  madeBytes: readonly Uint8Array[] | undefined;
  /** The attributes object `madeJson` is of (a span wrapped with other attributes is encoded from those). */
  madeFor: Attributes;
  /** Keys set after the record was made, in order, while `madeJson` stands. */
  lateKeys: string[] | undefined;
  /** Their values, while `shared` (else they are in `attrs`). */
  lateValues: AttributeValue[] | undefined;
  /** Its ids and its parent's are lower-case hex (the head sampler's, checked or drawn by the pooled generator): written without escaping. */
  readonly hexIds: boolean;
  // A plain field, not #private: a span wrapped by Object.create (as some exporters do) still answers.
  private readonly ownContext: SpanContext;
  readonly #deps: RecordDeps;

  constructor(
    deps: RecordDeps,
    name: string,
    context: SpanContext,
    parent: SpanContext | undefined,
    attributes: Attributes,
    attributesJson?: string,
    hexIds = false,
    attributesBytes?: readonly Uint8Array[],
    shared = false,
  ) {
    this.#deps = deps;
    this.ownContext = context;
    this.name = name;
    if (parent !== undefined) this.parentSpanContext = parent;
    this.attrs = attributes;
    this.shared = shared;
    this.madeFor = attributes;
    this.madeJson = attributesJson;
    this.madeBytes = attributesJson === undefined ? undefined : attributesBytes;
    this.hexIds = hexIds;
    this.resource = deps.resource;
    this.instrumentationScope = deps.scope;
    const start = performance.now();
    this.startMs = start;
    this.anchor = deps.wall.at(start);
  }

  get attributes(): Attributes {
    if (this.shared) this.ownAttributes();
    return this.attrs;
  }

  /**
   * Attributes assigned whole (a processor that redacts them, as it could while
   * `attributes` was a plain field): the record's own from then on; the made JSON, which
   * is of the old object, no longer stands, so the record is written from these.
   */
  set attributes(attributes: Attributes) {
    this.attrs = attributes;
    this.shared = false;
    this.lateValues = undefined;
  }

  /** Makes the shared attributes the record's own: a copy, with those set later. */
  private ownAttributes(): void {
    const shared = this.attrs;
    const own: Attributes = { ...shared };
    const keys = this.lateKeys;
    const values = this.lateValues;
    if (keys !== undefined && values !== undefined) for (let i = 0; i < keys.length; i++) own[keys[i] as string] = values[i];
    this.attrs = own;
    this.shared = false;
    this.lateValues = undefined;
    // The made JSON (and lateKeys) describe the copy as they described the shared object.
    if (this.madeFor === shared) this.madeFor = own;
  }

  get startTime(): HrTime {
    if (this.hrStart === undefined) this.hrStart = hrTimeAt(this.startMs, this.anchor);
    return this.hrStart;
  }

  get endTime(): HrTime {
    if (this.hrEnd === NOT_ENDED && !Number.isNaN(this.endMs)) this.hrEnd = hrTimeAt(this.endMs, this.anchor);
    return this.hrEnd;
  }

  get duration(): HrTime {
    if (this.hrDuration === NO_DURATION && this.ended) this.hrDuration = hrTimeDuration(this.startTime, this.endTime);
    return this.hrDuration;
  }

  spanContext(): SpanContext {
    return this.ownContext;
  }

  setAttribute(key: string, value: AttributeValue | undefined): this {
    if (this.ended || key === '' || value === undefined || value === null) return this;
    if (this.shared) {
      const first = key.charCodeAt(0);
      const keys = this.lateKeys;
      if (this.madeJson !== undefined && !(key in this.attrs) && !(first >= 48 && first <= 57) && !keys?.includes(key)) {
        // A new key, after the shared ones: kept beside them.
        if (keys === undefined) {
          this.lateKeys = [key];
          this.lateValues = [value];
        } else {
          keys.push(key);
          (this.lateValues as AttributeValue[]).push(value);
        }
        return this;
      }
      this.ownAttributes();
    }
    if (this.madeJson !== undefined) {
      // A key set again keeps its place with a new value; an index-like key ("7") is
      // enumerated before the others: either way the made JSON no longer holds.
      const first = key.charCodeAt(0);
      if (key in this.attrs || (first >= 48 && first <= 57)) {
        this.madeJson = undefined;
        this.madeBytes = undefined;
      } else if (this.lateKeys === undefined) this.lateKeys = [key];
      else this.lateKeys.push(key);
    }
    this.attrs[key] = value;
    return this;
  }

  setAttributes(attributes: Attributes): this {
    for (const key in attributes) if (Object.hasOwn(attributes, key)) this.setAttribute(key, attributes[key]);
    return this;
  }

  addEvent(name: string, attributesOrTime?: Attributes | TimeInput, time?: TimeInput): this {
    if (this.ended) return this;
    let attributes: Attributes | undefined;
    if (isTimeInput(attributesOrTime)) time ??= attributesOrTime;
    else attributes = attributesOrTime;
    if (this.events === NO_EVENTS) this.events = [];
    this.events.push({
      name,
      time: timeOf(time, this.anchor),
      ...(attributes ? { attributes: { ...attributes } } : {}),
      droppedAttributesCount: 0,
    });
    return this;
  }

  addLink(link: Link): this {
    if (this.ended) return this;
    if (this.links === NO_LINKS) this.links = [];
    this.links.push(link);
    return this;
  }

  addLinks(links: Link[]): this {
    for (const link of links) this.addLink(link);
    return this;
  }

  setStatus(status: SpanStatus): this {
    // OpenTelemetry's rules: UNSET never overrides, OK is final, a message only with ERROR.
    if (this.ended || status.code === SpanStatusCode.UNSET || this.status.code === SpanStatusCode.OK) return this;
    this.status =
      status.code === SpanStatusCode.ERROR && typeof status.message === 'string'
        ? { code: status.code, message: status.message }
        : { code: status.code };
    return this;
  }

  updateName(name: string): this {
    if (!this.ended) this.name = name;
    return this;
  }

  end(endTime?: TimeInput): void {
    if (this.ended) return;
    if (endTime === undefined) {
      // An end before the start (a clock stepped back) is the start, as OpenTelemetry's span makes it.
      const end = performance.now();
      this.endMs = end < this.startMs ? this.startMs : end;
    } else {
      const end = timeOf(endTime, this.anchor);
      const start = this.startTime;
      this.hrEnd = end[0] < start[0] || (end[0] === start[0] && end[1] < start[1]) ? [start[0], start[1]] : end;
    }
    this.ended = true;
    this.#deps.ended(this);
  }

  isRecording(): boolean {
    return !this.ended;
  }

  recordException(exception: Exception, time?: TimeInput): void {
    const attributes: Attributes = {};
    if (typeof exception === 'string') attributes['exception.message'] = exception;
    else if (exception) {
      if (exception.code) attributes['exception.type'] = String(exception.code);
      else if (exception.name) attributes['exception.type'] = exception.name;
      if (exception.message) attributes['exception.message'] = exception.message;
      if (exception.stack) attributes['exception.stacktrace'] = exception.stack;
    }
    if (attributes['exception.type'] || attributes['exception.message']) this.addEvent('exception', attributes, time);
  }
}

/** A given time as OpenTelemetry's span reads it: a number up to performance.now() is on the performance clock (from the record's anchor), a larger one epoch ms. */
function timeOf(time: TimeInput | undefined, anchor: WallAnchor): HrTime {
  if (time === undefined) return hrTimeAt(performance.now(), anchor);
  if (isTimeInputHrTime(time)) return time;
  if (typeof time === 'number') return time <= performance.now() ? hrTimeAt(time, anchor) : millisToHrTime(time);
  return millisToHrTime(time.getTime());
}
