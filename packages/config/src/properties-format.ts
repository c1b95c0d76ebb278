import { ConfigParseError } from './config-errors.js';

const isBlank = (c: string | undefined) => c === ' ' || c === '\t' || c === '\f';

/**
 * Parses a `.properties` document with java.util.Properties#load's rules: `#`/`!`
 * comments, `=`, `:` or whitespace between key and value, a line ending in an odd number
 * of backslashes continues on the next (whose leading blanks are dropped), and escapes
 * `\t \n \r \f \uXXXX` (any other escaped character stands for itself). Later keys win.
 * Unlike Spring Cloud Consul (which reads the bytes as ISO-8859-1), text is kept as is.
 */
export function parseProperties(text: string, source = 'properties'): Map<string, string> {
  const out = new Map<string, string>();
  const lines = text.split(/\r\n|\r|\n/);
  for (let i = 0; i < lines.length; i++) {
    let line = stripLeading(lines[i] ?? '');
    if (line === '' || line[0] === '#' || line[0] === '!') continue;
    // Join continuation lines: a line ending in an odd run of backslashes.
    while (endsWithOddBackslashes(line)) {
      line = line.slice(0, -1);
      i++;
      if (i >= lines.length) break;
      line += stripLeading(lines[i] ?? '');
    }
    const { key, rest } = splitKey(line);
    out.set(unescapeProperty(key, source, i + 1), unescapeProperty(rest, source, i + 1));
  }
  return out;
}

function stripLeading(line: string): string {
  let s = 0;
  while (isBlank(line[s])) s++;
  return line.slice(s);
}

function endsWithOddBackslashes(line: string): boolean {
  let n = 0;
  for (let j = line.length - 1; j >= 0 && line[j] === '\\'; j--) n++;
  return n % 2 === 1;
}

function splitKey(line: string): { key: string; rest: string } {
  let k = 0;
  while (k < line.length) {
    const c = line[k];
    if (c === '\\') {
      k += 2;
      continue;
    }
    if (c === '=' || c === ':' || isBlank(c)) break;
    k++;
  }
  const key = line.slice(0, k);
  let v = k;
  while (isBlank(line[v])) v++;
  if (line[v] === '=' || line[v] === ':') {
    v++;
    while (isBlank(line[v])) v++;
  }
  return { key, rest: line.slice(v) };
}

const simpleEscapes: Record<string, string> = { t: '\t', n: '\n', r: '\r', f: '\f' };

function unescapeProperty(s: string, source: string, lineNo: number): string {
  if (!s.includes('\\')) return s;
  let out = '';
  for (let j = 0; j < s.length; j++) {
    const c = s[j] as string;
    if (c !== '\\') {
      out += c;
      continue;
    }
    const next = s[++j];
    if (next === undefined) break;
    if (next === 'u') {
      const hex = s.slice(j + 1, j + 5);
      if (!/^[0-9a-fA-F]{4}$/.test(hex)) throw new ConfigParseError(source, `line ${lineNo}: malformed \\uxxxx escape`);
      out += String.fromCharCode(Number.parseInt(hex, 16));
      j += 4;
    } else {
      out += simpleEscapes[next] ?? next;
    }
  }
  return out;
}
