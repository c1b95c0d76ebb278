/**
 * An API as rules name it: a method and a path template, `GET /users/{id}`. `{name}`
 * matches one path segment and a final `**` the rest of the path. The key
 * (`GET /users/{id}`) names the API breaker, so a path full of ids does not make a breaker
 * per id.
 */
export interface ApiTemplate {
  /** An HTTP method in capitals, or `*` for any. */
  readonly method: string;
  readonly path: string;
}

export const apiKey = (t: ApiTemplate) => `${t.method} ${t.path}`;

const PARAM = /^\{[A-Za-z_][A-Za-z0-9_]*\}$/;

/** Why `path` is not a template, or undefined when it is one. */
export function templateProblem(path: string): string | undefined {
  if (!path.startsWith('/')) return 'must start with "/"';
  const segments = path.split('/').slice(1);
  for (let i = 0; i < segments.length; i++) {
    const s = segments[i] as string;
    if (s === '**' && i === segments.length - 1) continue;
    if (s.includes('*')) return '"*" only as a whole last segment "**"';
    if (s.includes('{') || s.includes('}')) {
      if (!PARAM.test(s)) return `segment "${s}" must be a whole {name}`;
    }
  }
  return undefined;
}

interface Compiled {
  readonly key: string;
  /** Literal segment, or null for a `{param}`. */
  readonly segments: readonly (string | null)[];
  readonly rest: boolean;
}

/**
 * Finds the template a request falls under. Built once per rule change; templates without
 * parameters are one map lookup, the others a segment compare, first listed wins.
 */
export class ApiMatcher {
  readonly #exact = new Map<string, string>();
  readonly #byMethod = new Map<string, Compiled[]>();
  readonly size: number;

  constructor(templates: readonly ApiTemplate[]) {
    this.size = templates.length;
    for (const t of templates) {
      const key = apiKey(t);
      const raw = t.path.split('/').slice(1);
      const rest = raw[raw.length - 1] === '**';
      if (rest) raw.pop();
      const segments = raw.map((s) => (PARAM.test(s) ? null : s));
      if (!rest && !segments.includes(null)) {
        if (!this.#exact.has(key)) this.#exact.set(key, key);
        continue;
      }
      let list = this.#byMethod.get(t.method);
      if (!list) {
        list = [];
        this.#byMethod.set(t.method, list);
      }
      list.push({ key, segments, rest });
    }
  }

  /** The key of the API `method path` falls under (path without query), or undefined. */
  match(method: string, path: string): string | undefined {
    if (this.size === 0) return undefined;
    const exact = this.#exact.get(`${method} ${path}`) ?? this.#exact.get(`* ${path}`);
    if (exact !== undefined) return exact;
    const a = this.#byMethod.get(method);
    const b = this.#byMethod.get('*');
    if (a === undefined && b === undefined) return undefined;
    const parts = path.split('/');
    return (a && find(a, parts)) ?? (b && find(b, parts));
  }
}

function find(list: readonly Compiled[], parts: readonly string[]): string | undefined {
  const n = parts.length - 1; // parts[0] is the empty string before the leading "/"
  outer: for (const c of list) {
    const segs = c.segments;
    if (c.rest ? n < segs.length : n !== segs.length) continue;
    for (let i = 0; i < segs.length; i++) {
      const s = segs[i];
      const p = parts[i + 1] as string;
      if (s === null ? p === '' : s !== p) continue outer;
    }
    return c.key;
  }
  return undefined;
}
