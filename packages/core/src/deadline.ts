import { attachExtension, type ContextExtension, extensionOf, type MeshContext } from './context.js';
import { MeshletError } from './errors.js';

const KEY = Symbol('meshlet.inbound-deadline');

/** The deadline of the inbound call a request context serves, kept beside the context. */
interface InboundDeadline extends ContextExtension {
  readonly deadline: number;
}

/**
 * Keeps the inbound call's deadline (ms since the epoch, the wall clock grpc-js deadlines
 * use) beside its context, so that every governed call made while serving it — gRPC and
 * HTTP alike — ends by then, as grpc-java's Context carries a server call's deadline to
 * the calls made under it. The gRPC server sets it from the caller's `grpc-timeout`.
 */
export function keepInboundDeadline(ctx: MeshContext, deadline: number): void {
  const ext: InboundDeadline = {
    deadline,
    fork() {
      return this;
    },
  };
  attachExtension(ctx, KEY, ext);
}

/** The deadline of the inbound call `ctx` serves, if it has one. */
export function inboundDeadline(ctx: MeshContext): number | undefined {
  return extensionOf<InboundDeadline>(ctx, KEY)?.deadline;
}

/**
 * A governed call made while serving an inbound call whose deadline passed: refused
 * before anything was sent (`sent: false`), or cut at the deadline (`sent: true`). The
 * caller's budget ran out, not the upstream's: no breaker counts it and it is not retried.
 * gRPC maps it to DEADLINE_EXCEEDED.
 */
export class DeadlineExceededError extends MeshletError {
  static readonly code = 'MESHLET_DEADLINE';
  readonly service: string;
  /** Whether anything was sent before the deadline passed. */
  readonly sent: boolean;

  constructor(service: string, sent: boolean, detail?: string) {
    super(
      DeadlineExceededError.code,
      sent
        ? `${service}: the deadline of the inbound call being served passed${detail ? ` ${detail}` : ''}; the call was cut there, before its own timeout.`
        : `${service}: the deadline of the inbound call being served had passed; nothing was sent.`,
    );
    this.service = service;
    this.sent = sent;
  }
}
