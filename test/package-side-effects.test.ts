// Every package says what a bundler may drop (`sideEffects`): `false` when importing its
// modules does nothing but define things, else the files that do more, which must exist.
// A module not listed is read: its top level may hold only imports with bindings,
// declarations and exports (and TypeScript's decorator assignments to a class of its own).
// An expression statement (a registration, a `globalThis` or prototype write, a listener),
// a bare `import 'x'`, a top-level `await`, `if` or `try` there fails the test. What it does
// not see: a call in a declaration's initializer (`const x = install()`), whose effects
// would need the called code read; those were read by hand when the field was set.
import assert from 'node:assert/strict';
import { existsSync, globSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { it } from 'node:test';

const root = resolve('.');

interface Manifest {
  readonly name: string;
  readonly sideEffects?: unknown;
  readonly files: readonly string[];
}

const packages = globSync('packages/*/package.json', { cwd: root }).map((file) => ({
  dir: join(root, file, '..'),
  manifest: JSON.parse(readFileSync(join(root, file), 'utf8')) as Manifest,
}));

it('every package declares sideEffects: false, or a list of its own files that exist', () => {
  assert.ok(packages.length >= 16, `expected the packages, found ${packages.length}`);
  const problems: string[] = [];
  for (const { dir, manifest } of packages) {
    const { name, sideEffects } = manifest;
    if (sideEffects === false) continue;
    if (!Array.isArray(sideEffects) || sideEffects.length === 0) {
      problems.push(`${name}: sideEffects is ${JSON.stringify(sideEffects)}, not false or a list of files`);
      continue;
    }
    for (const file of sideEffects)
      if (typeof file !== 'string' || !file.startsWith('./') || !existsSync(join(dir, file)))
        problems.push(`${name}: sideEffects names ${JSON.stringify(file)}, not a file of the package`);
  }
  assert.deepEqual(problems, []);
});

it("a module a package does not list in sideEffects only defines things at its top level (the packages' built modules and bins)", () => {
  const problems: string[] = [];
  let read = 0;
  for (const { dir, manifest } of packages) {
    const listed = new Set(Array.isArray(manifest.sideEffects) ? manifest.sideEffects.map((f) => join(dir, String(f))) : []);
    const modules = globSync(['dist/src/**/*.js', 'bin/*.js'], { cwd: dir }).map((f) => join(dir, f));
    for (const file of modules) {
      if (listed.has(file)) continue;
      read++;
      for (const statement of effects(readFileSync(file, 'utf8')))
        problems.push(`${manifest.name}: ${file.slice(dir.length + 1)}: ${statement.slice(0, 120)}`);
    }
  }
  assert.ok(read >= 200, `expected the packages' modules, read ${read}`);
  assert.deepEqual(problems, []);
});

it('the reader finds the effects it looks for, and passes definitions', () => {
  const definitions = [
    "import { a } from 'a';",
    "import * as b from 'b';",
    "export { a } from 'a';",
    'export * from "c";',
    // biome-ignore lint/suspicious/noTemplateCurlyInString: module source for the reader, a template literal in it
    'const x = /}/.test(`${"}"}`) ? { a: 1 } : [1]; // }',
    'export const y = (() => { globalThis.z = 1; })();',
    'function f() { process.on("exit", () => {}); }',
    'export async function g() { await 1; }',
    'class C { static m() { if (1) {} } }',
    'export default class D {}',
    'let C2 = class C2 {};',
    'C2 = __decorate([Module({})], C2);',
    'const v = 1;\nvoid v;',
  ].join('\n');
  assert.deepEqual(effects(definitions), []);
  assert.deepEqual(
    effects(
      [
        "import 'reflect-metadata';",
        'globalThis[KEY] = store;',
        'process.on("exit", f);',
        'Array.prototype.x = 1;',
        'await load();',
        'if (a) { b(); }',
        'const m = await import("m");',
        'register(x)',
      ].join('\n'),
    ),
    [
      "import 'reflect-metadata';",
      'globalThis[KEY] = store;',
      'process.on("exit", f);',
      'Array.prototype.x = 1;',
      'await load();',
      'if (a) { b(); }',
      'const m = await import("m");',
      'register(x)',
    ],
  );
});

// --- a reader of the top level of an ES module, as tsc emits it -----------------------

type Token = { readonly kind: 'word' | 'punct' | 'string' | 'regex' | 'number'; readonly text: string; readonly at: number };

/** Words after which a `/` starts a regular expression, not a division. */
const BEFORE_REGEX = new Set([
  'return',
  'typeof',
  'instanceof',
  'in',
  'of',
  'new',
  'delete',
  'void',
  'throw',
  'case',
  'do',
  'else',
  'yield',
  'await',
]);

/**
 * The module's tokens, each with its depth of brackets (0: the top level). Strings, template
 * literals (their `${}` read as code), regular expressions and comments are single tokens or skipped.
 */
function tokens(source: string): { token: Token; depth: number }[] {
  const out: { token: Token; depth: number }[] = [];
  let depth = 0;
  /** For each open `${`: the bracket depth at which its `}` goes back into the template. */
  const templates: number[] = [];
  let i = 0;
  const push = (kind: Token['kind'], start: number) => out.push({ token: { kind, text: source.slice(start, i), at: start }, depth });
  const regexAllowed = () => {
    const last = out.at(-1)?.token;
    if (last === undefined) return true;
    if (last.kind === 'word') return BEFORE_REGEX.has(last.text);
    if (last.kind === 'punct') return !(last.text === ')' || last.text === ']' || last.text === '}');
    return false;
  };
  /** Reads a template literal's text from i (after a backtick or a `}` closing `${`) to its end or next `${`. */
  const templateText = (start: number) => {
    while (i < source.length) {
      const c = source[i];
      if (c === '\\') i += 2;
      else if (c === '`') {
        i++;
        push('string', start);
        return;
      } else if (c === '$' && source[i + 1] === '{') {
        i += 2;
        push('string', start);
        templates.push(depth);
        depth++;
        return;
      } else i++;
    }
    throw new Error('unterminated template literal');
  };
  while (i < source.length) {
    const c = source[i] as string;
    const start = i;
    if (/\s/.test(c)) i++;
    else if (c === '/' && source[i + 1] === '/') while (i < source.length && source[i] !== '\n') i++;
    else if (c === '/' && source[i + 1] === '*') i = source.indexOf('*/', i + 2) + 2;
    else if (c === '"' || c === "'") {
      i++;
      while (source[i] !== c) i += source[i] === '\\' ? 2 : 1;
      i++;
      push('string', start);
    } else if (c === '`') {
      i++;
      templateText(start);
    } else if (c === '/' && regexAllowed()) {
      i++;
      let inClass = false;
      while (inClass || source[i] !== '/') {
        if (source[i] === '\\') i++;
        else if (source[i] === '[') inClass = true;
        else if (source[i] === ']') inClass = false;
        i++;
      }
      i++;
      while (/[a-z]/.test(source[i] ?? '')) i++;
      push('regex', start);
    } else if (/[A-Za-z_$#]/.test(c)) {
      while (/[\w$#]/.test(source[i] ?? '')) i++;
      push('word', start);
    } else if (/[0-9]/.test(c)) {
      while (/[\w.]/.test(source[i] ?? '')) i++;
      push('number', start);
    } else if ('([{'.includes(c)) {
      i++;
      push('punct', start);
      depth++;
    } else if (')]}'.includes(c)) {
      depth--;
      if (c === '}' && templates.at(-1) === depth) {
        templates.pop();
        i++;
        templateText(start);
      } else {
        i++;
        push('punct', start);
      }
    } else {
      i++;
      push('punct', start);
    }
  }
  return out;
}

/** The top-level statements that do more than define: their text. */
function effects(source: string): string[] {
  // A bin's `#!` line is not JavaScript.
  const code = source.startsWith('#!') ? source.replace(/^#![^\n]*/, (line) => ' '.repeat(line.length)) : source;
  const statements: Token[][] = [];
  /** Statements with an `await` at their top level: they run something as the module loads. */
  const awaiting = new Set<Token[]>();
  let current: Token[] = [];
  for (const { token, depth } of tokens(code)) {
    current.push(token);
    if (depth !== 0) continue;
    if (token.text === 'await') awaiting.add(current);
    // A statement ends at a top-level `;`, or, for a declaration or a block statement (no `;`), at its body's `}`.
    const block = /^(export )?(default )?(async )?(function|class|if|for|while|try|switch|\{)\b/.test(current.map((t) => t.text).join(' '));
    if (token.text === ';' || (token.text === '}' && block && current.length > 1)) {
      statements.push(current);
      current = [];
    }
  }
  if (current.length > 0) statements.push(current);
  const classes = new Set<string>();
  for (const s of statements) {
    const at = s.findIndex((t) => t.text === 'class');
    const name = s[at + 1];
    if (at >= 0 && name?.kind === 'word') classes.add(name.text);
  }
  return statements
    .filter((s) => awaiting.has(s) || !definesOnly(s, classes))
    .map((s) => source.slice(s[0]?.at, (s.at(-1)?.at ?? 0) + (s.at(-1)?.text.length ?? 0)));
}

function definesOnly(s: readonly Token[], classes: ReadonlySet<string>): boolean {
  const [first, second] = s;
  if (first === undefined || first.text === ';') return true;
  // `import x from`, `import { x } from`, `import * as x from`: not `import 'x'` (for its effects) nor `import(`.
  if (first.text === 'import') return second?.kind === 'word' || second?.text === '{' || second?.text === '*';
  if (first.text === 'export') return true; // export lists, re-exports and declarations (their initializers: see the header)
  if (['const', 'let', 'var', 'function', 'class'].includes(first.text)) return true;
  if (first.text === 'async' && second?.text === 'function') return true;
  // `void x;`: names a binding (a compile-time check kept used), runs nothing.
  if (first.text === 'void' && second?.kind === 'word' && s.length <= 3) return true;
  // tsc's decorators: `C = C_1 = __decorate([...], C);`, a class of this module decorated as it is defined.
  const words = s.map((t) => t.text);
  const call = words.indexOf('__decorate');
  return (
    call > 0 &&
    classes.has(first.text) &&
    words.slice(0, call).every((w, k) => (k % 2 === 0 ? /^[\w$]+$/.test(w) : w === '=')) &&
    words.at(-3) === first.text
  );
}
