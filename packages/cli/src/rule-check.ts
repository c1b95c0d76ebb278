import { readFile } from 'node:fs/promises';
import { MeshletError, parseRuleDocument, type RuleDocument, type RuleKindSchema, RuleValidationError } from '@meshlet/core';
import type { CheckedRuleKind } from './rule-kinds.js';

export interface CheckOptions {
  /** Accept sections no loaded kind knows (stored unchecked). Off: a typo like `rout` must not pass silently. */
  readonly allowUnknown?: boolean;
  /** Also check each section against its package's JSON Schema. */
  readonly schemas?: boolean;
}

/** The result of a check that passed. */
export interface CheckedDocument {
  readonly document: RuleDocument;
  /** Sections stored unchecked because no kind knows them (only with allowUnknown). */
  readonly unchecked: readonly string[];
  /** Sections also checked against a JSON Schema. */
  readonly schemaChecked: readonly string[];
}

/**
 * Checks a rule document offline as the services will: the kinds' parsers first (they
 * are what runs), then the published JSON Schemas. Throws RuleValidationError whose path
 * names the field.
 */
export async function checkRuleDocument(
  text: string,
  kinds: readonly CheckedRuleKind[],
  opts: CheckOptions = {},
  expectService?: string,
): Promise<CheckedDocument> {
  // Core's parser, as the repository and every watcher run it; unknown sections are kept
  // here only to be refused below with the CLI's own hint.
  const document = parseRuleDocument(
    text,
    kinds.map((k) => k.kind),
    expectService,
    { unknownSections: 'keep' },
  );
  const known = new Set(kinds.map((k) => k.kind.name));
  const unchecked = [...document.sections.keys()].filter((name) => !known.has(name));
  const first = unchecked[0];
  if (first !== undefined && !opts.allowUnknown) {
    throw new RuleValidationError(
      first,
      `unknown rule section (known: ${[...known].join(', ')}); fix the name, or pass --allow-unknown to store it unchecked`,
      'section',
    );
  }
  const schemaChecked: string[] = [];
  if (opts.schemas) {
    const raw = JSON.parse(text) as Record<string, unknown>;
    for (const k of kinds) {
      if (!(k.kind.name in raw) || !k.schema) continue;
      const validate = await schemaValidator(k.kind.name, k.schema);
      const problem = validate(raw[k.kind.name]);
      if (problem)
        throw new RuleValidationError(
          `${k.kind.name}${problem.path}`,
          `${problem.message} (JSON Schema ${k.schema.package}/${k.schema.file})`,
        );
      schemaChecked.push(k.kind.name);
    }
  }
  return { document, unchecked, schemaChecked };
}

type SchemaCheck = (value: unknown) => { path: string; message: string } | undefined;

/** Code of the error a schema check gives when a kind's schema cannot be read. */
export const SCHEMA_UNAVAILABLE = 'MESHLET_RULE_SCHEMA_UNAVAILABLE';

const validators = new Map<string, Promise<SchemaCheck>>();

/** Compiles a kind's schema once; a schema that cannot be read fails the check, naming the kind (never skipped). */
function schemaValidator(kind: string, schema: RuleKindSchema): Promise<SchemaCheck> {
  const key = schema.url.href;
  let v = validators.get(key);
  if (v === undefined) {
    v = compile(kind, schema);
    validators.set(key, v);
    v.catch(() => validators.delete(key));
  }
  return v;
}

async function compile(kind: string, schema: RuleKindSchema): Promise<SchemaCheck> {
  let text: string;
  try {
    text = await readFile(schema.url, 'utf8');
  } catch (err) {
    throw new MeshletError(
      SCHEMA_UNAVAILABLE,
      `the JSON Schema of rule kind "${kind}" (${schema.package}/${schema.file}) cannot be read from ${schema.url.href}: ${(err as Error).message}`,
      { cause: err },
    );
  }
  // Loaded only when schemas are checked: the other commands need not pay for it.
  const { Ajv2020 } = await import('ajv/dist/2020.js');
  const ajv = new Ajv2020({ strict: false, allErrors: false });
  const validate = ajv.compile(JSON.parse(text) as object);
  return (value) => {
    if (validate(value)) return undefined;
    const e = validate.errors?.[0];
    if (!e) return { path: '', message: 'does not match the schema' };
    const missing = e.keyword === 'required' ? `.${String((e.params as { missingProperty?: string }).missingProperty)}` : '';
    const extra =
      e.keyword === 'additionalProperties' ? `.${String((e.params as { additionalProperty?: string }).additionalProperty)}` : '';
    return {
      path: jsonPath(e.instancePath) + (missing || extra),
      message: extra ? 'unknown field' : (e.message ?? 'does not match the schema'),
    };
  };
}

/** `/rules/0/weight` → `.rules[0].weight`, the parsers' notation. */
function jsonPath(pointer: string): string {
  if (pointer === '') return '';
  return pointer
    .split('/')
    .slice(1)
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((p) => (/^\d+$/.test(p) ? `[${p}]` : `.${p}`))
    .join('');
}
