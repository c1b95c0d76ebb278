/**
 * The one form of a request path that path rules (auth `apis`, rate-limit `api`, the API
 * catalog, breakers) compare: the canonical path. Frameworks route on readings of the
 * request target that differ (Express: the raw path, case-insensitively, the pathname of
 * an absolute-form target; Fastify: the percent-decoded path; a node:http app: often
 * `new URL(req.url, base)`, which resolves dot segments and reads `\` as `/`). A rule that
 * compared the raw target was missed by whichever reading differed. The canonical form
 * is at least as broad as each of them:
 *
 * - an absolute-form target (`GET http://host/a/b`) is its path (`/a/b`; none is `/`);
 * - the query (`?`) and a fragment (`#`) are cut off;
 * - percent-escapes are decoded (UTF-8), except `%2F` (a `/` inside a segment) and `%25`
 *   (a `%`), kept encoded with upper-case hex; an escape that is not UTF-8 is kept with
 *   upper-case hex; a `%` that starts no escape is written `%25`. So the form is a fixed
 *   point: canonicalPath(canonicalPath(p)) === canonicalPath(p);
 * - runs of `/` are one `/` (a template's segments are never empty);
 * - rules compare it lower-cased (`foldPath`): Express routes case-insensitively by default.
 *
 * A target whose readings cannot be made one is refused (`requestPath` gives undefined,
 * the pipeline answers 400): a `.` or `..` segment, also as `%2e` (Express and Fastify
 * route `/internal/..` to `/internal/:id`, URL resolution to `/`), a `\` before the query
 * (URL parsers read it as `/`, routers as a character), and a target that is neither a
 * path nor an absolute URL (`*`). Clients that build URLs (browsers, fetch, undici, curl)
 * resolve dot segments and never send them.
 *
 * A canonical path longer than REQUEST_PATH_MAX_LENGTH is refused too (the pipeline answers
 * 414): it is the `request.path` tag, which rule conditions (a regex among them) test, and a
 * tag's value is bounded so that a rule's work per request is.
 *
 * Linear in the length of the target; node:http bounds it by its header limit (16 KiB).
 */

/**
 * Longest canonical path of a request, in characters (IIS's `maxUrl`, the path without its
 * query, is 4,096 too). It bounds a regex condition's work on `request.path` as
 * TagLimits.maxValueBytes (512) bounds it on a tag's value; a document's regex budget
 * counts a regex on `request.path` eight times (see regexCost).
 */
export const REQUEST_PATH_MAX_LENGTH = 4_096;

const PERCENT = 37; // %
const SLASH = 47; // /
const BACKSLASH = 92; // \
const QUESTION = 63; // ?
const HASH = 35; // #

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  const l = c | 32;
  return l >= 97 && l <= 102 ? l - 87 : -1;
}

const HEX_DIGITS = '0123456789ABCDEF';
const escaped = (b: number): string => `%${HEX_DIGITS[b >> 4]}${HEX_DIGITS[b & 15]}`;

/** Decodes percent-decoded bytes as UTF-8; a byte that begins no valid sequence stays an escape. */
function decodeBytes(b: readonly number[]): string {
  let out = '';
  let i = 0;
  while (i < b.length) {
    const x = b[i] as number;
    if (x < 0x80) {
      out += String.fromCharCode(x);
      i++;
      continue;
    }
    // The sequence a lead byte starts: its length, its bits, the least code point it may
    // spell (a longer spelling than needed is not UTF-8).
    const len = x >= 0xf0 ? (x <= 0xf4 ? 4 : 0) : x >= 0xe0 ? 3 : x >= 0xc2 ? 2 : 0;
    let cp = len === 4 ? x & 0x07 : len === 3 ? x & 0x0f : x & 0x1f;
    const min = len === 4 ? 0x10000 : len === 3 ? 0x800 : 0x80;
    let ok = len > 0 && i + len <= b.length;
    for (let k = 1; ok && k < len; k++) {
      const y = b[i + k] as number;
      if ((y & 0xc0) !== 0x80) ok = false;
      else cp = (cp << 6) | (y & 0x3f);
    }
    if (ok && cp >= min && cp <= 0x10ffff && (cp < 0xd800 || cp > 0xdfff)) {
      out += String.fromCodePoint(cp);
      i += len;
    } else {
      out += escaped(x);
      i++;
    }
  }
  return out;
}

/**
 * The canonical form of a path (no query string): percent-escapes decoded but `%2F` and
 * `%25`, runs of `/` made one. Case is kept. A path with nothing to change is returned as
 * it is, without a copy.
 */
