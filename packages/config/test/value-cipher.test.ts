import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { InMemoryKvStore, MemoryLogger } from '@meshlet/core';
import {
  CLI_VALUE_MAX_CHARS,
  ConfigDecryptError,
  ConfigKeyError,
  createConfig,
  decryptValue,
  encryptValue,
  generateKey,
  isEncrypted,
  KEY_FILE_MAX_BYTES,
  keysFromEnvironment,
  keysFromFile,
  parseKey,
  propertyBinding,
  runConfigCli,
  UndecryptableValue,
} from '../src/index.js';
import { recordChanges } from './helpers.js';

const keyA = generateKey();
const keyB = generateKey();
const a = parseKey(keyA);
const b = parseKey(keyB);

/** Flips one bit of the decoded ENC payload at `index` (negative: from the end). */
function tamper(enc: string, index: number): string {
  const raw = Buffer.from(enc.slice(4, -1), 'base64');
  const at = index < 0 ? raw.length + index : index;
  raw[at] = (raw[at] ?? 0) ^ 1;
  return `ENC(${raw.toString('base64')})`;
}

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'meshlet-cipher-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('encryptValue / decryptValue', () => {
  it('round-trips, with a fresh IV each time, in the documented format', () => {
    const plain = 'p@ss wörd ✓';
    const one = encryptValue(plain, keyA, 'db.pass');
    const two = encryptValue(plain, a, 'db.pass');
    assert.ok(isEncrypted(one));
    assert.notEqual(one, two);
    assert.equal(decryptValue(one, [a], 'db.pass'), plain);
    assert.equal(decryptValue(two, [a], 'db.pass'), plain);
    // base64(iv 12 | ciphertext | tag 16): the ciphertext is as long as the UTF-8 plain text.
    assert.equal(Buffer.from(one.slice(4, -1), 'base64').length, 12 + Buffer.byteLength(plain) + 16);
    assert.equal(decryptValue(encryptValue('', keyA, 'db.pass'), [a], 'db.pass'), '');
  });

  it('a tampered IV, ciphertext or tag does not decrypt', () => {
    const enc = encryptValue('secret', keyA, 'db.pass');
    for (const index of [0, 12, -1]) assert.throws(() => decryptValue(tamper(enc, index), [a], 'db.pass'), UndecryptableValue);
  });

  it('a wrong key does not decrypt; a list of keys tries each (rotation)', () => {
    const old = encryptValue('v1', keyA, 'db.pass');
    assert.throws(() => decryptValue(old, [b], 'db.pass'), /no configured key decrypts it for db\.pass \(1 tried\)/);
    assert.equal(decryptValue(old, [b, a], 'db.pass'), 'v1');
    assert.throws(() => decryptValue(old, [], 'db.pass'), /no decryption key/);
  });

  it('a value decrypts for the property it was encrypted for only: one copied under another is refused as tampered', () => {
    const token = encryptValue('tenant-token', keyA, 'partner.api-token');
    assert.throws(
      () => decryptValue(token, [a], 'meshlet.auth.keys[1].key'),
      (e: unknown) =>
        e instanceof UndecryptableValue &&
        /no configured key decrypts it for meshlet\.auth\.keys\[1\]\.key/.test(e.message) &&
        !e.message.includes('tenant-token'),
    );
    for (const nothing of ['', '[0]', '.'])
      assert.throws(() => encryptValue('x', keyA, nothing), { code: 'MESHLET_BAD_OPTION', message: /^property: .* names no config key$/ });
  });

  it('binds to the property as relaxed binding names it: list indices, case, dashes and env-variable form are one property', () => {
    assert.equal(propertyBinding('meshlet.auth.keys[1].key'), 'meshlet-config:meshlet.auth.keys.key');
    const enc = encryptValue('k', keyA, 'meshlet.auth.keys[0].key');
    for (const same of ['meshlet.auth.keys[1].key', 'meshlet.auth.keys[12].key', 'MESHLET_AUTH_KEYS_0_KEY', 'meshlet.auth.keys.0.key'])
      assert.equal(decryptValue(enc, [a], same), 'k', same);
    const dashed = encryptValue('8', keyA, 'server.max-connections');
    assert.equal(decryptValue(dashed, [a], 'SERVER_MAXCONNECTIONS'), '8');
    for (const other of ['meshlet.auth.keys[0].id', 'meshlet.auth.key', 'auth.keys[0].key'])
      assert.throws(() => decryptValue(enc, [a], other), UndecryptableValue, other);
  });

  it('rejects malformed values without echoing them', () => {
    for (const bad of ['ENC(not base64!)', 'ENC(QUFBQUFB)', 'plaintext-value']) {
      assert.throws(
        () => decryptValue(bad, [a], 'db.pass'),
        (e: unknown) => e instanceof UndecryptableValue && !e.message.includes(bad.replace(/^ENC\(|\)$/g, '')),
      );
    }
  });

  it('keys are base64 of 32 bytes, from MESHLET_ENCRYPT_KEY (comma-separated) and MESHLET_ENCRYPT_KEY_FILE', async () => {
    assert.throws(() => parseKey(Buffer.alloc(16).toString('base64')), ConfigKeyError);
    assert.throws(() => parseKey('not base64 ***'), ConfigKeyError);
    const file = join(dir, 'keys');
    await writeFile(file, `# newest first\n${keyB}\n\n`);
    const keys = keysFromEnvironment({ MESHLET_ENCRYPT_KEY: `${keyA}, ${keyA}`, MESHLET_ENCRYPT_KEY_FILE: file });
    assert.deepEqual(keys, [a, a, b]);
    assert.throws(() => keysFromEnvironment({ MESHLET_ENCRYPT_KEY: 'short' }), /MESHLET_ENCRYPT_KEY\[0\]/);
    assert.throws(() => keysFromEnvironment({ MESHLET_ENCRYPT_KEY_FILE: join(dir, 'none') }), ConfigKeyError);
  });
});

