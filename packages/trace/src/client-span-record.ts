import type { Attributes, AttributeValue, Exception, HrTime, Link, Span, SpanContext, SpanStatus, TimeInput } from '@opentelemetry/api';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import type { InstrumentationScope } from '@opentelemetry/core';
import { addHrTimes, hrTime, hrTimeDuration, isTimeInput, isTimeInputHrTime, millisToHrTime } from '@opentelemetry/core';
import type { Resource } from '@opentelemetry/resources';
import type { ReadableSpan, TimedEvent } from '@opentelemetry/sdk-trace';

/** What a recorded CLIENT span needs from its Tracing. */
export interface RecordDeps {
  readonly resource: Resource;
  readonly scope: InstrumentationScope;
  /** Hands an ended span to the batch queues. */
  readonly ended: (span: ReadableSpan) => void;
}

// OpenTelemetry's hrTime() with the process's time origin converted once: the same value
// (performance.timeOrigin does not change), without reading it and converting it per call.
const TIME_ORIGIN = millisToHrTime(performance.timeOrigin);
const now = (): HrTime => addHrTimes(TIME_ORIGIN, millisToHrTime(performance.now()));

/**
 * A sampled CLIENT span, recorded by Meshlet itself rather than by OpenTelemetry's span:
 * the attributes Meshlet sets are valid by construction (strings and numbers under fixed
 * keys), so they are stored without OpenTelemetry's per-attribute checks, and start and end
 * times are read once each. It is an OpenTelemetry API span (children started under its
 * context join it) and a ReadableSpan for any exporter. Not subject to OpenTelemetry's
 * span limits (its attribute set is bounded by construction).
 */
export class ClientSpanRecord implements Span, ReadableSpan {
  readonly kind = SpanKind.CLIENT;
  readonly parentSpanContext?: SpanContext;
  readonly attributes: Attributes;
  readonly links: Link[] = [];
  readonly events: TimedEvent[] = [];
  readonly startTime: HrTime;
  readonly resource: Resource;
  readonly instrumentationScope: InstrumentationScope;
  readonly droppedAttributesCount = 0;
  readonly droppedEventsCount = 0;
  readonly droppedLinksCount = 0;
  name: string;
  status: SpanStatus = { code: SpanStatusCode.UNSET };
  endTime: HrTime = [0, 0];
  duration: HrTime = [-1, -1];
  ended = false;
  // A plain field, not #private: a span wrapped by Object.create (as some exporters do) still answers.
  private readonly ownContext: SpanContext;
  readonly #deps: RecordDeps;

  constructor(deps: RecordDeps, name: string, context: SpanContext, parent: SpanContext | undefined, attributes: Attributes) {
    this.#deps = deps;
    this.ownContext = context;
    this.name = name;
    if (parent !== undefined) this.parentSpanContext = parent;
    this.attributes = attributes;
    this.resource = deps.resource;
    this.instrumentationScope = deps.scope;
    this.startTime = now();
  }

  spanContext(): SpanContext {
    return this.ownContext;
  }

  setAttribute(key: string, value: AttributeValue | undefined): this {
    if (!this.ended && key !== '' && value !== undefined && value !== null) this.attributes[key] = value;
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
    this.events.push({ name, time: timeOf(time), ...(attributes ? { attributes: { ...attributes } } : {}), droppedAttributesCount: 0 });
    return this;
  }

  addLink(link: Link): this {
    if (!this.ended) this.links.push(link);
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
    let end = endTime === undefined ? now() : timeOf(endTime);
    let duration = hrTimeDuration(this.startTime, end);
    if (duration[0] < 0) {
      end = [this.startTime[0], this.startTime[1]];
      duration = [0, 0];
    }
    this.endTime = end;
    this.duration = duration;
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

function timeOf(time: TimeInput | undefined): HrTime {
  if (time === undefined) return hrTime();
  if (isTimeInputHrTime(time)) return time;
  if (typeof time === 'number') return time <= performance.now() ? hrTime(time) : millisToHrTime(time);
  return millisToHrTime(time.getTime());
}
