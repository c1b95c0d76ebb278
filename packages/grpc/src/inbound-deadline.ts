import { attachExtension, type ContextExtension, extensionOf, type MeshContext } from '@meshlet/core';

const KEY = Symbol('meshlet.grpc.inbound-deadline');

/** The deadline of the gRPC call a request context serves, kept beside the context. */
interface InboundDeadline extends ContextExtension {
  readonly deadline: number;
}

/**
 * Keeps the inbound call's deadline (ms since the epoch) beside its context, so that every
 * gRPC call made while serving it inherits it, as grpc-java's Context carries a server
 * call's deadline to the calls made under it.
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

/** The deadline of the inbound gRPC call `ctx` serves, if any. */
export function inboundDeadline(ctx: MeshContext): number | undefined {
  return extensionOf<InboundDeadline>(ctx, KEY)?.deadline;
}

/** A grpc-js Deadline as ms since the epoch; undefined for none (Infinity). */
export function deadlineMs(deadline: Date | number | undefined): number | undefined {
  if (deadline === undefined) return undefined;
  const ms = deadline instanceof Date ? deadline.getTime() : deadline;
  return Number.isFinite(ms) ? ms : undefined;
}
