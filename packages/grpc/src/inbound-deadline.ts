// The inbound deadline lives in @meshlet/core, where HTTP calls (the SDK's pipeline) read it too.
export { inboundDeadline, keepInboundDeadline } from '@meshlet/core';

/** A grpc-js Deadline as ms since the epoch; undefined for none (Infinity). */
export function deadlineMs(deadline: Date | number | undefined): number | undefined {
  if (deadline === undefined) return undefined;
  const ms = deadline instanceof Date ? deadline.getTime() : deadline;
  return Number.isFinite(ms) ? ms : undefined;
}
