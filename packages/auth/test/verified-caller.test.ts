import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  attachExtension,
  type ContextExtension,
  createContext,
  currentContext,
  extensionOf,
  type MeshContext,
  runWithContext,
  setTag,
  withTags,
} from '@meshlet/core';
import { bindVerifiedCaller, type VerifiedIdentity, verifiedCaller } from '../src/index.js';

const identity: VerifiedIdentity = {
  service: 'billing',
  namespace: 'prod',
  instance: 'billing-1',
  issuedAt: 0,
  expiresAt: 30_000,
  keyId: 'k1',
  audience: '',
};

/** The extensions core keeps on a context (context.ts's slot, under its global symbol). */
const slotOf = (ctx: MeshContext) =>
  (ctx as unknown as Record<symbol, Map<symbol, ContextExtension> | undefined>)[Symbol.for('meshlet.context.extensions.slot')];

describe('verifiedCaller: the identity kept beside the request context', () => {
  it('is what bindVerifiedCaller bound to that context, and nothing on another', () => {
    const ctx = createContext({ caller: { service: 'billing' } });
    assert.equal(verifiedCaller(ctx), undefined);
    bindVerifiedCaller(ctx, identity);
    assert.equal(verifiedCaller(ctx), identity);
    assert.equal(
      runWithContext(ctx, () => verifiedCaller()),
      identity,
    );
    assert.equal(verifiedCaller(createContext({ caller: { service: 'billing' } })), undefined);
    assert.equal(verifiedCaller(currentContext()), undefined);
  });

  it('is taken away by binding undefined; binding undefined on a context without one attaches nothing', () => {
    const ctx = createContext();
    bindVerifiedCaller(ctx, undefined);
    assert.equal(slotOf(ctx), undefined);
    bindVerifiedCaller(ctx, identity);
    bindVerifiedCaller(ctx, undefined);
    assert.equal(verifiedCaller(ctx), undefined);
  });

  it('cannot be bound to the empty context outside a request (it would be every request-less lookup’s)', () => {
    assert.throws(() => bindVerifiedCaller(currentContext(), identity), TypeError);
    assert.equal(verifiedCaller(), undefined);
    bindVerifiedCaller(currentContext(), undefined);
    assert.equal(verifiedCaller(), undefined);
  });

  it('is the same in a context forked by withTags: adding tags does not change who called', () => {
    const ctx = createContext();
    bindVerifiedCaller(ctx, identity);
    runWithContext(ctx, () => {
      assert.equal(
        withTags({ tier: 'vip' }, () => verifiedCaller()),
        identity,
      );
      assert.equal(verifiedCaller(), identity);
    });
    // And a request without one has none in its forks either.
    runWithContext(createContext(), () =>
      assert.equal(
        withTags({ tier: 'vip' }, () => verifiedCaller()),
        undefined,
      ),
    );
  });

  it('cannot be forged from app code: tags, a global symbol, or an object of its own in the slot', () => {
    const ctx = createContext({ caller: { service: 'billing', namespace: 'prod' } });
    runWithContext(ctx, () => {
      setTag('source.service.name', 'billing');
      setTag('verified', 'billing');
    });
    assert.equal(verifiedCaller(ctx), undefined);
    // A key app code can name reaches another extension, not the verified caller.
    const fake = { identity, fork: () => fake };
    attachExtension(ctx, Symbol.for('meshlet.auth.verified-caller'), fake);
    assert.equal(verifiedCaller(ctx), undefined);
    // The slot is reachable (a global symbol): an object of app code's own under every key is not believed.
    bindVerifiedCaller(ctx, undefined);
    const other = createContext();
    bindVerifiedCaller(other, identity);
    const slot = slotOf(other);
    assert.ok(slot);
    for (const key of slot.keys()) {
      attachExtension(ctx, key, fake);
      assert.equal(extensionOf(ctx, key), fake);
    }
    assert.equal(verifiedCaller(ctx), undefined);
  });
});
