/** The W3C Baggage limits a receiver enforces (https://www.w3.org/TR/baggage/#limits). */
export const BaggageLimits = {
  maxBytes: 8192,
  maxEntries: 180,
  maxMemberBytes: 4096,
} as const;

/**
 * Whether a `baggage` header is within the W3C limits. One over the limits is dropped
 * whole: OpenTelemetry's propagator keeps a truncated prefix instead, which would hand the
 * application an arbitrary subset of what the caller meant.
 */
export function baggageWithinLimits(header: string): boolean {
  if (Buffer.byteLength(header) > BaggageLimits.maxBytes) return false;
  let entries = 0;
  let start = 0;
  for (;;) {
    const comma = header.indexOf(',', start);
    const member = comma < 0 ? header.slice(start) : header.slice(start, comma);
    if (member.trim() !== '') {
      entries++;
      if (entries > BaggageLimits.maxEntries) return false;
      if (Buffer.byteLength(member) > BaggageLimits.maxMemberBytes) return false;
    }
    if (comma < 0) return true;
    start = comma + 1;
  }
}
