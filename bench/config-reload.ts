// Config: the cost of a read, and of applying one change in Consul KV (parse, decrypt,
// merge, diff, event) for a service with 500 properties. The KV store is in memory, so
// this is Meshlet's share of the time from a KV write to the app's change event.

import { createConfig, encryptValue, generateKey } from '@meshlet/config';
import { InMemoryKvStore, silentLogger } from '@meshlet/core';
import { fmt, machine, quantile, table } from './harness.js';

const KEYS = 500;
const CHANGES = 100;

function yamlDocument(version: number, secret: string): string {
  const lines = ['db:', `  password: ${secret}`];
  for (let i = 0; i < KEYS; i++) lines.push(`key${i}:`, `  value: ${i === 0 ? version : i}`);
  return lines.join('\n');
}

async function reload(format: 'yaml' | 'key-value'): Promise<{ p50: number; p99: number }> {
  const kv = new InMemoryKvStore();
  const key = generateKey();
  const secret = encryptValue('s3cret', key, 'db.password');
  if (format === 'yaml') await kv.put('config/orders/data', yamlDocument(0, secret));
  else for (let i = 0; i < KEYS; i++) await kv.put(`config/orders/key${i}/value`, String(i));
  const config = await createConfig({ kv, service: 'orders', format, env: {}, keys: [key], logger: silentLogger });
  const times = new Float64Array(CHANGES);
  let t0 = 0n;
  let seen = 0;
  config.onChange(() => {
    times[seen++] = Number(process.hrtime.bigint() - t0) / 1000;
  });
  for (let v = 1; v <= CHANGES; v++) {
    t0 = process.hrtime.bigint();
    if (format === 'yaml') await kv.put('config/orders/data', yamlDocument(v, secret));
    else await kv.put('config/orders/key0/value', String(v + 1000));
  }
  config.close();
  if (seen !== CHANGES) throw new Error(`expected ${CHANGES} change events, saw ${seen}`);
  times.sort();
  return { p50: quantile(times, 0.5), p99: quantile(times, 0.99) };
}

export async function configReload(): Promise<string> {
  const kv = new InMemoryKvStore();
  for (let i = 0; i < KEYS; i++) await kv.put(`config/orders/key${i}/value`, String(i));
  const config = await createConfig({ kv, service: 'orders', env: {}, logger: silentLogger });
  const N = 1_000_000;
  let sink = 0;
  const g0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) sink += config.getNumber(`key${i % KEYS}.value`, 0);
  const getNs = Number(process.hrtime.bigint() - g0) / N;
  config.close();
  if (sink < 0) throw new Error('unreachable');
  const yaml = await reload('yaml');
  const keyValue = await reload('key-value');
  return [
    '## Config (@meshlet/config)',
    '',
    `${machine()}. ${KEYS} properties; a change is one KV write, timed to the app's change event (${CHANGES} changes; in-memory KV, so Consul's own latency is not included).`,
    '',
    table(
      ['measure', 'p50', 'p99'],
      [
        ['getNumber(key) (ns/op, mean)', fmt(getNs, 0), '—'],
        ['change in a 500-key YAML document with one ENC value (µs)', fmt(yaml.p50, 0), fmt(yaml.p99, 0)],
        ['change of one key among 500 key-value keys (µs)', fmt(keyValue.p50, 0), fmt(keyValue.p99, 0)],
      ],
    ),
  ].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(await configReload());
