import { parseAllDocuments, Scalar, type Tags } from 'yaml';
import { ConfigParseError, ConfigTooLargeError } from './config-errors.js';

/**
 * Parses a YAML document into dotted keys the way Spring's YamlProcessor flattens it:
 * nested maps join with `.`, list items become `key[0]`, an empty list is `""`, null is
 * `""`, an empty map disappears, a non-string map key `k` becomes `[k]`, a root that is
 * not a map is the key `document`. Documents in a `---` stream merge, later ones
 * winning. YAML 1.1 (SnakeYAML's dialect): `yes`/`on` are booleans and `<<` merges.
 * At most `maxKeys` keys written over the whole stream once flattened, an alias's keys
 * counted at each place it is used and a key a later document sets again counted again:
 * the flattening stops there (ConfigTooLargeError), so its work is bounded too.
 */
export function parseYaml(text: string, source = 'yaml', maxKeys = Number.POSITIVE_INFINITY): Map<string, string> {
  const out = new Map<string, string>();
  const docs = parseAllDocuments(text, {
    version: '1.1',
    merge: true,
    uniqueKeys: true,
    prettyErrors: true,
    customTags: snakeYamlBooleans,
  });
  if (!Array.isArray(docs)) return out; // an empty stream
  // One budget for the stream: per document, 662 documents each rewriting the same 10,000
  // keys passed (6.6 million writes, 2 s a change) with the map still at 10,000.
  const budget: KeyBudget = { left: maxKeys, max: maxKeys, source };
  for (const doc of docs) {
    const error = doc.errors[0];
    // Only the first line of the message: the rest quotes the document, which may hold secrets.
    if (error) throw new ConfigParseError(source, `invalid YAML: ${error.message.split('\n')[0]}`);
    const value: unknown = doc.toJS({ mapAsMap: true, maxAliasCount: 1000 });
    if (value === null || value === undefined) continue;
    if (value instanceof Map) flatten(out, value, '', budget);
    else flatten(out, new Map([['document', value]]), '', budget);
  }
  return out;
}

/**
 * The `yaml` package's YAML 1.1 booleans include `y`/`n`; SnakeYAML's (and so Spring's)
 * do not, and `n: 1` must stay the key `n`.
 */
const TRUE = /^(?:yes|Yes|YES|true|True|TRUE|on|On|ON)$/;
const FALSE = /^(?:no|No|NO|false|False|FALSE|off|Off|OFF)$/;
function snakeYamlBooleans(tags: Tags): Tags {
  return tags.map((tag) => {
    if (typeof tag === 'string' || tag.tag !== 'tag:yaml.org,2002:bool' || !('test' in tag) || !tag.test) return tag;
    const truthy = tag.test.test('true');
    return { ...tag, test: truthy ? TRUE : FALSE, resolve: () => new Scalar(truthy) };
  });
}

/** The keys a document may still set, and where it came from (for the refusal). */
interface KeyBudget {
  left: number;
  readonly max: number;
  readonly source: string;
}

function put(out: Map<string, string>, key: string, value: string, budget: KeyBudget): void {
  // Counted no further: an alias's keys count at each place it is used, millions from a few KB.
  if (--budget.left < 0) throw new ConfigTooLargeError(budget.source, 'keys', budget.max, budget.max + 1, true);
  out.set(key, value);
}

function flatten(out: Map<string, string>, map: Map<unknown, unknown>, path: string, budget: KeyBudget): void {
  for (const [rawKey, value] of map) {
    let key = typeof rawKey === 'string' ? rawKey : `[${scalarText(rawKey)}]`;
    if (path !== '') key = key.startsWith('[') ? path + key : `${path}.${key}`;
    if (value instanceof Map) {
      flatten(out, value, key, budget);
    } else if (Array.isArray(value)) {
      if (value.length === 0) put(out, key, '', budget);
      value.forEach((item, i) => {
        flatten(out, new Map([[`[${i}]`, item]]), key, budget);
      });
    } else {
      put(out, key, scalarText(value), budget);
    }
  }
}

function scalarText(value: unknown): string {
  if (value === null || value === undefined) return '';
  if (value instanceof Date) return value.toISOString();
  if (value instanceof Uint8Array) return Buffer.from(value).toString('base64');
  return String(value);
}
