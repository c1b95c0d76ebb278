import { ConfigTooLargeError } from './config-errors.js';
import { parseProperties } from './properties-format.js';
import { parseYaml } from './yaml-format.js';

/**
 * What one config document may hold: its text (a Consul KV value is at most 512 KiB; a
 * local file twice that), and its keys once flattened (YAML's aliases repeat a subtree's
 * keys at every place they are used: a 4 KB document made 1.8 million). Spring estates'
 * documents hold tens to hundreds of keys.
 */
export const CONFIG_DOCUMENT_LIMITS = { chars: 1024 * 1024, keys: 10_000 } as const;

/**
 * How config is laid out in the KV store, as Spring Cloud Consul Config's `format`:
 * - `key-value` (Spring's default KEY_VALUE): every key under a context is a property,
 *   `config/orders/server/port` = `server.port`.
 * - `yaml` / `properties`: one key `<context>/<dataKey>` holds the whole document.
 * - `files` (git2consul style): the key `config/orders-dev.yml` is itself a file;
 *   `.yml`/`.yaml` parse as YAML, `.properties` as properties.
 */
export type ConfigFormat = 'key-value' | 'yaml' | 'properties' | 'files';

/**
 * Parses a document by its format, or by the file name's extension for `files`; one past
 * CONFIG_DOCUMENT_LIMITS is refused (ConfigTooLargeError naming the bound), its work bounded
 * by them too; one that does not parse, ConfigParseError.
 */
export function parseDocument(text: string, kind: 'yaml' | 'properties', source: string): Map<string, string> {
  const { chars, keys } = CONFIG_DOCUMENT_LIMITS;
  if (text.length > chars) throw new ConfigTooLargeError(source, 'chars', chars, text.length);
  const out = kind === 'yaml' ? parseYaml(text, source, keys) : parseProperties(text, source);
  if (out.size > keys) throw new ConfigTooLargeError(source, 'keys', keys, out.size);
  return out;
}

/** The document kind a file name implies, if any. */
export function kindOfFile(name: string): 'yaml' | 'properties' | undefined {
  if (name.endsWith('.yml') || name.endsWith('.yaml')) return 'yaml';
  if (name.endsWith('.properties')) return 'properties';
  return undefined;
}
