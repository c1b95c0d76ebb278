// Issue #16 item 9: identity keys rotate on a running mesh (signer and verifier, with an
// overlap so tokens of the old key stay good until they expire), and can come from
// @meshlet/config with ENC(...) values. Real servers on 127.0.0.1, a manual clock.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { IDENTITY_HEADER, IdentityVerifier, type MeshKey, meshKey, signIdentity } from '@meshlet/auth';
import { createConfig, encryptValue, generateKey } from '@meshlet/config';
import { InMemoryKvStore, InMemoryRegistry, ManualClock, MemoryLogger, systemClock } from '@meshlet/core';
import { listen, type TestServer } from '@meshlet/core/testing';
import { createMesh, followIdentityKeys, type Mesh, meshKeysFromConfig } from '../src/index.js';

const newKey = (id: string): MeshKey => meshKey(id, randomBytes(32).toString('base64'));
const DENY_ANONYMOUS = { auth: { rules: [{ name: 'no-anonymous', action: 'deny', identity: 'anonymous' }] } };

describe('rotating identity keys on a running mesh', () => {
  const registry = new InMemoryRegistry();
  const rules = new InMemoryKvStore();
  const clock = new ManualClock(Date.now());
  const k1 = newKey('k1');
  const k2 = newKey('k2');
  let payment: Mesh;
  let orders: Mesh;
  let server: TestServer;
  before(async () => {
    await rules.put('meshlet/rules/payment', JSON.stringify({ service: 'payment', ...DENY_ANONYMOUS }));
    payment = createMesh({ service: 'payment', registry, rules, clock, auth: { keys: [k1] }, logger: new MemoryLogger() });
    server = await listen(payment.httpHandler((req, res) => res.end(String(req.headers[IDENTITY_HEADER]).split('|')[1])));
    await payment.register({ port: server.port });
    await payment.rulesInForce('payment');
    orders = createMesh({ service: 'orders', registry, rules, clock, auth: { keys: [k1] }, logger: new MemoryLogger() });
  });
  after(async () => {
    await server.close();
    await orders.close();
    await payment.close();
  });

  const raw = (token: string) => globalThis.fetch(`http://127.0.0.1:${server.port}/`, { headers: { [IDENTITY_HEADER]: token } });
  const oldToken = () => signIdentity({ service: 'orders', namespace: 'default', instance: 'orders' }, k1, clock, { audience: 'payment' });

  it('signer and verifier switch at once; a token of the old key stays good through the overlap, then is refused', async () => {
    const inFlight = oldToken();
    payment.setIdentityKeys([k2]);
    orders.setIdentityKeys([k2]);
    const call = await orders.fetch('http://payment/');
    assert.equal(call.status, 200);
    assert.equal(await call.text(), 'k2', 'orders signs with the new key');
    assert.equal((await raw(inFlight)).status, 200, 'a token signed just before the change');
    clock.advance(29_000);
    assert.equal((await raw(oldToken())).status, 200, 'still inside the overlap (ttl + skew = 35 s)');
    clock.advance(6_001);
    assert.equal((await raw(oldToken())).status, 403, 'the old key is retired');
    assert.equal((await orders.fetch('http://payment/')).status, 200);
  });

  it('bad keys are refused with a code and change nothing', async () => {
    // k2 is in force: other bytes under its id would fail every token signed with it at once.
    const k2Rebytes = meshKey('k2', randomBytes(32).toString('base64'));
    for (const bad of [
      [],
      [{ id: 'short', key: new Uint8Array(8) }],
      [{ id: 'text', key: 'x' }],
      [k2, k2],
      [null],
      [k2Rebytes],
    ] as unknown as MeshKey[][]) {
      assert.throws(
        () => orders.setIdentityKeys(bad),
        (err: unknown) => (err as { code?: string }).code === 'MESHLET_BAD_MESH_KEY',
      );
    }
    const call = await orders.fetch('http://payment/');
    assert.equal(call.status, 200);
    assert.equal(await call.text(), 'k2');
    // A key given as text (a JavaScript app, or config read without meshKey) signed with one byte before.
    assert.throws(
      () =>
        createMesh({
          service: 'weak',
          registry,
          rules,
          auth: { keys: [{ id: 'k1', key: 'x' } as unknown as MeshKey] },
          logger: new MemoryLogger(),
        }),
      (err: unknown) => (err as { code?: string }).code === 'MESHLET_BAD_MESH_KEY' && /must be bytes/.test((err as Error).message),
    );
  });

  it('a mesh without auth says so', () => {
    const plain = createMesh({ service: 'plain', registry, rules, logger: new MemoryLogger() });
    assert.throws(
      () => plain.setIdentityKeys([k2]),
      (err: unknown) => (err as { code?: string }).code === 'MESHLET_BAD_OPTION',
    );
    void plain.close();
  });
});

