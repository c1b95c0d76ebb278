import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { ManualClock } from '@meshlet/core';
import {
  BadMeshKeyError,
  checkIdentity,
  IdentitySigner,
  IdentityVerifier,
  type MeshKey,
  meshKey,
  meshKeyCheck,
  newIdentityCounters,
  signIdentity,
  verifyIdentity,
} from '../src/index.js';

const T0 = 1_700_000_000_000;
const k1: MeshKey = { id: 'k1', key: Buffer.alloc(32, 1) };
const k2: MeshKey = { id: 'k2', key: Buffer.alloc(32, 2) };
const checkout = { service: 'checkout', namespace: 'prod', instance: 'checkout-8080', version: '1.2.0' };

/** Replaces field `i` (0-based, by "|") of a header. */
function withField(header: string, i: number, value: string): string {
  const parts = header.split('|');
  parts[i] = value;
  return parts.join('|');
}

describe('signed caller identity', () => {
  it('round-trips: what was signed is what is verified', () => {
    const clock = new ManualClock(T0);
    const header = signIdentity(checkout, k1, clock, { audience: 'payment' });
    const result = checkIdentity(header, [k1], clock, { audience: 'payment' });
    assert.deepEqual(result, {
      ok: true,
      identity: { ...checkout, issuedAt: T0, expiresAt: T0 + 30_000, keyId: 'k1', audience: 'payment' },
    });
  });

  it('encodes fields so separators and odd characters cannot shift them', () => {
    const clock = new ManualClock(T0);
    const odd = { service: 'checkout', namespace: 'team|a b', instance: 'i|%|ü', version: '' };
    const header = signIdentity(odd, k1, clock);
    assert.equal(header.split('|').length, 10);
    const got = verifyIdentity(header, [k1], clock);
    assert.equal(got?.namespace, 'team|a b');
    assert.equal(got?.instance, 'i|%|ü');
    assert.equal(got?.version, undefined, 'an empty version is left out');
  });

  it('refuses each kind of bad header with its reason, and counts it', () => {
    const clock = new ManualClock(T0);
    const good = signIdentity(checkout, k1, clock);
    const mac = good.slice(good.lastIndexOf('|') + 1);
    const flipped = `${good.slice(0, -2)}${mac.at(-2) === 'A' ? 'B' : 'A'}${mac.at(-1)}`;
    const cases: [string | undefined, string][] = [
      [undefined, 'unsigned'],
      ['', 'unsigned'],
      ['service=checkout', 'malformed'],
      ['x'.repeat(2000), 'malformed'],
      [`v2${good.slice(2)}`, 'malformed'],
      [`${good}, ${good}`, 'malformed'], // two headers joined by Node
      [flipped, 'bad-signature'],
      [good.slice(0, good.lastIndexOf('|') + 1), 'bad-signature'],
      [withField(good, 3, 'admin'), 'bad-signature'], // a caller rewriting the service name
      [withField(good, 8, String(T0 + 3_600_000)), 'bad-signature'], // extending the expiry
      [withField(good, 1, 'k9'), 'unknown-key'],
      [withField(good, 1, 'k 9'), 'malformed'],
    ];
    const counters = newIdentityCounters();
    for (const [header, reason] of cases) {
      const r = checkIdentity(header, [k1], clock);
      assert.equal(r.ok ? 'ok' : r.reason, reason, String(header).slice(0, 80));
      assert.equal(verifyIdentity(header, [k1], clock, 5_000, counters), undefined);
    }
    assert.equal(counters.unsigned, 2);
    assert.equal(counters['bad-signature'], 4);
    assert.equal(counters.verified, 0);
  });

  it('refuses an expired token, tolerating the configured skew', () => {
    const clock = new ManualClock(T0);
    const header = signIdentity(checkout, k1, clock, { ttlMs: 10_000 });
    clock.advance(10_000 + 5_000);
    assert.ok(verifyIdentity(header, [k1], clock, 5_000), 'within skew');
    clock.advance(1);
    const r = checkIdentity(header, [k1], clock, { maxSkewMs: 5_000 });
    assert.equal(r.ok ? 'ok' : r.reason, 'expired');
    assert.equal(verifyIdentity(header, [k1], clock, 60_000)?.service, 'checkout', 'a wider skew accepts it');
  });

  it('refuses a token from the future and one that lives too long', () => {
    const early = signIdentity(checkout, k1, new ManualClock(T0 + 60_000));
    const r = checkIdentity(early, [k1], new ManualClock(T0));
    assert.equal(r.ok ? 'ok' : r.reason, 'not-yet-valid');
    const long = signIdentity(checkout, k1, new ManualClock(T0), { ttlMs: 3_600_000 });
    const r2 = checkIdentity(long, [k1], new ManualClock(T0));
    assert.equal(r2.ok ? 'ok' : r2.reason, 'malformed');
  });

  it('refuses a token signed for another service when the audience is checked', () => {
    const clock = new ManualClock(T0);
    const forCart = signIdentity(checkout, k1, clock, { audience: 'cart' });
    const r = checkIdentity(forCart, [k1], clock, { audience: 'payment' });
    assert.equal(r.ok ? 'ok' : r.reason, 'wrong-audience');
    const anyAudience = signIdentity(checkout, k1, clock);
    const r2 = checkIdentity(anyAudience, [k1], clock, { audience: 'payment' });
    assert.equal(r2.ok ? 'ok' : r2.reason, 'wrong-audience');
  });

  it('rolls keys over: both accepted during the rollover, the retired one refused after', () => {
    const clock = new ManualClock(T0);
    const v = new IdentityVerifier({ keys: [k1], clock });
    const old = signIdentity(checkout, k1, clock);
    const next = signIdentity(checkout, k2, clock);
    assert.ok(v.verify(old));
    const before = v.check(next);
    assert.equal(before.ok ? 'ok' : before.reason, 'unknown-key');
    v.setKeys([k1, k2]); // step 1: every verifier learns the new key
    assert.ok(v.verify(old));
    assert.equal(v.verify(next)?.keyId, 'k2');
    v.setKeys([k2]); // step 3: the old key is retired
    const r = v.check(old);
    assert.equal(r.ok ? 'ok' : r.reason, 'unknown-key', 'a token of a retired key is refused even though it was cached');
    assert.ok(v.verify(next));
  });

  it('setKeys refuses other bytes under an id still accepted, and takes them once its overlap is over', () => {
    const clock = new ManualClock(T0);
    const v = new IdentityVerifier({ keys: [k1], clock });
    const inFlight = signIdentity(checkout, k1, clock);
    const k1b: MeshKey = { id: 'k1', key: Buffer.alloc(32, 7) };
    const sameId = (err: unknown) => err instanceof BadMeshKeyError && (err as Error).message.includes('"k1"');
    assert.throws(() => v.setKeys([k1b]), sameId, 'the active key');
    assert.throws(() => v.setKeys([k2, k1b]), sameId);
    assert.ok(v.verify(inFlight), 'the keys in force stay');
    v.setKeys([k2], { overlapMs: 1_000 });
    assert.throws(() => v.setKeys([k2, k1b]), sameId, 'a retired key within its overlap');
    assert.ok(v.verify(inFlight));
    v.setKeys([k2, { id: 'k1', key: Buffer.from(k1.key) }]); // the same bytes: the key back, not another
    clock.advance(1_000);
    v.setKeys([k2]);
    v.setKeys([k2, k1b]); // k1's old bytes are no longer accepted anywhere here
    const r = v.check(inFlight);
    assert.equal(r.ok ? 'ok' : r.reason, 'bad-signature');
  });

  it('refuses a signature made with another key under the same id', () => {
    const clock = new ManualClock(T0);
    const forged = signIdentity(checkout, { id: 'k1', key: Buffer.alloc(32, 9) }, clock);
    const r = checkIdentity(forged, [k1], clock);
    assert.equal(r.ok ? 'ok' : r.reason, 'bad-signature');
  });

  it('refuses every other spelling of the signature: base64url spare bits, padding', () => {
    // A 32-byte MAC is 43 base64url characters; the last one carries 4 spare bits, so a
    // byte-wise comparison would let 3 other last characters verify (found by the header fuzz).
    const clock = new ManualClock(T0);
    const header = signIdentity(checkout, k1, clock);
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const last = header.at(-1) as string;
    const sameBytes = [...alphabet].filter(
      (c) =>
        c !== last &&
        Buffer.from(header.slice(header.lastIndexOf('|') + 1, -1) + c, 'base64url').equals(
          Buffer.from(header.slice(header.lastIndexOf('|') + 1), 'base64url'),
        ),
    );
    assert.equal(sameBytes.length, 3, 'the spare bits give three other spellings of the same bytes');
    for (const c of sameBytes) {
      const r = checkIdentity(header.slice(0, -1) + c, [k1], clock);
      assert.equal(r.ok ? 'ok' : r.reason, 'bad-signature', c);
    }
    const padded = checkIdentity(`${header}=`, [k1], clock);
    assert.equal(padded.ok ? 'ok' : padded.reason, 'bad-signature');
  });

  it('takes keys from base64 config and refuses weak or badly named ones', () => {
    const b64 = randomBytes(32).toString('base64');
    const k = meshKey('k2025a', b64);
    assert.equal(k.key.byteLength, 32);
    assert.throws(
      () => meshKey('k', randomBytes(16).toString('base64')),
      (e: unknown) => e instanceof BadMeshKeyError && /at least 32/.test(e.message),
    );
    assert.throws(() => meshKey('bad id', b64), BadMeshKeyError);
    assert.throws(() => meshKey('k', 'not base64!'), BadMeshKeyError);
    // A JavaScript caller can pass text where the type says bytes: refused, not taken as a 1-byte key.
    for (const key of ['x', 'y'.repeat(64), undefined, 42])
      assert.throws(
        () => meshKeyCheck({ id: 'k', key } as unknown as MeshKey),
        (e: unknown) => e instanceof BadMeshKeyError && /must be bytes/.test(e.message),
        String(key),
      );
    assert.throws(() => new IdentityVerifier({ keys: [{ id: 'k', key: 'x' } as unknown as MeshKey] }), BadMeshKeyError);
    assert.throws(() => new IdentityVerifier({ keys: [] }), BadMeshKeyError);
    assert.throws(() => new IdentityVerifier({ keys: [k1, { ...k2, id: 'k1' }] }), /twice/);
  });
});

