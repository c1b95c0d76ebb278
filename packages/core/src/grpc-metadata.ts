// grpc-js's own rules for a text entry of gRPC metadata (its metadata.ts), which
// `Metadata.set` enforces by throwing: a key, lower-cased, of [:0-9a-z_.-]; a key ending in
// `-bin` takes only bytes; a value of printable ASCII (0x20-0x7E). An HTTP field value may
// hold a TAB or obs-text (0x80-0xFF), so an HTTP header is not always metadata.

const METADATA_KEY = /^[:0-9a-z_.-]+$/;

/** Printable ASCII (0x20-0x7E): what a gRPC metadata text value may hold. */
export const PRINTABLE_ASCII = /^[\x20-\x7e]*$/;

/**
 * Why gRPC metadata refuses `name: value` as a text entry (grpc-js would throw, its error
 * showing the value); undefined when it takes it. Never shows the value. The one rule for
 * what the mesh writes into a call's metadata (@meshlet/grpc) and for a collector's headers
 * sent as metadata (@meshlet/trace).
 */
export function grpcMetadataProblem(name: string, value: string): string | undefined {
  const key = name.toLowerCase();
  if (!METADATA_KEY.test(key)) return 'is not a gRPC metadata name (letters, digits, ":", "_", ".", "-")';
  if (key.endsWith('-bin')) return 'is binary gRPC metadata (…-bin), which takes bytes, not text';
  if (typeof value !== 'string' || !PRINTABLE_ASCII.test(value))
    return 'must be printable ASCII to go as gRPC metadata (the value is not shown)';
  return undefined;
}
