import type { ConfigFormat } from './config-format.js';

export interface ContextLayout {
  readonly service: string;
  readonly profiles: readonly string[];
  readonly format: ConfigFormat;
  readonly prefix: string;
  readonly defaultContext: string;
  readonly profileSeparator: string;
}

/**
 * The contexts Spring Cloud Consul Config reads, most specific first (as its
 * ConsulPropertySources#getAutomaticContexts builds them, then reverses):
 * `config/<app>,<profile>/`, `config/<app>/`, `config/application,<profile>/`,
 * `config/application/`. With several profiles the later one wins. In `files` format a
 * context is a key (`config/orders-dev.yml`), `.properties` before `.yaml` before `.yml`.
 */
export function configContexts(layout: ContextLayout): readonly string[] {
  const suffixes = layout.format === 'files' ? ['.yml', '.yaml', '.properties'] : ['/'];
  const base = (name: string) => (layout.prefix === '' ? name : `${layout.prefix}/${name}`);
  const contexts: string[] = [];
  for (const name of [layout.defaultContext, layout.service]) {
    for (const suffix of suffixes) contexts.push(base(name) + suffix);
    for (const suffix of suffixes) {
      for (const profile of layout.profiles) contexts.push(base(name) + layout.profileSeparator + profile + suffix);
    }
  }
  return [...new Set(contexts.reverse())];
}

/**
 * The prefixes to watch so that every context is covered with as few watches (blocking
 * queries, in Consul) as possible: one per base name, `config/orders` covering
 * `config/orders/`, `config/orders,dev/` and `config/orders-dev.yml`. Entries under them
 * that belong to no context are ignored.
 */
export function watchPrefixes(layout: ContextLayout): readonly string[] {
  const base = (name: string) => (layout.prefix === '' ? name : `${layout.prefix}/${name}`);
  const all = [...new Set([base(layout.defaultContext), base(layout.service)])].sort();
  return all.filter((p) => !all.some((q) => q !== p && p.startsWith(q)));
}
