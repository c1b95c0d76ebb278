import { PathTemplate, PathTemplateError, RuleValidationError } from '@meshlet/core';

/** Tests a request path (no query string) against a compiled path template. */
export type PathMatcher = (path: string) => boolean;

/**
 * Compiles a path template with core's PathTemplate (the one template syntax of every rule
 * section: `{id}` or `:id`, `*`, a final `**`, mixed segments such as `{name}.{ext}`) into
 * a matcher; a bad template is a RuleValidationError at `path`, as rule parsers report.
 */
export function parsePathTemplate(template: string, path: string): PathMatcher {
  let compiled: PathTemplate;
  try {
    compiled = PathTemplate.parse(template);
  } catch (err) {
    if (err instanceof PathTemplateError) throw new RuleValidationError(path, err.reason);
    throw err;
  }
  return (p) => compiled.matches(p);
}