describe('the key file', () => {
  /** The ConfigKeyError's message; fails unless `fn` throws one. */
  const refusal = (fn: () => unknown): string => {
    try {
      fn();
    } catch (err) {
      assert.ok(err instanceof ConfigKeyError, String(err));
      return err.message;
    }
    assert.fail('not refused');
  };

  it('refuses a device and a FIFO without reading them, naming the variable and the path', () => {
    assert.match(
      refusal(() => keysFromEnvironment({ MESHLET_ENCRYPT_KEY_FILE: '/dev/zero' })),
      /^MESHLET_ENCRYPT_KEY_FILE: "\/dev\/zero" is not a regular file/,
    );
    const fifo = join(dir, 'keys.fifo');
    execFileSync('mkfifo', [fifo]);
    // A FIFO with no writer: reading it would block for ever.
    assert.match(
      refusal(() => keysFromFile(fifo)),
      /MESHLET_ENCRYPT_KEY_FILE: ".*keys\.fifo" is not a regular file/,
    );
  });

  it(`refuses a file over ${KEY_FILE_MAX_BYTES} bytes by its size, naming the bound; one at the bound is read`, async () => {
    const atBound = join(dir, 'keys-at-bound');
    const line = `${keyA}\n`;
    const padding = KEY_FILE_MAX_BYTES - line.length;
    await writeFile(atBound, `#${'x'.repeat(padding - 2)}\n${line}`);
    assert.deepEqual(keysFromFile(atBound), [a]);
    const over = join(dir, 'keys-over');
    await writeFile(over, `#${'x'.repeat(padding - 1)}\n${line}`);
    assert.match(
      refusal(() => keysFromFile(over)),
      new RegExp(`keys-over" is ${KEY_FILE_MAX_BYTES + 1} bytes; at most ${KEY_FILE_MAX_BYTES}`),
    );
  });
});

