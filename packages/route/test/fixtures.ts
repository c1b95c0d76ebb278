import type { Health, Instance, TagLookup } from '@meshlet/core';

/** An instance of `service` with `metadata`; port from the id's digits so that ids stay unique. */
export function instance(service: string, id: string, metadata: Record<string, string> = {}, health: Health = 'passing'): Instance {
  return { id, service, address: '10.0.0.1', port: 8000, tags: [], metadata, health };
}

/** A TagLookup over a plain record. */
export function tags(record: Record<string, string> = {}): TagLookup {
  return (t) => record[t];
}

/** How many times each value of `key(x)` occurs. */
export function countBy<T>(items: Iterable<T>, key: (x: T) => string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of items) {
    const k = key(x);
    out[k] = (out[k] ?? 0) + 1;
  }
  return out;
}
