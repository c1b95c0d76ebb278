import assert from 'node:assert/strict';
import { it } from 'node:test';
import { MeshletError } from '@meshlet/core';
import { redisCreateClient } from '../src/redis-module.js';

it('@redis/client that cannot be loaded (a bundle without it) fails MESHLET_REDIS_NOT_INSTALLED naming the option, not a bare MODULE_NOT_FOUND', () => {
  const missing = (id: string) => {
    throw Object.assign(new Error(`Cannot find module '${id}'`), { code: 'MODULE_NOT_FOUND' });
  };
  assert.throws(
    () => redisCreateClient(missing),
    (err: unknown) =>
      err instanceof MeshletError &&
      err.code === 'MESHLET_REDIS_NOT_INSTALLED' &&
      /ratelimit\.redisUrl/.test(err.message) &&
      /@redis\/client/.test(err.message),
  );
  // Any other failure of the module is its own, passed on as it is.
  const broken = new Error('the module threw as it loaded');
  assert.throws(
    () =>
      redisCreateClient(() => {
        throw broken;
      }),
    (err: unknown) => err === broken,
  );
  // Installed (as here), it loads.
  assert.equal(typeof redisCreateClient(), 'function');
});