describe('encrypted values in config', () => {
  it('decrypts ENC(...) from KV, marks it secret, masks it in events, snapshots and logs', async () => {
    const kv = new InMemoryKvStore();
    const logger = new MemoryLogger();
    await kv.put('config/orders/data', `db:\n  pass: ${encryptValue('first-secret', keyA, 'db.pass')}\n`);
    const config = await createConfig({ kv, service: 'orders', format: 'yaml', env: { MESHLET_ENCRYPT_KEY: keyA }, logger });
    assert.equal(config.get('db.pass'), 'first-secret');
    assert.equal(config.isSecret('db.pass'), true);
    assert.equal(config.snapshot({ maskSecrets: true })['db.pass'], '******');
    assert.equal(config.has('MESHLET_ENCRYPT_KEY'.toLowerCase()), false, 'the key variable is not config');
    const events = recordChanges(config);
    await kv.put('config/orders/data', `db:\n  pass: ${encryptValue('second-secret', keyA, 'db.pass')}\n`);
    assert.deepEqual(events[0]?.changes, [{ key: 'db.pass', oldValue: '******', newValue: '******', secret: true }]);
    assert.equal(config.get('db.pass'), 'second-secret');
    assert.ok(!JSON.stringify(logger.entries).includes('secret-'), 'no plain text in logs');
    config.close();
  });

  it('a tampered value is an error naming the key, counted and logged; the previous value stays', async () => {
    const kv = new InMemoryKvStore();
    const logger = new MemoryLogger();
    const good = encryptValue('keep-me', keyA, 'db.pass');
    await kv.put('config/orders/db/pass', good);
    await kv.put('config/orders/other', '1');
    const config = await createConfig({ kv, service: 'orders', env: {}, keys: [keyA], logger });
    const events = recordChanges(config);

    await kv.put('config/orders/db/pass', tamper(encryptValue('evil', keyA, 'db.pass'), 20));
    assert.equal(config.get('db.pass'), 'keep-me');
    assert.equal(events.length, 0);
    assert.equal(config.status.decryptFailures, 1);
    assert.equal(config.status.lastError?.code, ConfigDecryptError.code);
    const error = logger.entries.find((e) => e.level === 'error');
    assert.equal(error?.fields?.key, 'db.pass');
    assert.equal(error?.fields?.source, 'config/orders/db/pass');
    assert.match(error?.message ?? '', /"db\.pass".*the previous value stays/);
    assert.ok(!JSON.stringify(logger.entries).includes('keep-me'));

    // Other changes go on being applied.
    await kv.put('config/orders/other', '2');
    assert.equal(config.get('other'), '2');
    assert.equal(config.get('db.pass'), 'keep-me');
    config.close();
  });

  it('a value under a key it does not have is absent at start, not a crash; rotation reads old and new', async () => {
    const kv = new InMemoryKvStore();
    await kv.put('config/application/old', encryptValue('under-a', keyA, 'old'));
    await kv.put('config/application/new', encryptValue('under-b', keyB, 'new'));
    const logger = new MemoryLogger();
    const onlyB = await createConfig({ kv, service: 'orders', env: { MESHLET_ENCRYPT_KEY: keyB }, logger });
    assert.equal(onlyB.get('new'), 'under-b');
    assert.equal(onlyB.get('old'), undefined);
    assert.equal(onlyB.status.decryptFailures, 1);
    // At start the key had no value: the message does not say one stays.
    assert.match(logger.entries.find((e) => e.level === 'error')?.message ?? '', /"old".*the key has no value until it decrypts/);
    onlyB.close();

    const rotated = await createConfig({ kv, service: 'orders', env: { MESHLET_ENCRYPT_KEY: `${keyB},${keyA}` }, logger });
    assert.deepEqual(rotated.snapshot(), { new: 'under-b', old: 'under-a' });
    rotated.close();
  });

  it("a ciphertext copied from one property's KV key to another's does not decrypt there: counted, the previous value stays", async () => {
    const kv = new InMemoryKvStore();
    const logger = new MemoryLogger();
    const token = encryptValue('tenant-token', keyA, 'partner.api-token');
    await kv.put('config/application/partner/api-token', token);
    await kv.put('config/orders/db/pass', token); // copied by a KV writer who cannot decrypt
    const config = await createConfig({ kv, service: 'orders', env: {}, keys: [keyA], logger });
    assert.equal(config.get('partner.api-token'), 'tenant-token');
    assert.equal(config.get('db.pass'), undefined);
    assert.equal(config.status.decryptFailures, 1);
    assert.equal(config.status.lastError?.code, ConfigDecryptError.code);
    assert.match(
      config.status.lastError?.message ?? '',
      /"db\.pass" from config\/orders\/db\/pass: no configured key decrypts it for db\.pass/,
    );

    await kv.put('config/orders/db/pass', encryptValue('mine', keyA, 'db.pass'));
    await kv.put('config/orders/db/pass', token);
    assert.equal(config.get('db.pass'), 'mine');
    assert.equal(config.status.decryptFailures, 2);
    assert.ok(!JSON.stringify(logger.entries).includes('tenant-token'));
    config.close();
  });

  it('an ENC(...) environment variable binds to the property it sets, by its relaxed name or the explicit prefix', async () => {
    const kv = new InMemoryKvStore();
    await kv.put('config/orders/server/max-connections', '1');
    const config = await createConfig({
      kv,
      service: 'orders',
      keys: [keyA],
      env: {
        SERVER_MAXCONNECTIONS: encryptValue('8', keyA, 'server.max-connections'),
        MESHLET_CONFIG_MESHLET_AUTH_KEYS_0_KEY: encryptValue('k0', keyA, 'meshlet.auth.keys[0].key'),
        MESHLET_CONFIG_DB_PASS: encryptValue('copied', keyA, 'partner.api-token'),
      },
      logger: new MemoryLogger(),
    });
    assert.equal(config.get('server.max-connections'), '8');
    assert.equal(config.get('meshlet.auth.keys[0].key'), 'k0');
    assert.equal(config.get('db.pass'), undefined);
    assert.equal(config.status.decryptFailures, 1);
    assert.equal(config.status.lastError?.source, 'environment variable DB_PASS');
    config.close();
  });

  it('decrypts ENC(...) in environment variables and the local file too', async () => {
    const file = join(dir, 'app.properties');
    await writeFile(file, `file.token=${encryptValue('from-file', keyA, 'file.token')}\n`);
    const config = await createConfig({
      kv: new InMemoryKvStore(),
      service: 'orders',
      file,
      keys: [keyA],
      env: { MESHLET_CONFIG_API_SECRET: encryptValue('from-env', keyA, 'api.secret') },
      logger: new MemoryLogger(),
    });
    assert.deepEqual(config.snapshot(), { 'file.token': 'from-file', 'api.secret': 'from-env' });
    assert.deepEqual(config.snapshot({ maskSecrets: true }), { 'file.token': '******', 'api.secret': '******' });
    config.close();
  });
});

