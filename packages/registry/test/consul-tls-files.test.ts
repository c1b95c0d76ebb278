import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { MeshletError } from '@meshlet/core';
import { ConsulClient } from '../src/index.js';

// Consul's CLI variables for TLS name files; they are read bounded (core's readPemFile).
const ca = fileURLToPath(new URL('../../../../test/fixtures/tls/ca.pem', import.meta.url));

/** Runs `fn` with `CONSUL_CACERT` set to `file`, the variable restored after. */
function withCaCert<T>(file: string, fn: () => T): T {
  const before = process.env.CONSUL_CACERT;
  process.env.CONSUL_CACERT = file;
  try {
    return fn();
  } finally {
    if (before === undefined) delete process.env.CONSUL_CACERT;
    else process.env.CONSUL_CACERT = before;
  }
}

describe("Consul's TLS files from its variables", () => {
  it('reads a CA file that CONSUL_CACERT names', () => {
    const client = withCaCert(ca, () => new ConsulClient({ address: 'https://127.0.0.1:8501' }));
    assert.equal(client.address, 'https://127.0.0.1:8501');
  });

  it('refuses /dev/zero as CONSUL_CACERT at once, naming the variable (it was read until memory ran out)', () => {
    assert.throws(
      () => withCaCert('/dev/zero', () => new ConsulClient({ address: 'https://127.0.0.1:8501' })),
      (err: unknown) =>
        err instanceof MeshletError &&
        err.code === 'MESHLET_BAD_OPTION' &&
        /^CONSUL_CACERT: "\/dev\/zero" is not a regular file$/.test(err.message),
    );
  });
});
