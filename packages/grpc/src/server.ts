import { AsyncResource } from 'node:async_hooks';
import {
  type Metadata,
  type Responder,
  ServerInterceptingCall,
  type ServerInterceptingCallInterface,
  type ServerInterceptor,
  type ServerListener,
  type ServerMethodDefinition,
  status as Status,
} from '@grpc/grpc-js';
import { type MeshContext, runWithContext } from '@meshlet/core';
import { type Context, type Span, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { HEALTH_SERVICE } from './health.js';
import { deadlineMs, keepInboundDeadline } from './inbound-deadline.js';
import type { Admitted, GrpcServerPorts, GrpcTracing, Refusal } from './ports.js';
import { rpcNames } from './rpc-names.js';

const HEALTH_PREFIX = `/${HEALTH_SERVICE}/`;

import { routeGrpcLog } from './grpc-log.js';
import { statusName } from './status-map.js';

/** The metadata of a call as the lower-case headers the mesh reads (binary `-bin` values left out). */
export function headersOf(metadata: Metadata): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  const all = metadata.toJSON();
  for (const key in all) {
    // The metadata's own keys only (for…in also walks inherited enumerable names).
    if (key.endsWith('-bin') || !Object.hasOwn(all, key)) continue;
    const values = all[key] as (string | Buffer)[];
    // Most keys have one value: no array is made for them.
    if (values.length === 1) {
      const only = values[0];
      if (typeof only === 'string') out[key] = only;
      continue;
    }
    const strings = values.filter((v): v is string => typeof v === 'string');
    if (strings.length === 1) out[key] = strings[0] as string;
    else if (strings.length > 1) out[key] = strings;
  }
  return out;
}

/** A thrown value's message, cut short: a per-call log line stays bounded. */
function messageOf(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).slice(0, 200);
}

/**
 * The limiter failed after it was asked (a shared store gone: its promise rejected): the
 * call is admitted, as HTTP's pipeline admits it, and logged the same way
 * (`MESHLET_RATELIMIT_FAILED`, a per-request code: at most one line per interval, every one
 * counted). A throw where auth or the limiter decides refuses the call (ADMISSION_FAILED).
 */
function admissionFailed(ports: Pick<GrpcServerPorts, 'logger'>, err: unknown): void {
  ports.logger.error('gRPC admission failed; admitting', { code: 'MESHLET_RATELIMIT_FAILED', error: messageOf(err) });
}

/** The answer to a call whose auth or limiter threw where it decides: refused, never let through without them. */
const ADMISSION_FAILED: Refusal = {
  code: Status.INTERNAL,
  details: 'the call could not be admitted (MESHLET_ADMISSION_FAILED)',
  trailers: {},
  errorType: 'admission_failed',
};

/** The answer to a call whose context could not be built. */
const CONTEXT_FAILED: Refusal = {
  code: Status.INTERNAL,
  details: 'the call could not be admitted (MESHLET_CONTEXT_FAILED)',
  trailers: {},
  errorType: 'context_failed',
};

function isRefusal(x: Admitted | Refusal): x is Refusal {
  return (x as Refusal).code !== undefined;
}

/**
 * A grpc-js server interceptor (`new Server({ interceptors: [ … ] })`) that governs every
 * call at its start, as the HTTP middleware does a request: the context from the metadata
 * (tags in every accepted dialect, the verified caller, trace context), a SERVER span with
 * OpenTelemetry's rpc.* conventions, the service's auth rules (PERMISSION_DENIED) and rate
 * limits (RESOURCE_EXHAUSTED, with `retry-after` and Meshlet's limiter trailer). The
 * handler and everything it calls run inside the context (`getTag`, governed calls carry
 * the tags on), for unary and streaming methods alike.
 */
