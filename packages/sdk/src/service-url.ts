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

export function urlParts(input: string | URL): UrlParts {
  if (typeof input === 'string') {
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
    const url = new URL(input);
    return url;
  }
  return input;
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
