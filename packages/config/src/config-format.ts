import { parseProperties } from './properties-format.js';
import { parseYaml } from './yaml-format.js';

/**
 * How config is laid out in the KV store, as Spring Cloud Consul Config's `format`:
 * - `key-value` (Spring's default KEY_VALUE): every key under a context is a property,
 *   `config/orders/server/port` = `server.port`.
 * - `yaml` / `properties`: one key `<context>/<dataKey>` holds the whole document.
 * - `files` (git2consul style): the key `config/orders-dev.yml` is itself a file;
 *   `.yml`/`.yaml` parse as YAML, `.properties` as properties.
 */
export type ConfigFormat = 'key-value' | 'yaml' | 'properties' | 'files';

/** Parses a document by its format, or by the file name's extension for `files`. */
export function parseDocument(text: string, kind: 'yaml' | 'properties', source: string): Map<string, string> {
  return kind === 'yaml' ? parseYaml(text, source) : parseProperties(text, source);
}

/** The document kind a file name implies, if any. */
export function kindOfFile(name: string): 'yaml' | 'properties' | undefined {
  if (name.endsWith('.yml') || name.endsWith('.yaml')) return 'yaml';
  if (name.endsWith('.properties')) return 'properties';
  return undefined;
}