export function canonicalPath(path: string): string {
  if (!path.includes('%') && !path.includes('//')) return path;
  let out = '';
  let copied = 0; // path[copied, i) is plain text not yet in out
  const bytes: number[] = []; // escaped bytes not yet decoded
  const flush = () => {
    if (bytes.length > 0) {
      out += decodeBytes(bytes);
      bytes.length = 0;
    }
  };
  const n = path.length;
  let i = 0;
  while (i < n) {
    const c = path.charCodeAt(i);
    if (c === PERCENT) {
      if (i > copied) {
        flush();
        out += path.slice(copied, i);
      }
      const hi = hexValue(path.charCodeAt(i + 1));
      const lo = hi < 0 ? -1 : hexValue(path.charCodeAt(i + 2));
      if (lo < 0) {
        flush();
        out += '%25';
        i += 1;
      } else {
        const b = (hi << 4) | lo;
        if (b === 0x2f || b === 0x25) {
          flush();
          out += escaped(b);
        } else bytes.push(b);
        i += 3;
      }
      copied = i;
      continue;
    }
    if (c === SLASH && i > 0 && path.charCodeAt(i - 1) === SLASH) {
      // A second "/" in a row: what came before it goes out, the slash does not.
      if (i > copied) {
        flush();
        out += path.slice(copied, i);
      }
      copied = i + 1;
    }
    i++;
  }
  if (n > copied) {
    flush();
    out += path.slice(copied, n);
  }
  flush();
  return out;
}

/** Lower-cased as rules compare it; the string itself when it has no capital (no copy). */
export function foldCase(s: string): string {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if ((c >= 65 && c <= 90) || c >= 128) return s.toLowerCase();
  }
  return s;
}

// The last path folded, and its fold: every path rule of a request (each auth rule's and
// each limit's matcher, the API catalog) folds the same string, so after the first the fold
// is one comparison, not a scan per rule.
let lastPath = '/';
let lastFolded = '/';

/** What path templates compare: the canonical path, lower-cased. A fixed point, so cheap to apply again. */
export function foldPath(path: string): string {
  if (path === lastPath) return lastFolded;
  const folded = foldCase(canonicalPath(path));
  lastPath = path;
  lastFolded = folded;
  return folded;
}

// The last path made a rule value, and that value (as foldPath's memo: every condition on
// `request.path` in a request reads the same path).
let lastTagPath = '/';
let lastTagValue = '/';

/**
 * The `request.path` tag as rule conditions compare it: the canonical path lower-cased
 * (foldPath) without a trailing slash, as path templates compare a path, and as Express
 * routes (`/Login/` is `/login`'s handler). A condition's values are put in this form when
 * it is compiled, so `equals "/Login"` holds for `/login/` and a deny is not missed by case.
 */
export function pathTagValue(path: string): string {
  if (path === lastTagPath) return lastTagValue;
  const folded = foldPath(path);
  const value = folded.length > 1 && folded.charCodeAt(folded.length - 1) === SLASH ? folded.slice(0, -1) : folded;
  lastTagPath = path;
  lastTagValue = value;
  return value;
}

const SCHEME = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//;

/**
 * The canonical path of a request target as node:http gives it (`req.url`): origin-form
 * (`/a/b?q`) or absolute-form (`http://host/a/b?q`). Undefined when the target is refused
 * (see above): a dot segment, a `\` before the query, neither form, or a path longer than
 * `maxLength` (REQUEST_PATH_MAX_LENGTH unless given: a caller asking why a target was
 * refused gives Infinity).
 */
export function requestPath(target: string, maxLength = REQUEST_PATH_MAX_LENGTH): string | undefined {
  const n = target.length;
  let start = 0;
  if (target.charCodeAt(0) !== SLASH) {
    const scheme = SCHEME.exec(target);
    if (scheme === null) return undefined;
    let i = scheme[0].length;
    for (; i < n; i++) {
      const c = target.charCodeAt(i);
      if (c === SLASH || c === QUESTION || c === HASH) break;
      if (c === BACKSLASH) return undefined;
    }
    if (i === n || target.charCodeAt(i) !== SLASH) return '/';
    start = i;
  }
  let end = start;
  for (; end < n; end++) {
    const c = target.charCodeAt(end);
    if (c === QUESTION || c === HASH) break;
    if (c === BACKSLASH) return undefined;
  }
  const path = canonicalPath(start === 0 && end === n ? target : target.slice(start, end));
  return path.length > maxLength || hasDotSegment(path) ? undefined : path;
}

/** Whether a segment of `path` is `.` or `..`. */
function hasDotSegment(path: string): boolean {
  let from = 0; // the start of the current segment
  const n = path.length;
  for (let i = 0; i <= n; i++) {
    if (i < n && path.charCodeAt(i) !== SLASH) continue;
    const len = i - from;
    if ((len === 1 || len === 2) && path.charCodeAt(from) === 46 && (len === 1 || path.charCodeAt(from + 1) === 46)) return true;
    from = i + 1;
  }
  return false;
}
