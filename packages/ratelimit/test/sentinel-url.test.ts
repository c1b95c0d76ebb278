import assert from 'node:assert/strict';
import { it } from 'node:test';
import { MeshletError } from '@meshlet/core';
import { connectRedis, parseSentinelUrl } from '../src/index.js';

it('parses redis+sentinel://host:port,…/<name>', () => {
  assert.deepEqual(parseSentinelUrl('redis+sentinel://127.0.0.1:26379,10.0.0.2:26380,sentinel-3/mymaster'), {
    sentinels: [
      { host: '127.0.0.1', port: 26379 },
      { host: '10.0.0.2', port: 26380 },
      { host: 'sentinel-3', port: 26379 },
    ],
    name: 'mymaster',
  });
});

it('refuses a Sentinel URL without a primary name or with a bad port, naming redisUrl', () => {
  for (const bad of [
    'redis+sentinel://127.0.0.1:26379',
    'redis+sentinel://127.0.0.1:26379/',
    'redis+sentinel://127.0.0.1:99999/m',
    'redis+sentinel://:1/m',
  ]) {
    assert.throws(
      () => parseSentinelUrl(bad),
      (err: unknown) => err instanceof MeshletError && err.code === 'MESHLET_BAD_OPTION' && err.message.startsWith('redisUrl:'),
      bad,
    );
    assert.throws(() => connectRedis(bad), MeshletError, `connectRedis(${bad})`);
  }
});
