import type { Attributes, AttributeValue, Link, SpanKind, TimeInput, Tracer } from '@opentelemetry/api';
import { AddAttributeDecision, cleanAttributes, cleanSimpleAttributes, isTimeInput, maybeAddAttribute } from '@opentelemetry/core';
import type { TimedEvent } from '@opentelemetry/sdk-trace';
import { ClientSpanRecord, type RecordDeps } from './client-span-record.js';
import type { HeadDecision, HeadSampler } from './head-sampling.js';
import type { SpanDeps } from './span-deps.js';

/** OpenTelemetry's span limits, as its tracer applies them (TracerProvider's defaults unless configured). */
export interface RecordLimits {
  readonly attributeCountLimit: number;
  readonly attributeValueLengthLimit: number;
  readonly eventCountLimit: number;
  readonly linkCountLimit: number;
  readonly attributePerEventCountLimit: number;
  readonly attributePerLinkCountLimit: number;
}

/** OpenTelemetry TracerProvider's defaults. */
const DEFAULT_LIMITS: RecordLimits = {
  attributeCountLimit: 128,
  attributeValueLengthLimit: Number.POSITIVE_INFINITY,
  eventCountLimit: 128,
  linkCountLimit: 128,
  attributePerEventCountLimit: 128,
  attributePerLinkCountLimit: 128,
};

/** What recording SERVER and INTERNAL spans as Meshlet's own records takes, from one Tracing. */
export interface SpanRecording {
  /** The CLIENT spans' head sampler: the same rule, root sampler and id generator. */
  readonly sampler: HeadSampler;
  readonly records: RecordDeps;
  readonly limits: RecordLimits;
  /** The id generator's ids are valid hex by construction (the pooled one): the trace log writes them unescaped. */
  readonly hexIds: boolean;
}

/**
 * The parts for recorded SERVER and INTERNAL spans; undefined when OpenTelemetry's tracer
 * applies a value length limit (attribute values truncated): those spans stay on the
 * tracer, which truncates them.
 *
 * The limits are the tracer's own, as its provider merged them from its options and the
 * `OTEL_*_LIMIT` environment variables: read from the SDK tracer's `_spanLimits` (not a
 * public field; @opentelemetry/sdk-trace 2.x). Should a later SDK not have it, the limits
 * are not known, and undefined is answered: the spans stay on the tracer, which applies
 * them (slower, never wrong).
 */
export function spanRecording(tracer: Tracer, sampler: HeadSampler, records: RecordDeps, hexIds: boolean): SpanRecording | undefined {
  const configured = (tracer as { _spanLimits?: Partial<RecordLimits> })._spanLimits;
  if (typeof configured !== 'object' || configured === null) return undefined;
  const limits: RecordLimits = { ...DEFAULT_LIMITS };
  for (const key of Object.keys(DEFAULT_LIMITS) as (keyof RecordLimits)[]) {
    const v = configured[key];
    if (typeof v === 'number') (limits as { -readonly [K in keyof RecordLimits]: number })[key] = v;
  }
  if (limits.attributeValueLengthLimit !== Number.POSITIVE_INFINITY) return undefined;
  return { sampler, records, limits, hexIds };
}

/** `deps` with its span recording, decided by the CLIENT spans' head sampler. */
export function withSpanRecording(deps: Omit<SpanDeps, 'spanRecording'>): SpanDeps {
  const recording = spanRecording(deps.tracer, deps.sampler, deps.records, deps.sampler.validIds);
  return { ...deps, spanRecording: recording };
}

type Counts = { droppedAttributesCount: number; droppedEventsCount: number; droppedLinksCount: number };

/**
 * A recorded SERVER or INTERNAL span: Meshlet's span record (see ClientSpanRecord) with
 * its own kind. Unlike a CLIENT span, whose attributes only Meshlet sets, this one is the
 * active span while the application runs (`trace.getActiveSpan()` in a handler answers
 * it), so what the application sets on it is checked as OpenTelemetry's span checks it:
 * attribute values and the attribute, event and link count limits, with the same dropped
 * counts. Meshlet's own attributes (strings and numbers) are stored without the checks.
 */
export class SpanRecord extends ClientSpanRecord {
  override readonly kind: SpanKind;
  readonly #limits: RecordLimits;
  #attributeCount: number;

