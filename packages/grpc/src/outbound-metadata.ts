import type { Metadata } from '@grpc/grpc-js';
import { grpcMetadataProblem, type Logger } from '@meshlet/core';

/**
 * Code of the line logged when the mesh leaves out a header it would have written to an
 * outbound call (a value gRPC metadata refuses, a trace header that is not valid W3C trace
 * context). A client controls how often it happens: logged at most once per interval (a
 * per-request code of core's throttled logger), counted in `meshlet_conditions_total`.
 */
export const HEADER_DROPPED = 'MESHLET_HEADER_DROPPED';

/** Told of a header left out: its name and why (never its value). */
export type DroppedHeader = (header: string, reason: string) => void;

/**
 * Sets `key: value` in `md` when gRPC metadata takes it; else leaves it out and tells
 * `dropped`. grpc-js throws on what it refuses, so a throw (a rule of a later grpc-js this
 * check does not know) is a drop too: a header never fails the call it rides on.
 */
export function setMetadata(md: Metadata, key: string, value: string, dropped: DroppedHeader): boolean {
  const problem = grpcMetadataProblem(key, value);
  if (problem !== undefined) {
    dropped(key, problem);
    return false;
  }
  try {
    md.set(key, value);
    return true;
  } catch (err) {
    // Not its message: grpc-js's shows the value.
    dropped(key, `refused by gRPC metadata (${(err as Error)?.name ?? 'error'})`);
    return false;
  }
}

/** A DroppedHeader that logs with `HEADER_DROPPED` (the name cut at 128 characters; never the value). */
export function logDroppedHeader(logger: Logger, service: string): DroppedHeader {
  return (header, reason) => logger.warn('header not sent', { code: HEADER_DROPPED, header: header.slice(0, 128), reason, service });
}
