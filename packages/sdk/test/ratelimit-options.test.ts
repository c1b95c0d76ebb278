// createMesh refuses a bad `ratelimit` option with MESHLET_BAD_OPTION naming the field, before
// anything starts (found in review: a bulkhead of -1 slots was taken, and every call to the
// destination, HTTP or gRPC, then failed with a plain RangeError).
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { InMemoryKvStore, InMemoryRegistry, MemoryLogger, RuleValidationError } from '@meshlet/core';
import { listen, testInstance } from '@meshlet/core/testing';
import { defaultTracing } from '@meshlet/trace';
import { BulkheadFullError, createMesh, type MeshOptions } from '../src/index.js';
import { BULKHEAD_BOUNDS, outboundLimitSettings } from '../src/ratelimit-options.js';

type Ratelimit = NonNullable<MeshOptions['ratelimit']>;

const manyServices = Object.fromEntries(Array.from({ length: BULKHEAD_BOUNDS.services + 1 }, (_, i) => [`s${i}`, { maxConcurrent: 1 }]));

const cases: readonly [string, unknown, string][] = [
  ['a negative default', { bulkheads: { defaults: { maxConcurrent: -1 } } }, 'ratelimit.bulkheads.defaults.maxConcurrent'],
  ['no slots', { bulkheads: { defaults: { maxConcurrent: 0 } } }, 'ratelimit.bulkheads.defaults.maxConcurrent'],
  ['NaN slots', { bulkheads: { defaults: { maxConcurrent: Number.NaN } } }, 'ratelimit.bulkheads.defaults.maxConcurrent'],
  [
    'a fraction of a slot',
    { bulkheads: { services: { orders: { maxConcurrent: 1.5 } } } },
    'ratelimit.bulkheads.services.orders.maxConcurrent',
  ],
  [
    'slots as a string',
    { bulkheads: { services: { orders: { maxConcurrent: '8' } } } },
    'ratelimit.bulkheads.services.orders.maxConcurrent',
  ],
  [
    'infinite slots',
    { bulkheads: { services: { orders: { maxConcurrent: Infinity } } } },
    'ratelimit.bulkheads.services.orders.maxConcurrent',
  ],
  [
    'slots over the bound',
    { bulkheads: { services: { orders: { maxConcurrent: BULKHEAD_BOUNDS.maxConcurrent + 1 } } } },
    'ratelimit.bulkheads.services.orders.maxConcurrent',
  ],
  ['a negative queue', { bulkheads: { defaults: { maxQueue: -1 } } }, 'ratelimit.bulkheads.defaults.maxQueue'],
  [
    'a queue over the bound',
    { bulkheads: { defaults: { maxQueue: BULKHEAD_BOUNDS.maxQueue + 1 } } },
    'ratelimit.bulkheads.defaults.maxQueue',
  ],
  ['a service entry that is a number', { bulkheads: { services: { orders: 4 } } }, 'ratelimit.bulkheads.services.orders'],
  ['a service entry that is null', { bulkheads: { services: { orders: null } } }, 'ratelimit.bulkheads.services.orders'],
  ['a service entry that is an array', { bulkheads: { services: { orders: [4] } } }, 'ratelimit.bulkheads.services.orders'],
  [
    'a service name no client can call',
    { bulkheads: { services: { Orders: { maxConcurrent: 4 } } } },
    'ratelimit.bulkheads.services.Orders',
  ],
  ['a misspelt bulkhead field', { bulkheads: { defaults: { maxconcurrent: 4 } } }, 'ratelimit.bulkheads.defaults.maxconcurrent'],
  ['a misspelt bulkheads key', { bulkheads: { service: { orders: { maxConcurrent: 4 } } } }, 'ratelimit.bulkheads.service'],
  ['services that are not an object', { bulkheads: { services: 'orders' } }, 'ratelimit.bulkheads.services'],
  ['more services than the bound', { bulkheads: { services: manyServices } }, 'ratelimit.bulkheads.services'],
  ['bulkheads that are not an object', { bulkheads: true }, 'ratelimit.bulkheads'],
  ['a misspelt ratelimit key', { bulkhead: { defaults: { maxConcurrent: 4 } } }, 'ratelimit.bulkhead'],
  ['a ratelimit that is not an object', 'redis://127.0.0.1:6379', 'ratelimit'],
  ['a negative Redis timeout', { redisTimeoutMs: -1 }, 'ratelimit.redisTimeoutMs'],
  ['a Redis timeout of 0', { redisTimeoutMs: 0 }, 'ratelimit.redisTimeoutMs'],
  ['a NaN Redis timeout', { redisTimeoutMs: Number.NaN }, 'ratelimit.redisTimeoutMs'],
  ['a Redis timeout over a minute', { redisTimeoutMs: 3_600_000 }, 'ratelimit.redisTimeoutMs'],
  ['a Redis URL that is a number', { redisUrl: 6379 }, 'ratelimit.redisUrl'],
  ['a Redis URL that is not a URL', { redisUrl: '127.0.0.1:6379' }, 'ratelimit.redisUrl'],
  ['an HTTP URL for Redis', { redisUrl: 'http://127.0.0.1:6379' }, 'ratelimit.redisUrl'],
  ['a Sentinel URL without a primary name', { redisUrl: 'redis+sentinel://127.0.0.1:26379' }, 'ratelimit.redisUrl'],
];

