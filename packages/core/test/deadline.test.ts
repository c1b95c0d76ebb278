import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  createContext,
  currentContext,
  DeadlineExceededError,
  inboundDeadline,
  keepInboundDeadline,
  MeshletError,
  runWithContext,
  withTags,
} from '../src/index.js';

describe('the inbound deadline on the request context', () => {
  it('is kept beside the context, carried into withTags children, and absent elsewhere', () => {
    const ctx = createContext();
    assert.equal(inboundDeadline(ctx), undefined);
    keepInboundDeadline(ctx, 1_700_000_000_000);
    assert.equal(inboundDeadline(ctx), 1_700_000_000_000);
    runWithContext(ctx, () => withTags({ tier: 'beta' }, () => assert.equal(inboundDeadline(currentContext()), 1_700_000_000_000)));
    assert.equal(inboundDeadline(createContext()), undefined, 'another request has none');
  });

  it('DeadlineExceededError is a MeshletError with MESHLET_DEADLINE, saying whether anything was sent', () => {
    const unsent = new DeadlineExceededError('orders', false);
    assert.ok(unsent instanceof MeshletError);
    assert.equal(unsent.code, 'MESHLET_DEADLINE');
    assert.equal(unsent.name, 'DeadlineExceededError');
    assert.equal(unsent.sent, false);
    assert.match(unsent.message, /^orders: .*nothing was sent/);
    const cut = new DeadlineExceededError('orders', true, 'after 200 ms');
    assert.equal(cut.sent, true);
    assert.match(cut.message, /passed after 200 ms; the call was cut there/);
  });
});
