import { MeshletError } from './errors.js';
import { canonicalPath, foldCase, foldPath } from './request-path.js';

/**
 * Path templates as OpenAPI writes them, so that API-level rules (auth, limits, breakers)
 * name an API, not a raw path, and the number of distinct keys stays bounded.
 *
 * A template starts with `/`; its segments are
 * - a literal: `users`, compared with the request's segment in the canonical form of
 *   `request-path.ts`: both percent-decoded (except `%2F` and `%25`) and lower-cased, so
 *   `/Users`, `/USERS` and `/%75sers` all match `users`;
 * - a parameter: `{id}` (OpenAPI) or `:id` (Express, normalised to `{id}`), one non-empty segment;
 * - a segment mixing literals and parameters: `{name}.{ext}`, `v{major}`, `report-{id}.pdf`.
 *   A parameter inside a segment ends at the first occurrence of the literal that follows it
 *   (`{name}.{ext}` on `archive.tar.gz`: name=archive, ext=tar.gz), so matching is linear
 *   and never backtracks. Two parameters side by side (`{a}{b}`) are refused: ambiguous;
 * - `*`: any one segment; `**`, only as the last segment: the rest of the path, zero or more segments.
 *
 * A trailing slash is not significant, on templates or on requests; nor are runs of `/`
 * in a request. Templates that differ only in case name one API. A query string must be
 * removed before matching (`requestPath` does it, with the rest of the canonical form). Parameter names are letters, digits and `_`, unique in a template.
 */
export const MAX_TEMPLATE_LENGTH = 1024;

/** A template that cannot be compiled; `template` is what was given. */
export class PathTemplateError extends MeshletError {
  static readonly code = 'MESHLET_BAD_PATH_TEMPLATE';
  readonly template: string;
  readonly reason: string;

  constructor(template: string, reason: string) {
    super(
      PathTemplateError.code,
      `path template ${JSON.stringify(template.slice(0, 120))}: ${reason}. Write it as OpenAPI does, e.g. /users/{id}`,
    );
    this.template = template;
    this.reason = reason;
  }
}

