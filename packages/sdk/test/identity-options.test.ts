// createMesh's `auth.maxSkewMs` and `auth.ttlMs` reach the verifier and the signer as given:
// a skew of 0 was taken by the option check and then dropped (the verifier kept its 5 s),
// and a ttlMs the option check never saw could exceed what every verifier accepts, which
// made every caller anonymous.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { it } from 'node:test';
import { DEFAULT_MAX_LIFETIME_MS, IDENTITY_HEADER, meshKey, signIdentity, verifiedCaller } from '@meshlet/auth';
import { InMemoryKvStore, InMemoryRegistry, ManualClock, MemoryLogger } from '@meshlet/core';
import { listen } from '@meshlet/core/testing';
import { createMesh } from '../src/index.js';

const callerService = (req: unknown, res: { end(body: string): void }) => {
  void req;
  res.end(JSON.stringify(verifiedCaller()?.service ?? null));
};

it('a clock skew of 0 refuses a token the moment it expires', async () => {
  const key = meshKey('k1', randomBytes(32).toString('base64'));
  const clock = new ManualClock(1_000_000);
  const mesh = createMesh({
    service: 'payment',
    registry: new InMemoryRegistry(),
    rules: new InMemoryKvStore(),
    clock,
    auth: { keys: [key], maxSkewMs: 0 },
    logger: new MemoryLogger(),
  });
  const server = await listen(mesh.httpHandler(callerService));
  try {
    const token = signIdentity({ service: 'orders', namespace: 'default', instance: 'o1' }, key, clock, {
      audience: 'payment',
      ttlMs: 1000,
    });
    const callerAt = async () =>
      (await (await fetch(`http://127.0.0.1:${server.port}/`, { headers: { [IDENTITY_HEADER]: token } })).json()) as string | null;
    clock.advance(1000);
    assert.equal(await callerAt(), 'orders', 'good up to its expiry');
    clock.advance(1);
    assert.equal(await callerAt(), null, 'one millisecond past its expiry, with no skew tolerated');
  } finally {
    await server.close();
    await mesh.close();
  }
});

it('a caller signing with the longest ttlMs allowed is verified by its callee', async () => {
  const key = meshKey('k1', randomBytes(32).toString('base64'));
  const registry = new InMemoryRegistry();
  const rules = new InMemoryKvStore();
  const auth = { keys: [key], ttlMs: DEFAULT_MAX_LIFETIME_MS };
  const payment = createMesh({ service: 'payment', registry, rules, auth, logger: new MemoryLogger() });
  const server = await listen(payment.httpHandler(callerService));
  const orders = createMesh({ service: 'orders', registry, rules, auth, logger: new MemoryLogger() });
  try {
    await payment.register({ port: server.port });
    assert.equal(await (await orders.fetch('http://payment/')).json(), 'orders');
  } finally {
    await server.close();
    await orders.close();
    await payment.close();
  }
});
