/**
 * The parts of a request URL the governed clients read (host, path, query), without a
 * WHATWG URL for the common shape `http://service/path?query`. Only a string whose every
 * part WHATWG URL would leave exactly as written takes the fast path; anything else
 * (another scheme, a port, user info, upper case or an IP-like last label in the host, a
 * dot segment, a backslash, a fragment, a character URL would percent-encode or drop)
 * goes through `new URL`, so both give the same parts.
 */
export interface UrlParts {
  readonly hostname: string;
  /** At least `/`. */
  readonly pathname: string;
  /** `?…`, or empty (an empty query `?` is empty too, as URL's `search`). */
  readonly search: string;
}

/** `http://` + a lower-case host of letters, digits, `-` and `.` + a path and query of characters URL keeps as they are. */
const FAST = /^http:\/\/([a-z0-9.-]+)((?:\/[A-Za-z0-9\-._~!$&'()*+,;=:@%]*)*)(\?[A-Za-z0-9\-._~!$&()*+,;=:@%/?]*)?$/;
/** A host whose last label URL would read as an IPv4 number (digits, or 0x…). */
const NUMERIC_LAST_LABEL = /(?:^|\.)(?:[0-9]+|0x[0-9a-f]*)\.?$/;
/** A `.` or `..` segment (URL removes them), also written `%2e`. */
const DOT_SEGMENT = /\/(?:\.|%2e){1,2}(?:\/|$)/i;

/**
 * Parts of URL strings split lately: a call to the same URL again takes them (the same
 * host string, whose hash later lookups by service name need not compute again) without
 * the regular expressions. Bounded: strings up to URL_CACHE_MAX_LENGTH, at most
 * URL_CACHE_SIZE of them, all dropped when full (URLs with ids in them come and go).
 */
const cache = new Map<string, UrlParts>();
export const URL_CACHE_SIZE = 512;
export const URL_CACHE_MAX_LENGTH = 256;

export function urlParts(input: string | URL): UrlParts {
  if (typeof input === 'string') {
    const hit = cache.get(input);
    if (hit !== undefined) return hit;
    const parts = split(input);
    if (input.length <= URL_CACHE_MAX_LENGTH) {
      if (cache.size >= URL_CACHE_SIZE) cache.clear();
      // A WHATWG URL is not kept: it is mutable, and the caller may have it.
      cache.set(input, parts instanceof URL ? { hostname: parts.hostname, pathname: parts.pathname, search: parts.search } : parts);
    }
    return parts;
  }
  return input;
}

/** Entries held by the cache, for tests. */
export function urlCacheSize(): number {
  return cache.size;
}

/** The parts of one URL string: the fast path when WHATWG URL would keep every part as written, else URL's. */
function split(input: string): UrlParts {
  const m = FAST.exec(input);
  if (m !== null) {
    const host = m[1] as string;
    const path = m[2] ?? '';
    const query = m[3] ?? '';
    if (
      host.length > 0 &&
      !host.includes('xn--') &&
      !NUMERIC_LAST_LABEL.test(host) &&
      !DOT_SEGMENT.test(path) &&
      !hasBadPercent(path) &&
      !hasBadPercent(query)
    )
      return { hostname: host, pathname: path === '' ? '/' : path, search: query.length <= 1 ? '' : query };
  }
  return new URL(input);
}

/** A `%` not followed by two hex digits: URL keeps it, but do not bet on it. */
function hasBadPercent(s: string): boolean {
  let i = s.indexOf('%');
  while (i !== -1) {
    if (!/^[0-9A-Fa-f]{2}$/.test(s.slice(i + 1, i + 3))) return true;
    i = s.indexOf('%', i + 1);
  }
  return false;
}