describe('IdentitySigner', () => {
  it('signs once per half-lifetime and destination, not per call', () => {
    const clock = new ManualClock(T0);
    const s = new IdentitySigner({ identity: checkout, key: k1, clock, ttlMs: 30_000 });
    const first = s.header('payment');
    const n = s.signatures;
    for (let i = 0; i < 100; i++) assert.equal(s.header('payment'), first);
    assert.equal(s.signatures, n);
    s.header('cart');
    assert.equal(s.signatures, n + 1, 'one more for another audience');
    clock.advance(15_000);
    const renewed = s.header('payment');
    assert.notEqual(renewed, first);
    assert.equal(verifyIdentity(renewed, [k1], clock)?.issuedAt, T0 + 15_000);
    // A token handed out just before renewal still has half its life left.
    clock.advance(14_999);
    assert.ok(verifyIdentity(s.header('payment'), [k1], clock, 0));
  });

  it('switches key and identity, dropping cached tokens', () => {
    const clock = new ManualClock(T0);
    const s = new IdentitySigner({ identity: checkout, key: k1, clock });
    s.setKey(k2);
    assert.equal(verifyIdentity(s.header(), [k2], clock)?.keyId, 'k2');
    s.setIdentity({ ...checkout, instance: 'checkout-9090' });
    assert.equal(verifyIdentity(s.header(), [k2], clock)?.instance, 'checkout-9090');
    assert.throws(() => new IdentitySigner({ identity: checkout, key: { id: 'k', key: Buffer.alloc(8) }, clock }), BadMeshKeyError);
  });
});