/** `text` as written (the template's spelling), `key` as compared (foldPath of it). */
type Segment =
  | { readonly kind: 'literal'; readonly text: string; readonly key: string }
  | { readonly kind: 'param'; readonly name: string }
  | { readonly kind: 'any' }
  | { readonly kind: 'rest' }
  /** Literals and parameter names alternate, literal first (possibly ''); `keys`: the literals as compared. */
  | {
      readonly kind: 'mixed';
      readonly literals: readonly string[];
      readonly keys: readonly string[];
      readonly names: readonly string[];
    };

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
// Characters a literal may not hold: braces belong to parameters, `?`/`#` start a query or
// fragment, whitespace never appears in a request path.
const BAD_LITERAL = /[{}?#\s*]/;

function parseSegment(s: string, names: Set<string>): Segment {
  if (s === '') throw new Error('empty segment ("//")');
  if (s === '*') return { kind: 'any' };
  if (s === '**') return { kind: 'rest' };
  if (s.startsWith(':')) {
    const name = s.slice(1);
    if (!NAME.test(name)) throw new Error(`":${name}" is not a parameter name (letters, digits, "_")`);
    addName(names, name);
    return { kind: 'param', name };
  }
  if (!s.includes('{') && !s.includes('}')) {
    if (s.includes('*')) throw new Error(`"*" only as a whole segment ("*" or a final "**"), got "${s}"`);
    if (BAD_LITERAL.test(s)) throw new Error(`segment "${s}" has a character not allowed in a path ({, }, ?, #, whitespace)`);
    return { kind: 'literal', text: s, key: foldPath(s) };
  }
  const literals: string[] = [];
  const segNames: string[] = [];
  let rest = s;
  for (;;) {
    const open = rest.indexOf('{');
    const lit = open < 0 ? rest : rest.slice(0, open);
    if (lit.includes('}')) throw new Error(`unbalanced "}" in segment "${s}"`);
    if (BAD_LITERAL.test(lit)) throw new Error(`segment "${s}" has a character not allowed in a path ({, }, ?, #, *, whitespace)`);
    if (segNames.length > 0 && lit === '' && open >= 0)
      throw new Error(`parameters side by side in "${s}" are ambiguous; put a literal between them`);
    literals.push(lit);
    if (open < 0) break;
    const close = rest.indexOf('}', open);
    if (close < 0) throw new Error(`unclosed "{" in segment "${s}"`);
    const name = rest.slice(open + 1, close);
    if (!NAME.test(name)) throw new Error(`"{${name}}" is not a parameter name (letters, digits, "_")`);
    addName(names, name);
    segNames.push(name);
    rest = rest.slice(close + 1);
  }
  if (segNames.length === 1 && literals[0] === '' && literals[1] === '') return { kind: 'param', name: segNames[0] as string };
  return { kind: 'mixed', literals, keys: literals.map(foldPath), names: segNames };
}

function addName(names: Set<string>, name: string): void {
  if (names.has(name)) throw new Error(`parameter "${name}" appears twice`);
  names.add(name);
}

function stripTrailingSlash(p: string): string {
  return p.length > 1 && p.endsWith('/') ? p.slice(0, -1) : p;
}

/** A compiled path template. Build once per rule or catalog change; match per request. */
export class PathTemplate {
  /** The canonical spelling: Express `:id` as `{id}`, no trailing slash. */
  readonly template: string;
  /** Parameter names, in order. */
  readonly params: readonly string[];
  readonly #segments: readonly Segment[];
  readonly #rest: boolean;

  private constructor(template: string, segments: Segment[], params: string[]) {
    this.template = template;
    this.#segments = segments;
    this.params = params;
    this.#rest = segments.at(-1)?.kind === 'rest';
    if (this.#rest) this.#segments = segments.slice(0, -1);
  }

  /** Compiles `template`; throws PathTemplateError saying what is wrong. */
  static parse(template: string): PathTemplate {
    if (typeof template !== 'string') throw new PathTemplateError(String(template), 'must be a string');
    if (template.length > MAX_TEMPLATE_LENGTH) throw new PathTemplateError(template, `longer than ${MAX_TEMPLATE_LENGTH} characters`);
    if (!template.startsWith('/')) throw new PathTemplateError(template, 'must start with "/"');
    const trimmed = stripTrailingSlash(template);
    const raw = trimmed === '/' ? [] : trimmed.split('/').slice(1);
    const names = new Set<string>();
    const segments: Segment[] = [];
    for (let i = 0; i < raw.length; i++) {
      let seg: Segment;
      try {
        seg = parseSegment(raw[i] as string, names);
      } catch (err) {
        throw new PathTemplateError(template, (err as Error).message);
      }
      if (seg.kind === 'rest' && i !== raw.length - 1) throw new PathTemplateError(template, '"**" is allowed only as the last segment');
      segments.push(seg);
    }
    return new PathTemplate(`/${segments.map(spell).join('/')}`, segments, [...names]);
  }

  /** Whether `path` (no query string) falls under this template, compared in the canonical form (foldPath). */
  matches(path: string): boolean {
    return this.matchParts(splitPath(foldPath(path)));
  }

  /**
   * The parameters of `path`, or undefined when it does not match. Values are in the
   * canonical form (percent-decoded but `%2F` and `%25`) and keep their case: the
   * comparison is case-insensitive, the values are the request's.
   */
  extract(path: string): Record<string, string> | undefined {
    const out: Record<string, string> = {};
    const canonical = canonicalPath(path);
    return this.matchParts(splitPath(foldCase(canonical)), out, splitPath(canonical)) ? out : undefined;
  }

  /**
   * Compares a path split by splitPath (parts[0] is the empty string before the first "/"),
   * folded by foldPath. `original`: the same path split before it was lower-cased, for the
   * parameters' values written to `out`.
   */
  matchParts(parts: readonly string[], out?: Record<string, string>, original?: readonly string[]): boolean {
    const segs = this.#segments;
    const n = parts.length - 1;
    if (this.#rest ? n < segs.length : n !== segs.length) return false;
    for (let i = 0; i < segs.length; i++) {
      const seg = segs[i] as Segment;
      const part = parts[i + 1] as string;
      switch (seg.kind) {
        case 'literal':
          if (part !== seg.key) return false;
          break;
        case 'param':
          if (part === '') return false;
          if (out) out[seg.name] = (original?.[i + 1] as string | undefined) ?? part;
          break;
        case 'any':
          if (part === '') return false;
          break;
        case 'mixed':
          if (!matchMixed(seg.keys, seg.names, part, out, original?.[i + 1])) return false;
          break;
        case 'rest':
          break;
      }
    }
    return true;
  }

  /** Sort key: more specific templates first (see ApiMatcher). */
  get specificity(): readonly number[] {
    const score: number[] = this.#segments.map((s) => (s.kind === 'literal' ? 5 : s.kind === 'mixed' ? 4 : 3));
    // A template that ends here beats one that goes on with "**" (they can both match only
    // when "**" matches nothing).
    score.push(this.#rest ? 1 : 2);
    return score;
  }

  /** The first segment when it is a literal, as compared (folded); ApiMatcher buckets templates by it. */
  get firstLiteral(): string | undefined {
    const first = this.#segments[0];
    return first?.kind === 'literal' ? first.key : undefined;
  }

  /** True when the template has no parameter, `*` or `**`: one path only. */
  get isLiteral(): boolean {
    return !this.#rest && this.#segments.every((s) => s.kind === 'literal');
  }
}

function spell(s: Segment): string {
  switch (s.kind) {
    case 'literal':
      return s.text;
    case 'param':
      return `{${s.name}}`;
    case 'any':
      return '*';
    case 'rest':
      return '**';
    case 'mixed':
      return s.literals.map((l, i) => (i < s.names.length ? `${l}{${s.names[i]}}` : l)).join('');
  }
}

// Literal prefix and suffix are anchored; each parameter in between runs to the first
// occurrence of the literal after it. No backtracking: linear in the segment's length.
// `original`: the segment before lower-casing, where the values are read when it has the
// same length (lower-casing lengthens a few characters, such as "İ"; then the folded value).
function matchMixed(
  literals: readonly string[],
  names: readonly string[],
  part: string,
  out?: Record<string, string>,
  original?: string,
): boolean {
  const values = original !== undefined && original.length === part.length ? original : part;
  const first = literals[0] as string;
  const last = literals[literals.length - 1] as string;
  if (!part.startsWith(first)) return false;
  let end = part.length;
  if (last !== '') {
    if (part.length < first.length + last.length || !part.endsWith(last)) return false;
    end = part.length - last.length;
  }
  let pos = first.length;
  for (let i = 0; i < names.length; i++) {
    const next = i + 1 < names.length ? (literals[i + 1] as string) : undefined;
    let stop: number;
    if (next === undefined) stop = end;
    else {
      stop = part.indexOf(next, pos + 1);
      if (stop < 0 || stop + next.length > end) return false;
    }
    if (stop <= pos) return false; // a parameter is never empty
    if (out) out[names[i] as string] = values.slice(pos, stop);
    pos = next === undefined ? stop : stop + next.length;
  }
  return pos === end;
}

/** Splits a request path (folded by foldPath) for PathTemplate.matchParts; a trailing slash is dropped. */
export function splitPath(path: string): string[] {
  const p = stripTrailingSlash(path);
  return p === '/' || p === '' ? [''] : p.split('/');
}

/** Why `template` is not a path template, or undefined when it is one; for rule parsers. */
export function pathTemplateProblem(template: string): string | undefined {
  try {
    PathTemplate.parse(template);
    return undefined;
  } catch (err) {
    if (err instanceof PathTemplateError) return err.reason;
    throw err;
  }
}

/** The canonical spelling of a template (`/users/:id/` → `/users/{id}`); throws PathTemplateError. */
export function normalizeTemplate(template: string): string {
  return PathTemplate.parse(template).template;
}

/** An API as rules and the catalog name it: a method and a path template, `GET /users/{id}`. */
export interface ApiTemplate {
  /** An HTTP method in capitals, or `*` for any. */
  readonly method: string;
  readonly path: string;
}

export const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'TRACE'] as const;

/** `GET /users/{id}`: the bounded key an API is counted and named by. */
export const apiKey = (t: ApiTemplate): string => `${t.method} ${t.path}`;

/** What ApiMatcher.match returns: the entry and its canonical key. Built once, never per call. */
export interface ApiMatch<T extends ApiTemplate> {
  /** `METHOD /canonical/{template}`. */
  readonly key: string;
  readonly entry: T;
}

interface Compiled<T extends ApiTemplate> {
  readonly template: PathTemplate;
  readonly result: ApiMatch<T>;
  readonly method: string;
  readonly anyMethod: boolean;
  readonly order: number;
}

/**
 * Finds the API a request falls under, among many templates. Built once per rule or
 * catalog change. Templates without parameters are one map lookup; the others are
 * compared segment by segment, most specific first:
 * - from the left, a literal segment beats a segment mixing literals and parameters,
 *   which beats a whole-segment parameter or `*`, which beats `**`;
 * - on equal paths, a named method beats `*`; then the first listed wins.
 * So `GET /users/me` wins over `GET /users/{id}` for `/users/me`, whatever the order.
 * A HEAD request falls back to the GET templates when no HEAD template matches, since
 * servers run the GET handler for it.
 */
export class ApiMatcher<T extends ApiTemplate = ApiTemplate> {
  readonly #exact = new Map<string, ApiMatch<T>>();
  readonly #byMethod = new Map<string, Index<T>>();
  readonly #anyMethod: Index<T>;
  readonly size: number;

  /** Throws PathTemplateError for a bad template. */
  constructor(entries: readonly T[]) {
    this.size = entries.length;
    const compiled: Compiled<T>[] = [];
    entries.forEach((entry, order) => {
      const template = PathTemplate.parse(entry.path);
      const method = entry.method.toUpperCase();
      const result: ApiMatch<T> = { key: `${method} ${template.template}`, entry };
      if (template.isLiteral) {
        // Looked up by the folded path: templates that differ only in case are one API (the first listed).
        const exact = `${method} ${foldPath(template.template)}`;
        if (!this.#exact.has(exact)) this.#exact.set(exact, result);
        return;
      }
      compiled.push({ template, result, method, anyMethod: method === '*', order });
    });
    compiled.sort(bySpecificity);
    const any = compiled.filter((c) => c.anyMethod);
    this.#anyMethod = index(any);
    const methods = new Set(compiled.filter((c) => !c.anyMethod).map((c) => c.method));
    // Each method's index also holds the `*` templates, in specificity order, so one pass decides.
    for (const m of methods) this.#byMethod.set(m, index(compiled.filter((c) => c.method === m || c.anyMethod)));
  }

  /**
   * The API `method path` falls under (path without query string), or undefined. The path
   * is compared in the canonical form, lower-cased (foldPath): give it folded already and
   * nothing is copied.
   */
  match(method: string, path: string): ApiMatch<T> | undefined {
    if (this.size === 0) return undefined;
    const p = stripTrailingSlash(foldPath(path));
    const found = this.#lookup(method, p);
    if (found !== undefined || method !== 'HEAD') return found;
    return this.#lookup('GET', p);
  }

  /** Whether any template matches; the cheap form for rules. */
  test(method: string, path: string): boolean {
    return this.match(method, path) !== undefined;
  }

  #lookup(method: string, path: string): ApiMatch<T> | undefined {
    // A template with no parameter is the most specific there is for its one path.
    const exact = this.#exact.get(`${method} ${path}`) ?? this.#exact.get(`* ${path}`);
    if (exact !== undefined) return exact;
    const idx = this.#byMethod.get(method) ?? this.#anyMethod;
    if (idx.size === 0) return undefined;
    const parts = path === '/' || path === '' ? [''] : path.split('/');
    // Templates starting with a literal beat all others (see the order above): their
    // bucket first, then the rest.
    const bucket = idx.byFirst.get(parts[1] as string);
    if (bucket !== undefined) for (const c of bucket) if (c.template.matchParts(parts)) return c.result;
    for (const c of idx.others) if (c.template.matchParts(parts)) return c.result;
    return undefined;
  }
}

interface Index<T extends ApiTemplate> {
  /** Templates whose first segment is a literal, by that literal. */
  readonly byFirst: ReadonlyMap<string, readonly Compiled<T>[]>;
  readonly others: readonly Compiled<T>[];
  readonly size: number;
}

function index<T extends ApiTemplate>(sorted: readonly Compiled<T>[]): Index<T> {
  const byFirst = new Map<string, Compiled<T>[]>();
  const others: Compiled<T>[] = [];
  for (const c of sorted) {
    const first = c.template.firstLiteral;
    if (first === undefined) others.push(c);
    else {
      const list = byFirst.get(first);
      if (list) list.push(c);
      else byFirst.set(first, [c]);
    }
  }
  return { byFirst, others, size: sorted.length };
}

function bySpecificity<T extends ApiTemplate>(a: Compiled<T>, b: Compiled<T>): number {
  const sa = a.template.specificity;
  const sb = b.template.specificity;
  for (let i = 0; i < Math.min(sa.length, sb.length); i++) {
    const d = (sb[i] as number) - (sa[i] as number);
    if (d !== 0) return d;
  }
  if (sa.length !== sb.length) return sb.length - sa.length;
  if (a.anyMethod !== b.anyMethod) return a.anyMethod ? 1 : -1;
  return a.order - b.order;
}
