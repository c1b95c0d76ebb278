/**
 * Percent-encoding as Java's `URLEncoder` / `URLDecoder` (UTF-8) do it, because the Java
 * services of a TSF or Spring Cloud Tencent estate encode their tag headers that way
 * (`UrlUtils.encode` = `URLEncoder.encode(s, "UTF-8")`). Emitting the same bytes they emit
 * keeps golden values comparable across languages; decoding `+` as a space is what their
 * decoder does, so a value they send with a space survives.
 */

// URLEncoder leaves A-Z a-z 0-9 . - * _ alone and writes a space as `+`; encodeURIComponent
// also leaves ! ' ( ) ~ alone, so those are encoded here to match.
const EXTRA = /[!'()~]/g;
const hex = (c: string) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`;

/** Encodes `value` exactly as `java.net.URLEncoder.encode(value, "UTF-8")`. */
export function formEncode(value: string): string {
  return encodeURIComponent(value).replace(EXTRA, hex).replace(/%20/g, '+');
}

/**
 * Decodes as `java.net.URLDecoder.decode(value, "UTF-8")`: `+` is a space. Returns
 * undefined for invalid percent-encoding (a `%` not followed by two hex digits, or bytes
 * that are not UTF-8), where Java throws.
 */
export function formDecode(value: string): string | undefined {
  if (!value.includes('%') && !value.includes('+')) return value;
  try {
    return decodeURIComponent(value.replace(/\+/g, ' '));
  } catch {
    return undefined;
  }
}