describe('IdentityVerifier', () => {
  it('counts outcomes and rechecks expiry on cached tokens', () => {
    const clock = new ManualClock(T0);
    const v = new IdentityVerifier({ keys: [k1], clock, maxSkewMs: 0 });
    const header = signIdentity(checkout, k1, clock, { ttlMs: 1_000 });
    assert.ok(v.verify(header));
    assert.ok(v.verify(header));
    clock.advance(1_001);
    assert.equal(v.verify(header), undefined, 'the cache does not outlive the token');
    v.verify(undefined);
    v.verify(withField(header, 3, 'admin'));
    assert.deepEqual(
      { verified: v.counters.verified, expired: v.counters.expired, unsigned: v.counters.unsigned, bad: v.counters['bad-signature'] },
      { verified: 2, expired: 1, unsigned: 1, bad: 1 },
    );
  });
});

describe('identity tokens across a step of the wall clock', () => {
  const HOUR = 3_600_000;
  const signerOptions = { identity: checkout, key: k1 };

  it('a process started an hour behind signs tokens its peers accept once the wall clock is stepped right', () => {
    // Its monotonic clock started an hour behind and stays there; NTP steps the wall clock.
    const behind = new ManualClock(T0 - HOUR);
    const signer = new IdentitySigner({ ...signerOptions, clock: behind });
    const peer = new IdentityVerifier({ keys: [k1], clock: new ManualClock(T0) });
    assert.deepEqual(peer.check(signer.header('payment')), { ok: false, reason: 'expired' }, 'before the step: its wall clock is wrong');
    behind.stepWall(HOUR);
    behind.advance(1_000); // well within the cached token's half-life
    const after = peer.check(signer.header('payment'));
    assert.equal(after.ok, true);
    assert.equal(after.ok && after.identity.issuedAt, T0 + 1_000);
  });

  it('signs again when the wall clock steps back before a cached token was issued', () => {
    const clock = new ManualClock(T0);
    const signer = new IdentitySigner({ ...signerOptions, clock });
    const first = signer.header('payment');
    clock.stepWall(-HOUR);
    const peer = new IdentityVerifier({ keys: [k1], clock: new ManualClock(T0 - HOUR) });
    assert.deepEqual(peer.check(first), { ok: false, reason: 'not-yet-valid' });
    assert.equal(peer.check(signer.header('payment')).ok, true);
  });

  it("a verifier whose wall clock was stepped right accepts a right peer's tokens, and judges a remembered one on it", () => {
    const behind = new ManualClock(T0 - HOUR);
    const verifier = new IdentityVerifier({ keys: [k1], clock: behind });
    const token = signIdentity(checkout, k1, new ManualClock(T0));
    assert.deepEqual(verifier.check(token), { ok: false, reason: 'not-yet-valid' });
    behind.stepWall(HOUR);
    assert.equal(verifier.check(token).ok, true);
    assert.equal(verifier.check(token).ok, true, 'remembered');
    behind.stepWall(HOUR);
    assert.deepEqual(verifier.check(token), { ok: false, reason: 'expired' }, 'the remembered token is judged on the wall clock too');
  });
});