const base = () => ({
  service: 'options-check',
  registry: new InMemoryRegistry(),
  rules: new InMemoryKvStore(),
  logger: new MemoryLogger(),
});

for (const [what, ratelimit, field] of cases) {
  it(`refuses ${what}, naming ${field}`, async () => {
    let refused: unknown;
    try {
      const mesh = createMesh({ ...base(), ratelimit: ratelimit as Ratelimit });
      await mesh.close();
    } catch (err) {
      refused = err;
    }
    assert.ok(refused, `createMesh took ratelimit ${what}`);
    assert.equal((refused as { code?: string }).code, 'MESHLET_BAD_OPTION', (refused as Error).message);
    assert.ok((refused as Error).message.startsWith(`${field}:`), `${(refused as Error).message} names ${field}`);
  });
}

it("takes bulkheads at their bounds, and applies a service's own numbers", async () => {
  let answer = () => {};
  let seen = 0;
  const upstream = await listen((_req, res) => {
    seen++;
    answer = () => res.end('done');
  });
  const registry = new InMemoryRegistry();
  await registry.register(testInstance('orders', 'orders-0', upstream.port));
  const mesh = createMesh({
    ...base(),
    registry,
    ratelimit: {
      redisTimeoutMs: 60_000,
      bulkheads: {
        defaults: { maxConcurrent: BULKHEAD_BOUNDS.maxConcurrent, maxQueue: BULKHEAD_BOUNDS.maxQueue },
        services: { orders: { maxConcurrent: 1, maxQueue: 0 }, constructor: { maxConcurrent: 2 } },
      },
    },
  });
  try {
    const first = mesh.fetch('http://orders/');
    while (seen < 1) await new Promise((r) => setImmediate(r));
    await assert.rejects(mesh.fetch('http://orders/'), (e: unknown) => e instanceof BulkheadFullError && e.maxConcurrent === 1);
    assert.equal(seen, 1, 'the refused call was never sent');
    answer();
    assert.equal(await (await first).text(), 'done');
  } finally {
    await mesh.close();
    await upstream.close();
  }
});

it('refuses a bad outbound adaptive limit before tracing starts', () => {
  const before = defaultTracing();
  assert.throws(
    () =>
      createMesh({
        ...base(),
        tracing: { exporters: [] },
        ratelimit: { outboundAdaptive: { defaults: { minLimit: 0 } } },
      }),
    (e: unknown) => e instanceof RuleValidationError && e.path === 'ratelimit.outboundAdaptive.defaults.minLimit',
  );
  assert.equal(defaultTracing(), before, 'the refused createMesh made no tracing');
});

it('takes every Redis URL form the connection takes: redis://, rediss:// with credentials, Sentinels (several hosts)', () => {
  for (const redisUrl of [
    'redis://127.0.0.1:6379',
    'rediss://user:secret@127.0.0.1:6380/0',
    'redis+sentinel://127.0.0.1:26379/mymaster',
    'redis+sentinel://127.0.0.1:26379,10.0.0.2:26380,sentinel-3/mymaster',
  ])
    assert.deepEqual(
      outboundLimitSettings({ redisUrl, redisTimeoutMs: 50 }),
      { bulkheads: undefined, outboundAdaptive: undefined },
      redisUrl,
    );
});

it('takes an empty Redis URL as no Redis, as an empty configured value is', () => {
  assert.deepEqual(outboundLimitSettings({ redisUrl: '' }), { bulkheads: undefined, outboundAdaptive: undefined });
});

it('names a refused bulkhead service within bounds, however long the name', () => {
  const long = `Bad${'x'.repeat(100_000)}`;
  assert.throws(
    () => outboundLimitSettings({ bulkheads: { services: { [long]: { maxConcurrent: 1 } } } }),
    (e: unknown) => {
      const message = (e as Error).message;
      assert.equal((e as { code?: string }).code, 'MESHLET_BAD_OPTION');
      assert.ok(message.startsWith(`ratelimit.bulkheads.services.Bad${'x'.repeat(40)}`), message.slice(0, 120));
      assert.ok(message.length < 600, `a message of ${message.length} characters`);
      return true;
    },
  );
});

it('refuses a Redis URL of another scheme naming the scheme bounded, however long', () => {
  assert.throws(
    () => outboundLimitSettings({ redisUrl: `${'x'.repeat(100_000)}://127.0.0.1:6379` }),
    (e: unknown) => {
      const message = (e as Error).message;
      assert.ok(message.startsWith('ratelimit.redisUrl: "xxx'), message.slice(0, 120));
      assert.ok(message.length < 400, `a message of ${message.length} characters`);
      return true;
    },
  );
});