describe('meshlet-config CLI', () => {
  const run = async (argv: string[], env: Record<string, string>, stdin = '') => {
    let out = '';
    let err = '';
    const code = await runConfigCli(argv, { env, readStdin: async () => stdin, out: (t) => (out += t), err: (t) => (err += t) });
    return { code, out, err };
  };

  it('keygen prints a usable key; encrypt reads the key from the environment and the value from stdin or argv', async () => {
    const gen = await run(['keygen'], {});
    assert.equal(gen.code, 0);
    const key = gen.out.trim();
    assert.equal(parseKey(key).length, 32);
    const viaStdin = await run(['encrypt', '--property', 'db.pass'], { MESHLET_ENCRYPT_KEY: key }, 'hunter2\n');
    assert.equal(viaStdin.code, 0);
    assert.equal(decryptValue(viaStdin.out.trim(), [parseKey(key)], 'db.pass'), 'hunter2');
    const viaArg = await run(['encrypt', '--property=db.pass', 'a b'], { MESHLET_ENCRYPT_KEY: key });
    assert.equal(decryptValue(viaArg.out.trim(), [parseKey(key)], 'db.pass'), 'a b');
  });

  it('encrypt binds the value to --property: it decrypts for that property only', async () => {
    const key = generateKey();
    const { code, out } = await run(['encrypt', '--property', 'meshlet.auth.keys[0].key', 'v'], { MESHLET_ENCRYPT_KEY: key });
    assert.equal(code, 0);
    assert.equal(decryptValue(out.trim(), [parseKey(key)], 'meshlet.auth.keys[3].key'), 'v');
    assert.throws(() => decryptValue(out.trim(), [parseKey(key)], 'meshlet.auth.keys[0].id'), UndecryptableValue);
  });

  it('fails with usage or a clear message', async () => {
    const key = generateKey();
    assert.equal((await run(['encrypt', '--property', 'p', 'x'], {})).code, 2);
    assert.match((await run(['encrypt', '--property', 'p', 'x'], {})).err, /MESHLET_ENCRYPT_KEY/);
    const noProperty = await run(['encrypt', 'x'], { MESHLET_ENCRYPT_KEY: key });
    assert.deepEqual([noProperty.code, noProperty.out], [2, '']);
    assert.match(noProperty.err, /encrypt needs --property <key>/);
    const emptyProperty = await run(['encrypt', '--property', '[0]', 'x'], { MESHLET_ENCRYPT_KEY: key });
    assert.deepEqual([emptyProperty.code, emptyProperty.out], [2, '']);
    assert.match(emptyProperty.err, /names no config key/);
    const unknown = await run(['encrypt', '--proprety', 'p', 'x'], { MESHLET_ENCRYPT_KEY: key });
    assert.deepEqual([unknown.code, unknown.out], [2, '']);
    assert.match(unknown.err, /--proprety/);
    assert.equal((await run(['frobnicate'], {})).code, 2);
    // Nothing asked is a usage error, as `meshlet` answers it; help is asked for.
    const nothing = await run([], {});
    assert.deepEqual([nothing.code, nothing.out], [2, '']);
    assert.match(nothing.err, /usage:/);
    const help = await run(['--help'], {});
    assert.deepEqual([help.code, help.err], [0, '']);
    assert.match(help.out, /usage:/);
    // keygen takes nothing: a stray value is refused, not ignored.
    for (const argv of [
      ['keygen', 'extra'],
      ['keygen', '--bogus'],
    ]) {
      const stray = await run(argv, {});
      assert.deepEqual([stray.code, stray.out], [2, ''], argv.join(' '));
    }
    // A value from standard input is bounded: what the reader is asked for, and refused past it.
    let asked = 0;
    const big = await runConfigCli(['encrypt', '--property', 'p'], {
      env: { MESHLET_ENCRYPT_KEY: key },
      readStdin: async (maxChars) => {
        asked = maxChars;
        return 'x'.repeat(maxChars);
      },
      out: () => {},
      err: () => {},
    });
    assert.equal(big, 2);
    assert.equal(asked, CLI_VALUE_MAX_CHARS + 2);
  });
});