  constructor(
    recording: SpanRecording,
    kind: SpanKind,
    name: string,
    decision: HeadDecision,
    attributes: Attributes,
    attributeCount: number,
    droppedAttributes = 0,
  ) {
    super(recording.records, name, decision.context, decision.parent, attributes, undefined, recording.hexIds);
    this.kind = kind;
    this.#limits = recording.limits;
    this.#attributeCount = attributeCount;
    if (droppedAttributes > 0) (this as unknown as Counts).droppedAttributesCount = droppedAttributes;
  }

  override setAttribute(key: string, value: AttributeValue | undefined): this {
    if (this.ended || value === undefined) return this;
    const attributes = this.attributes;
    const type = typeof value;
    if ((type === 'string' || type === 'number' || type === 'boolean') && key !== '') {
      // OpenTelemetry's maybeAddAttribute for a primitive under no length limit: stored as it is.
      if (Object.hasOwn(attributes, key)) attributes[key] = value;
      else if (this.#attributeCount >= this.#limits.attributeCountLimit) (this as unknown as Counts).droppedAttributesCount++;
      else {
        attributes[key] = value;
        this.#attributeCount++;
      }
      return this;
    }
    const decision = maybeAddAttribute({ key, value, attributes, limits: this.#limits, currentAttributesCount: this.#attributeCount });
    if (decision === AddAttributeDecision.DROP_LIMIT_REACHED) (this as unknown as Counts).droppedAttributesCount++;
    else if (decision === AddAttributeDecision.ADD_NEW) this.#attributeCount++;
    return this;
  }

  override addEvent(name: string, attributesOrTime?: Attributes | TimeInput, time?: TimeInput): this {
    if (this.ended) return this;
    const limit = this.#limits.eventCountLimit;
    const counts = this as unknown as Counts;
    if (limit === 0) {
      counts.droppedEventsCount++;
      return this;
    }
    if (this.events.length >= limit) {
      this.events.shift();
      counts.droppedEventsCount++;
    }
    let attributes: Attributes | undefined;
    if (isTimeInput(attributesOrTime)) {
      if (!isTimeInput(time)) time = attributesOrTime;
    } else attributes = attributesOrTime;
    // The base class times the event and makes the list this span's own; the event it
    // pushed is then given OpenTelemetry's cleaned attributes (and their dropped count).
    super.addEvent(name, time as TimeInput);
    const events = this.events;
    const last = events[events.length - 1] as TimedEvent;
    const cleaned = cleanSimpleAttributes(attributes, {
      attributeCountLimit: this.#limits.attributePerEventCountLimit,
      attributeValueLengthLimit: this.#limits.attributeValueLengthLimit,
    });
    events[events.length - 1] = { name, time: last.time, ...cleaned };
    return this;
  }

  override addLink(link: Link): this {
    if (this.ended) return this;
    const limit = this.#limits.linkCountLimit;
    const counts = this as unknown as Counts;
    if (limit === 0) {
      counts.droppedLinksCount++;
      return this;
    }
    // At the limit the list is this span's own (the shared placeholder is empty): the oldest goes.
    if (this.links.length >= limit) {
      this.links.shift();
      counts.droppedLinksCount++;
    }
    super.addLink({
      context: link.context,
      ...cleanAttributes(link.attributes, {
        attributeCountLimit: this.#limits.attributePerLinkCountLimit,
        attributeValueLengthLimit: this.#limits.attributeValueLengthLimit,
      }),
    } as Link);
    return this;
  }
}

/**
 * Attributes given to a span as OpenTelemetry's tracer takes them (`cleanAttributes` under
 * the span limits): a copy, and how many were dropped. Plain values (strings, numbers,
 * booleans under non-empty keys, within the count limit) are copied without the checks.
 */
export function spanAttributes(
  given: Attributes | undefined,
  limits: RecordLimits,
): { attributes: Attributes; count: number; dropped: number } {
  const attributes: Attributes = {};
  let count = 0;
  if (given === undefined) return { attributes, count, dropped: 0 };
  for (const key in given) {
    if (!Object.hasOwn(given, key)) continue;
    const v = given[key];
    if (v === undefined) continue;
    const type = typeof v;
    if (key === '' || (type !== 'string' && type !== 'number' && type !== 'boolean') || count >= limits.attributeCountLimit) {
      const cleaned = cleanAttributes(given, limits);
      const all = cleaned.attributes ?? {};
      return { attributes: all, count: Object.keys(all).length, dropped: cleaned.droppedAttributesCount ?? 0 };
    }
    attributes[key] = v;
    count++;
  }
  return { attributes, count, dropped: 0 };
}