export function meshServerInterceptor(ports: GrpcServerPorts): ServerInterceptor {
  routeGrpcLog(ports.logger);
  return (method: ServerMethodDefinition<unknown, unknown>, call: ServerInterceptingCallInterface) => {
    // Health checks are answered as they are, as the HTTP pipeline answers its health path before any governance.
    if (method.path.startsWith(HEALTH_PREFIX)) return new ServerInterceptingCall(call);
    const governed = new GovernedServerCall(ports, method.path, call);
    return new ServerInterceptingCall(call, governed.responder);
  };
}

const newScope = () => new AsyncResource('meshlet.grpc.server-call');

/**
 * One governed inbound call: its state and the listener and responder grpc-js calls. One
 * object per call (and its listener), rather than a closure per step.
 */
class GovernedServerCall {
  #span: Span | undefined;
  /**
   * The call's context (and span) as one async scope, made once when the metadata arrives:
   * each later step (the handler is invoked from one) enters it without building the
   * AsyncLocalStorage frames anew, as `runWithContext` would on every step.
   */
  #scope: AsyncResource | undefined;
  #release: (() => void) | undefined;
  #refused = false;
  #ended = false;
  readonly responder: Responder;
  readonly #listener: ServerListener;

  constructor(
    readonly ports: GrpcServerPorts,
    readonly path: string,
    readonly call: ServerInterceptingCallInterface,
  ) {
    const self = this;
    this.#listener = {
      onReceiveMetadata(metadata, next) {
        self.#onMetadata(metadata, next);
      },
      onReceiveMessage(message, next) {
        if (!self.#refused) self.#inside(next, message);
      },
      onReceiveHalfClose(next) {
        if (!self.#refused) self.#inside(next);
      },
      onCancel() {
        // grpc-js ends a call whose deadline passed by itself, below the interceptors (no
        // sendStatus through the responder): that end reaches the mesh as a cancel.
        // Date.now(), not a Clock: the server ports have none, and grpc-js's deadline is
        // wall-clock ms (Date.now() + grpc-timeout when the call arrived) ended by its own
        // timers; an injected clock would compare that instant with another time line.
        const deadline = deadlineMs(self.call.getDeadline());
        if (deadline !== undefined && Date.now() >= deadline) self.#finish(Status.DEADLINE_EXCEEDED, 'deadline exceeded');
        else self.#finish(Status.CANCELLED, 'cancelled by the client');
      },
    };
    this.responder = {
      start(next) {
        next(self.#listener);
      },
      sendStatus(status, next) {
        self.#finish(status.code, status.details);
        next(status);
      },
    };
  }

  /** Runs a step of the call inside its context and span (none when the context could not be built). */
  #inside<A>(fn: (arg: A) => void, arg?: A): void {
    const scope = this.#scope;
    if (scope) scope.runInAsyncScope(fn, undefined, arg);
    else fn(arg as A);
  }

  /** The call's end, once: its slots given back, its span ended with the status (and `errorType`, a refusal's). */
  #finish(code: number, details: string | undefined, errorType?: string): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#release?.();
    if (this.#span) endServerSpan(this.#span, code, details, errorType);
  }

  #onMetadata(metadata: Metadata, next: (metadata: Metadata) => void): void {
    const { ports, path } = this;
    const headers = headersOf(metadata);
    let ctx: MeshContext | undefined;
    try {
      ctx = ports.context(headers, path);
      const deadline = deadlineMs(this.call.getDeadline());
      if (deadline !== undefined) keepInboundDeadline(ctx, deadline);
    } catch (err) {
      ctx = undefined;
      ports.logger.error('gRPC call context not built; refused with INTERNAL', {
        code: 'MESHLET_CONTEXT_FAILED',
        error: messageOf(err),
      });
    }
    let spanCtx: Context | undefined;
    if (ports.tracing) [this.#span, spanCtx] = startServerSpan(ports, ports.tracing, headers, path, this.call.getPeer(), ctx);
    if (!ctx) {
      // Without a context there is no caller and no tags to decide auth and limits on: the
      // call is refused, never handed on ungoverned (as HTTP answers 500).
      this.#refuse(CONTEXT_FAILED, metadata);
      return;
    }
    const c = ctx;
    this.#scope = spanCtx && ports.tracing ? ports.tracing.run(spanCtx, () => runWithContext(c, newScope)) : runWithContext(c, newScope);
    let decision: ReturnType<GrpcServerPorts['admit']>;
    try {
      decision = ports.admit(ctx, path);
    } catch (err) {
      // Auth or the limiter threw where they decide: never the handler without them.
      ports.logger.error('gRPC admission threw; refused', { code: 'MESHLET_ADMISSION_FAILED', error: messageOf(err) });
      this.#refuse(ADMISSION_FAILED, metadata);
      return;
    }
    if (decision instanceof Promise)
      decision.then(
        (a) => this.#admitted(a, metadata, next),
        (err: unknown) => {
          admissionFailed(ports, err);
          this.#inside(next, metadata);
        },
      );
    else this.#admitted(decision, metadata, next);
  }

  #admitted(a: Admitted | Refusal, metadata: Metadata, next: (metadata: Metadata) => void): void {
    if (isRefusal(a)) this.#refuse(a, metadata);
    else if (this.#ended) a.release();
    else {
      this.#release = a.release;
      this.#inside(next, metadata);
    }
  }

  #refuse(r: Refusal, metadata: Metadata): void {
    this.#refused = true;
    const trailers = metadata.clone();
    for (const k of Object.keys(trailers.getMap())) trailers.remove(k);
    for (const [k, v] of Object.entries(r.trailers)) trailers.set(k, v);
    // Sent below the responder: the span ends here, with the refusal's status.
    this.#finish(r.code, r.details, r.errorType);
    this.call.sendStatus({ code: r.code, details: r.details, metadata: trailers });
  }
}

