import { readFileSync } from 'node:fs';
import { parse, stringify } from 'yaml';

/** A literal TSF YAML document from test/fixtures (tests run from dist/test). */
export function fixture(name: string): string {
  return readFileSync(new URL(`../../test/fixtures/${name}`, import.meta.url), 'utf8');
}

type Yaml = Record<string, unknown> & Record<number, unknown>;

/** The fixture with one edit applied to its parsed form, written back as YAML. */
export function edited(name: string, edit: (doc: Yaml) => void): string {
  const doc = parse(fixture(name)) as Yaml;
  edit(doc);
  return stringify(doc);
}

/** Walks a parsed YAML value by keys and indexes. */
export function at(value: unknown, ...path: (string | number)[]): Yaml {
  let v = value;
  for (const p of path) v = (v as Yaml)[p];
  return v as Yaml;
}
