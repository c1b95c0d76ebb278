import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type RequestListener, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { CALLER_HEADER, ManualClock } from '@meshlet/core';
import {
  Authorizer,
  forbidden,
  IDENTITY_HEADER,
  IdentitySigner,
  IdentityVerifier,
  type MeshKey,
  parseAuthSection,
  signIdentity,
} from '../src/index.js';

const T0 = 1_700_000_000_000;
const current: MeshKey = { id: 'k2', key: Buffer.alloc(32, 7) };
const retired: MeshKey = { id: 'k1', key: Buffer.alloc(32, 3) };

async function listen(listener: RequestListener): Promise<{ server: Server; url: string }> {
  const server = createServer(listener);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

/**
 * Two real services on 127.0.0.1: checkout (signs its identity on outbound calls) and
 * payment (verifies the identity before its auth rules see the caller, as the SDK's
 * inbound middleware will). Payment denies checkout on refunds — and anonymous callers
 * there too, which is what makes the deny airtight: a caller who drops or breaks its
 * signature becomes anonymous, not somebody else.
 */
describe('spoofing a caller identity between two real servers', () => {
  const clock = new ManualClock(T0);
  const verifier = new IdentityVerifier({ keys: [current], clock, audience: 'payment' });
  const authorizer = new Authorizer(
    {},
    parseAuthSection(
      {
        rules: [
          { name: 'no-checkout-refunds', action: 'deny', services: ['checkout'], apis: [{ method: 'POST', path: '/refunds/{id}' }] },
          { name: 'no-anonymous-refunds', action: 'deny', identity: 'anonymous', apis: [{ method: 'POST', path: '/refunds/{id}' }] },
        ],
      },
      'auth',
    ),
  );
  const signer = new IdentitySigner({ identity: { service: 'checkout', namespace: 'prod', instance: 'checkout-1' }, key: current, clock });
  let payment: { server: Server; url: string };
  let checkout: { server: Server; url: string };

  before(async () => {
    payment = await listen((req, res) => {
      const raw = req.headers[IDENTITY_HEADER];
      const identity = verifier.verify(Array.isArray(raw) ? raw.join(', ') : raw);
      const url = req.url ?? '/';
      const decision = authorizer.decide(identity, { method: req.method ?? 'GET', path: url.split('?')[0] as string });
      if (!decision.allowed) {
        const f = forbidden(decision, 'payment');
        res.writeHead(f.status, f.headers).end(f.body);
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ caller: identity?.service ?? 'anonymous' }));
    });
    // checkout forwards /out/<path> to payment as a governed call: signed identity attached.
    checkout = await listen(async (req, res) => {
      const path = (req.url ?? '/').replace(/^\/out/, '');
      const r = await fetch(`${payment.url}${path}`, {
        method: req.method ?? 'GET',
        headers: { [IDENTITY_HEADER]: signer.header('payment') },
      });
      res.writeHead(r.status, { 'content-type': 'application/json' }).end(await r.text());
    });
  });

  after(() => {
    for (const s of [payment.server, checkout.server]) {
      s.closeAllConnections();
      s.close();
    }
  });

  const call = async (method: string, path: string, headers: Record<string, string | string[]> = {}) => {
    const h = new Headers();
    for (const [k, v] of Object.entries(headers)) for (const one of [v].flat()) h.append(k, one);
    const r = await fetch(`${payment.url}${path}`, { method, headers: h });
    return { status: r.status, body: (await r.json()) as { caller?: string; rule?: string } };
  };

  it('a signed call from checkout is known as checkout and denied on refunds', async () => {
    const ok = await fetch(`${checkout.url}/out/balance`);
    assert.deepEqual(await ok.json(), { caller: 'checkout' });
    const denied = await fetch(`${checkout.url}/out/refunds/9`, { method: 'POST' });
    assert.equal(denied.status, 403);
    assert.equal(((await denied.json()) as { rule: string }).rule, 'no-checkout-refunds');
  });

  it('a hand-written caller header without a valid signature is anonymous', async () => {
    const r = await call('GET', '/balance', { [CALLER_HEADER]: 'service=cart,namespace=prod' });
    assert.deepEqual(r, { status: 200, body: { caller: 'anonymous' } });
    const forged = await call('GET', '/balance', { [IDENTITY_HEADER]: 'v1|k2||cart|prod|cart-1||1700000000000|1700000030000|AAAA' });
    assert.deepEqual(forged.body, { caller: 'anonymous' });
  });

  it('checkout cannot get past the deny by setting headers by hand', async () => {
    const before = { ...verifier.counters };
    const own = signer.header('payment');
    const parts = own.split('|');
    parts[3] = 'cart';
    const attempts: Record<string, string | string[]>[] = [
      { [CALLER_HEADER]: 'service=cart' }, // the plain header only
      { [IDENTITY_HEADER]: parts.join('|') }, // its own token, service rewritten
      { [IDENTITY_HEADER]: own, [CALLER_HEADER]: 'service=cart' }, // a real token plus a plain claim
      { [IDENTITY_HEADER]: [own.replace('checkout', 'cart'), own] }, // two identity headers
      { [IDENTITY_HEADER]: `${own.slice(0, -4)}AAAA` }, // modified signature
    ];
    for (const headers of attempts) {
      const r = await call('POST', '/refunds/9', headers);
      assert.equal(r.status, 403, JSON.stringify(headers));
      assert.match(r.body.rule ?? '', /^no-(checkout|anonymous)-refunds$/, JSON.stringify(headers));
    }
    assert.equal(verifier.counters['bad-signature'] - before['bad-signature'], 2);
    assert.equal(verifier.counters.malformed - before.malformed, 1);
    assert.equal(verifier.counters.unsigned - before.unsigned, 1);
  });

  it('refuses an expired token and one signed with a retired key', async () => {
    const before = { ...verifier.counters };
    const identity = { service: 'cart', namespace: 'prod', instance: 'cart-1' };
    const stale = signIdentity(identity, current, new ManualClock(T0 - 60_000), { audience: 'payment' });
    assert.deepEqual((await call('GET', '/balance', { [IDENTITY_HEADER]: stale })).body, { caller: 'anonymous' });
    const old = signIdentity(identity, retired, clock, { audience: 'payment' });
    assert.deepEqual((await call('GET', '/balance', { [IDENTITY_HEADER]: old })).body, { caller: 'anonymous' });
    const fresh = signIdentity(identity, current, clock, { audience: 'payment' });
    assert.deepEqual((await call('POST', '/refunds/9', { [IDENTITY_HEADER]: fresh })).body, { caller: 'cart' });
    assert.equal(verifier.counters.expired - before.expired, 1);
    assert.equal(verifier.counters['unknown-key'] - before['unknown-key'], 1);
  });
});