function startServerSpan(
  ports: Pick<GrpcServerPorts, 'startServerSpan'>,
  tracing: GrpcTracing,
  headers: Record<string, string | string[]>,
  path: string,
  peer: string,
  ctx: MeshContext | undefined,
): [Span, Context] {
  const names = rpcNames(path);
  const parent = tracing.propagation.extract(headers);
  const attributes: Record<string, string> = {
    'rpc.system': 'grpc',
    'rpc.service': names.service,
    'rpc.method': names.method,
  };
  const colon = peer.lastIndexOf(':');
  if (colon > 0) attributes['client.address'] = peer.slice(0, colon).replace(/^\[|\]$/g, '');
  if (ctx?.caller.service) attributes['io.meshlet.caller'] = ctx.caller.service;
  const span =
    ports.startServerSpan !== undefined
      ? ports.startServerSpan(tracing, { name: names.spanName, attributes, parent })
      : tracing.tracer.startSpan(names.spanName, { kind: SpanKind.SERVER, attributes }, parent);
  return [span, trace.setSpan(parent, span)];
}

/**
 * OpenTelemetry's rule for SERVER spans of gRPC: UNKNOWN, DEADLINE_EXCEEDED,
 * UNIMPLEMENTED, INTERNAL, UNAVAILABLE and DATA_LOSS are errors; the other codes are the
 * client's doing and leave the status unset.
 */
const SERVER_ERRORS: ReadonlySet<number> = new Set([
  Status.UNKNOWN,
  Status.DEADLINE_EXCEEDED,
  Status.UNIMPLEMENTED,
  Status.INTERNAL,
  Status.UNAVAILABLE,
  Status.DATA_LOSS,
]);

/** `errorType`: what refused the call (`rate_limited`, `admission_failed`), named over the status's name. */
function endServerSpan(span: Span, code: number, details: string | undefined, errorType: string | undefined): void {
  span.setAttribute('rpc.grpc.status_code', code);
  if (SERVER_ERRORS.has(code)) span.setStatus({ code: SpanStatusCode.ERROR, message: `${statusName(code)}: ${details ?? ''}` });
  const type = errorType ?? (SERVER_ERRORS.has(code) ? statusName(code) : undefined);
  if (type !== undefined) span.setAttribute('error.type', type);
  span.end();
}