it('IdentityVerifier.setKeys without an overlap refuses the old key at once (unchanged), with one keeps it for that long', () => {
  const clock = new ManualClock(1_000_000);
  const a = newKey('a');
  const b = newKey('b');
  const verifier = new IdentityVerifier({ keys: [a], clock, audience: 'p' });
  const token = () => signIdentity({ service: 's', namespace: 'n', instance: 'i' }, a, clock, { audience: 'p' });
  verifier.setKeys([b]);
  assert.equal(verifier.check(token()).ok, false);
  verifier.setKeys([a]);
  verifier.setKeys([b], { overlapMs: 1_000 });
  assert.deepEqual(verifier.keyIds, ['b', 'a']);
  assert.equal(verifier.check(token()).ok, true);
  clock.advance(1_000);
  assert.equal(verifier.check(token()).ok, false);
  assert.deepEqual(verifier.keyIds, ['b']);
});

describe('identity keys from @meshlet/config, ENC(...) values', () => {
  it('reads the keys, decrypted, newest first; a change in config rotates the running mesh', async () => {
    const kv = new InMemoryKvStore();
    const configKey = generateKey();
    const k1 = randomBytes(32).toString('base64');
    const k2 = randomBytes(32).toString('base64');
    const yaml = (keys: [string, string][]) =>
      `meshlet:\n  auth:\n    keys:\n${keys.map(([id, k], i) => `      - id: ${id}\n        key: ${encryptValue(k, configKey, `meshlet.auth.keys[${i}].key`)}\n`).join('')}`;
    await kv.put('config/keyed/data', yaml([['c1', k1]]));
    const config = await createConfig({ kv, service: 'keyed', format: 'yaml', keys: [configKey], env: {} });
    const keys = meshKeysFromConfig(config);
    assert.deepEqual(
      keys.map((k) => k.id),
      ['c1'],
    );
    assert.deepEqual(Buffer.from(keys[0]?.key ?? []).toString('base64'), k1);

    const registry = new InMemoryRegistry();
    const rules = new InMemoryKvStore();
    const target = createMesh({ service: 'target', registry, rules, auth: { keys }, logger: new MemoryLogger() });
    const server = await listen(target.httpHandler((req, res) => res.end(String(req.headers[IDENTITY_HEADER]).split('|')[1])));
    await target.register({ port: server.port });
    const keyed = createMesh({ service: 'keyed', registry, rules, auth: { keys }, logger: new MemoryLogger() });
    const stopKeyed = followIdentityKeys(keyed, config);
    const stopTarget = followIdentityKeys(target, config);
    try {
      assert.equal(await (await keyed.fetch('http://target/')).text(), 'c1');
      // The rollover's first step: the new key behind the old one, verified and not yet signed with.
      await kv.put(
        'config/keyed/data',
        yaml([
          ['c1', k1],
          ['c2', k2],
        ]),
      );
      // The config watch applies the change; wait on it, not on time.
      for (let i = 0; i < 500 && config.get('meshlet.auth.keys[1].id') !== 'c2'; i++) await new Promise((r) => setImmediate(r));
      assert.equal(config.get('meshlet.auth.keys[1].id'), 'c2');
      assert.equal(await (await keyed.fetch('http://target/')).text(), 'c1');
      // The second, once every service has the first: the new key signs.
      await kv.put(
        'config/keyed/data',
        yaml([
          ['c2', k2],
          ['c1', k1],
        ]),
      );
      for (let i = 0; i < 500 && config.get('meshlet.auth.keys[0].id') !== 'c2'; i++) await new Promise((r) => setImmediate(r));
      assert.equal(config.get('meshlet.auth.keys[0].id'), 'c2');
      const call = await keyed.fetch('http://target/');
      assert.equal(call.status, 200);
      assert.equal(await call.text(), 'c2');

      // A key that cannot be used (8 bytes): logged with a code, the keys in force stay.
      await kv.put('config/keyed/data', 'meshlet:\n  auth:\n    keys:\n      - id: c3\n        key: c2hvcnRrZXk=\n');
      for (let i = 0; i < 500 && config.get('meshlet.auth.keys[0].id') !== 'c3'; i++) await new Promise((r) => setImmediate(r));
      assert.equal(config.get('meshlet.auth.keys[0].id'), 'c3');
      assert.equal(await (await keyed.fetch('http://target/')).text(), 'c2');
      const refused = (keyed.logger as unknown as { counts: ReadonlyMap<string, number> }).counts.get('MESHLET_BAD_MESH_KEY');
      assert.equal(refused, 1);
    } finally {
      stopKeyed();
      stopTarget();
      config.close();
      await keyed.close();
      await target.close();
      await server.close();
    }
  });

  it('a ciphertext copied into meshlet.auth.keys[1].key from another property is not taken; a key moved between positions needs no re-encrypting', async () => {
    const configKey = generateKey();
    const real = randomBytes(32).toString('base64');
    const next = randomBytes(32).toString('base64');
    const tenantToken = randomBytes(32).toString('base64'); // the tenant knows it: their own credential
    const realEnc = encryptValue(real, configKey, 'meshlet.auth.keys[0].key');
    const kv = new InMemoryKvStore();
    await kv.put('config/application/meshlet/auth/keys[0]/id', 'k1');
    await kv.put('config/application/meshlet/auth/keys[0]/key', realEnc);
    await kv.put('config/application/partner/api-token', encryptValue(tenantToken, configKey, 'partner.api-token'));
    const config = await createConfig({ kv, service: 'payment', keys: [configKey], env: {}, logger: new MemoryLogger() });
    const rules = new InMemoryKvStore();
    const billingOnly = { default: 'deny', rules: [{ name: 'billing-only', action: 'allow', services: ['billing'] }] };
    await rules.put('meshlet/rules/payment', JSON.stringify({ service: 'payment', auth: billingOnly }));
    const logger = new MemoryLogger();
    const payment = createMesh({
      service: 'payment',
      registry: new InMemoryRegistry(),
      rules,
      auth: { keys: meshKeysFromConfig(config) },
      logger,
    });
    const stop = followIdentityKeys(payment, config);
    await payment.rulesInForce('payment');
    const server = await listen(payment.httpHandler((_req, res) => res.end('ok')));
    const asBilling = async (key: MeshKey) => {
      const token = signIdentity({ service: 'billing', namespace: 'default', instance: 'b' }, key, systemClock, { audience: 'payment' });
      return (await globalThis.fetch(`http://127.0.0.1:${server.port}/`, { headers: { [IDENTITY_HEADER]: token } })).status;
    };
    const applied = async (key: string, value: string) => {
      for (let i = 0; i < 500 && config.get(key) !== value; i++) await new Promise((r) => setImmediate(r));
      assert.equal(config.get(key), value);
    };
    try {
      // A KV writer who cannot decrypt copies the tenant token's ciphertext in as a mesh key.
      const copied = (await kv.get('config/application/partner/api-token'))?.value ?? '';
      await kv.put('config/application/meshlet/auth/keys[1]/id', 'evil');
      await kv.put('config/application/meshlet/auth/keys[1]/key', copied);
      await applied('meshlet.auth.keys[1].id', 'evil');
      assert.equal(config.get('meshlet.auth.keys[1].key'), undefined);
      assert.equal(config.status.decryptFailures, 1);
      assert.throws(() => meshKeysFromConfig(config), /meshlet\.auth\.keys\[1\]\.key is missing \(or did not decrypt\)/);
      assert.equal(await asBilling(meshKey('evil', tenantToken)), 403, 'an identity signed with the copied key');
      assert.equal(await asBilling(meshKey('k1', real)), 200);

      // The rollover: a new key in front, the old one's ciphertext moved to [1] as it is.
      await kv.put('config/application/meshlet/auth/keys[1]/key', realEnc);
      await kv.put('config/application/meshlet/auth/keys[1]/id', 'k1');
      await kv.put('config/application/meshlet/auth/keys[0]/key', encryptValue(next, configKey, 'meshlet.auth.keys[0].key'));
      await kv.put('config/application/meshlet/auth/keys[0]/id', 'k2');
      await applied('meshlet.auth.keys[0].id', 'k2');
      assert.equal(config.get('meshlet.auth.keys[1].key'), real);
      assert.equal(config.status.decryptFailures, 1);
      assert.equal(await asBilling(meshKey('k2', next)), 200);
      assert.equal(await asBilling(meshKey('k1', real)), 200);
    } finally {
      stop();
      config.close();
      await server.close();
      await payment.close();
    }
  });

  it('names the property that is missing', () => {
    const get = (values: Record<string, string>) => ({ get: (k: string) => values[k] });
    assert.throws(() => meshKeysFromConfig(get({})), /no keys under meshlet\.auth\.keys\[0\]/);
    assert.throws(() => meshKeysFromConfig(get({ 'meshlet.auth.keys[0].id': 'x' })), /meshlet\.auth\.keys\[0\]\.key is missing/);
    assert.throws(
      () => meshKeysFromConfig(get({ 'meshlet.auth.keys[0].id': 'x', 'meshlet.auth.keys[0].key': 'c2hvcnQ=' })),
      (err: unknown) => (err as { code?: string }).code === 'MESHLET_BAD_MESH_KEY' && /keys\[0\].*bytes/.test((err as Error).message),
    );
  });

  it('refuses a mesh key written as plain text in the KV store: a writer who cannot decrypt could add one and sign any identity', async () => {
    const configKey = generateKey();
    const real = randomBytes(32).toString('base64');
    const forger = randomBytes(32).toString('base64');
    const kv = new InMemoryKvStore();
    await kv.put('config/application/meshlet/auth/keys[0]/id', 'k1');
    await kv.put('config/application/meshlet/auth/keys[0]/key', encryptValue(real, configKey, 'meshlet.auth.keys[0].key'));
    const config = await createConfig({ kv, service: 'orders', keys: [configKey], env: {}, logger: new MemoryLogger() });
    try {
      assert.deepEqual(
        meshKeysFromConfig(config).map((k) => k.id),
        ['k1'],
      );
      // Beside the encrypted key, a plain one of the writer's own.
      await kv.put('config/application/meshlet/auth/keys[1]/id', 'old');
      await kv.put('config/application/meshlet/auth/keys[1]/key', forger);
      for (let i = 0; i < 500 && config.get('meshlet.auth.keys[1].id') !== 'old'; i++) await new Promise((r) => setImmediate(r));
      assert.equal(config.isPlainKvValue('meshlet.auth.keys[1].key'), true);
      assert.equal(config.isPlainKvValue('meshlet.auth.keys[0].key'), false, 'ENC(...) in the store');
      assert.throws(
        () => meshKeysFromConfig(config),
        (err: unknown) =>
          (err as { code?: string }).code === 'MESHLET_BAD_MESH_KEY' &&
          /keys\[1\]\.key is plain text in the KV store/.test((err as Error).message) &&
          !(err as Error).message.includes(forger),
      );
    } finally {
      config.close();
    }
    // The environment (the deployer's) may give a key in plain text.
    const fromEnv = await createConfig({
      kv: new InMemoryKvStore(),
      service: 'orders',
      env: { MESHLET_AUTH_KEYS_0_ID: 'e1', MESHLET_AUTH_KEYS_0_KEY: real },
      logger: new MemoryLogger(),
    });
    try {
      assert.deepEqual(
        meshKeysFromConfig(fromEnv).map((k) => k.id),
        ['e1'],
      );
    } finally {
      fromEnv.close();
    }
  });
});
