import { RuleValidationError } from '@meshlet/core';

/** Tests a request path (no query string) against a compiled path template. */
export type PathMatcher = (path: string) => boolean;

const VARIABLE = /^\{[a-zA-Z_][a-zA-Z0-9_]*\}$/;
const LITERAL = /^[^{}*?#\s]*$/;

/**
 * Compiles a path template into a matcher: `/orders/{id}` matches one segment for `{id}`,
 * `*` matches one segment, a final `**` matches the rest (zero or more segments). A
 * trailing slash is not significant. The same spellings Spring's `@GetMapping` and
 * Express use for variables, so a rule can name the route the handler declares.
 */
export function parsePathTemplate(template: string, path: string): PathMatcher {
  if (!template.startsWith('/')) throw new RuleValidationError(path, `must start with "/" (got ${JSON.stringify(template)})`);
  const segments = trimSlash(template).split('/').slice(1);
  let source = '';
  segments.forEach((s, i) => {
    if (s === '**') {
      if (i !== segments.length - 1) throw new RuleValidationError(path, '"**" is allowed only as the last segment');
      source += '(?:/.*)?';
    } else if (s === '*' || VARIABLE.test(s)) source += '/[^/]+';
    else if (LITERAL.test(s)) source += `/${s.replace(/[.+^$()|[\]\\]/g, '\\$&')}`;
    else throw new RuleValidationError(path, `segment ${JSON.stringify(s)} is not a literal, "*", "**" or a {variable}`);
  });
  if (source === '') source = '/?';
  const re = new RegExp(`^${source}/?$`);
  return (p) => re.test(p);
}

function trimSlash(s: string): string {
  return s.length > 1 && s.endsWith('/') ? s.slice(0, -1) : s;
}
