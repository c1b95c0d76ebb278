import {
  type Metadata,
  ServerInterceptingCall,
  type ServerInterceptingCallInterface,
  type ServerInterceptor,
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

import { statusName } from './status-map.js';

type PartialStatus = Parameters<ServerInterceptingCallInterface['sendStatus']>[0];

/** The metadata of a call as the lower-case headers the mesh reads (binary `-bin` values left out). */
export function headersOf(metadata: Metadata): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  const all = metadata.toJSON();
  for (const key in all) {
    if (key.endsWith('-bin')) continue;
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
  return (method: ServerMethodDefinition<unknown, unknown>, call: ServerInterceptingCallInterface) => {
    // Health checks are answered as they are, as the HTTP pipeline answers its health path before any governance.
    if (method.path.startsWith(HEALTH_PREFIX)) return new ServerInterceptingCall(call);
    let ctx: MeshContext | undefined;
    let spanCtx: Context | undefined;
    let span: Span | undefined;
    let release: (() => void) | undefined;
    let refused = false;
    let ended = false;
    /** Runs a step of the call (the handler is invoked from one) inside its context and span. */
    const inside = <T>(fn: () => T): T => {
      if (!ctx) return fn();
      const c = ctx;
      const run = () => runWithContext(c, fn);
      return spanCtx && ports.tracing ? ports.tracing.run(spanCtx, run) : run();
    };
    const finish = (status: PartialStatus) => {
      if (ended) return;
      ended = true;
      release?.();
      if (span) endServerSpan(span, status.code, status.details);
    };
    return new ServerInterceptingCall(call, {
      start(next) {
        next({
          onReceiveMetadata(metadata, nextMetadata) {
            const path = method.path;
            const headers = headersOf(metadata);
            try {
              ctx = ports.context(headers, path);
              const deadline = deadlineMs(call.getDeadline());
              if (deadline !== undefined) keepInboundDeadline(ctx, deadline);
            } catch (err) {
              ports.logger.warn('gRPC call context not built; the call goes on without one', { error: (err as Error).message });
            }
            if (ports.tracing) [span, spanCtx] = startServerSpan(ports, ports.tracing, headers, path, call.getPeer(), ctx);
            if (!ctx) return inside(() => nextMetadata(metadata));
            const refuse = (r: Refusal) => {
              refused = true;
              span?.setAttribute('error.type', r.errorType);
              const trailers = metadata.clone();
              for (const k of Object.keys(trailers.getMap())) trailers.remove(k);
              for (const [k, v] of Object.entries(r.trailers)) trailers.set(k, v);
              call.sendStatus({ code: r.code, details: r.details, metadata: trailers });
            };
            const go = (a: Admitted | Refusal) => {
              if (isRefusal(a)) return refuse(a);
              release = a.release;
              if (ended) return release();
              inside(() => nextMetadata(metadata));
            };
            let decision: ReturnType<GrpcServerPorts['admit']>;
            try {
              decision = ports.admit(ctx, path);
            } catch (err) {
              ports.logger.error('gRPC admission failed; admitting', { error: (err as Error).message });
              return inside(() => nextMetadata(metadata));
            }
            if (decision instanceof Promise)
              decision.then(go, (err: Error) => {
                ports.logger.error('gRPC admission failed; admitting', { error: err.message });
                inside(() => nextMetadata(metadata));
              });
            else go(decision);
          },
          onReceiveMessage(message, nextMessage) {
            if (!refused) inside(() => nextMessage(message));
          },
          onReceiveHalfClose(nextHalfClose) {
            if (!refused) inside(() => nextHalfClose());
          },
          onCancel() {
            finish({ code: Status.CANCELLED, details: 'cancelled by the client' });
          },
        });
      },
      sendStatus(status: PartialStatus, nextStatus) {
        finish(status);
        nextStatus(status);
      },
    });
  };
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

function endServerSpan(span: Span, code: number, details: string | undefined): void {
  span.setAttribute('rpc.grpc.status_code', code);
  if (SERVER_ERRORS.has(code)) {
    span.setStatus({ code: SpanStatusCode.ERROR, message: `${statusName(code)}: ${details ?? ''}` });
    span.setAttribute('error.type', statusName(code));
  }
  span.end();
}
