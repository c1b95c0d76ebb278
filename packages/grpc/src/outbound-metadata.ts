import type { Metadata } from '@grpc/grpc-js';
import type { Logger } from '@meshlet/core';

/**
 * Code of the line logged when the mesh leaves out a header it would have written to an
 * outbound call (a value gRPC metadata refuses, a trace header that is not valid W3C trace
 * context). A client controls how often it happens: logged at most once per interval (a
 * per-request code of core's throttled logger), counted in `meshlet_conditions_total`.
 */
export const HEADER_DROPPED = 'MESHLET_HEADER_DROPPED';

// grpc-js's own rules (its metadata.ts), which `Metadata.set` enforces by throwing: a key,
// lower-cased, of [:0-9a-z_.-]; a key ending in `-bin` takes only Buffer values; a string
// value of printable ASCII (0x20-0x7E). An HTTP field value may hold a TAB or obs-text
// (0x80-0xFF), so a header the mesh passes on from HTTP is not always metadata.
const METADATA_KEY = /^[:0-9a-z_.-]+$/;
const METADATA_VALUE = /^[ -~]*$/;

/** Why gRPC metadata refuses `key: value` as a string entry; undefined when it takes it. */
export function metadataProblem(key: string, value: string): string | undefined {
  const k = key.toLowerCase();
  if (!METADATA_KEY.test(k)) return 'name not allowed in gRPC metadata';
  if (k.endsWith('-bin')) return "a '-bin' name takes binary values only";
  if (typeof value !== 'string' || !METADATA_VALUE.test(value)) return 'value not printable ASCII (0x20-0x7E), refused by gRPC metadata';
  return undefined;
}

/** Told of a header left out: its name and why (never its value). */
export type DroppedHeader = (header: string, reason: string) => void;

/**
 * Sets `key: value` in `md` when gRPC metadata takes it; else leaves it out and tells
 * `dropped`. grpc-js throws on what it refuses, so a throw (a rule of a later grpc-js this
 * check does not know) is a drop too: a header never fails the call it rides on.
 */
export function setMetadata(md: Metadata, key: string, value: string, dropped: DroppedHeader): boolean {
  const problem = metadataProblem(key, value);
  if (problem !== undefined) {
    dropped(key, problem);
    return false;
  }
  try {
    md.set(key, value);
    return true;
  } catch (err) {
    dropped(key, `refused by gRPC metadata: ${String((err as Error)?.message ?? err).slice(0, 80)}`);
    return false;
  }
}

/** A DroppedHeader that logs with `HEADER_DROPPED` (the name cut at 128 characters; never the value). */
export function logDroppedHeader(logger: Logger, service: string): DroppedHeader {
  return (header, reason) => logger.warn('header not sent', { code: HEADER_DROPPED, header: header.slice(0, 128), reason, service });
}
