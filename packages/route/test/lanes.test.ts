import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createContext, decodeTags, encodeTags, getTag, type Instance, type MeshContext, seededRandom } from '@meshlet/core';
import { LANE_TAG, Router } from '../src/index.js';
import { instance, tags } from './fixtures.js';

// Four services in a chain: gateway -> cart -> price -> stock. The `gray` lane has
// instances of cart and stock, but not of price.
const fleets: Record<string, Instance[]> = {
  cart: [instance('cart', 'cart-1'), instance('cart', 'cart-2'), instance('cart', 'cart-gray', { lane: 'gray' })],
  price: [instance('price', 'price-1'), instance('price', 'price-2')],
  stock: [
    instance('stock', 'stock-1'),
    instance('stock', 'stock-gray', { lane: 'gray' }),
    instance('stock', 'stock-blue', { lane: 'blue' }),
  ],
};

/** The process of one service: its own router over the services it calls. */
function hop(seed: number): Router {
  const router = new Router({ random: seededRandom(seed) });
  for (const [service, instances] of Object.entries(fleets)) router.setInstances(service, instances);
  return router;
}

/** What the next hop's inbound middleware rebuilds from the tag header the call carried. */
function forward(ctx: MeshContext): MeshContext {
  const { header } = encodeTags(ctx.tags);
  return createContext({ tags: header ? decodeTags(header).tags : [] });
}

/** Sends one request down the chain; returns the instance that served each hop. */
function chain(edgeTags: Record<string, string>, routers: Router[]): string[] {
  const served: string[] = [];
  let ctx = createContext({ tags: Object.entries(edgeTags) });
  for (const [i, service] of ['cart', 'price', 'stock'].entries()) {
    const current = ctx;
    served.push((routers[i] as Router).pick(service, (t) => getTag(t, current)).id);
    ctx = forward(ctx);
  }
  return served;
}

describe('lanes', () => {
  const routers = [hop(1), hop(2), hop(3)];

  it('keeps a lane request in its lane on every hop, and on the baseline where the lane has no instance', () => {
    for (let i = 0; i < 20; i++) {
      const [cart, price, stock] = chain({ [LANE_TAG]: 'gray' }, routers);
      assert.equal(cart, 'cart-gray');
      assert.match(price ?? '', /^price-[12]$/);
      // The lane tag went through price untouched, so stock is in the lane again.
      assert.equal(stock, 'stock-gray');
    }
  });

  it('never sends a request outside a lane to lane instances', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 30; i++) for (const id of chain({}, routers)) seen.add(id);
    assert.deepEqual([...seen].sort(), ['cart-1', 'cart-2', 'price-1', 'price-2', 'stock-1']);
  });

  it('sends a lane with no instance anywhere to the baseline, not to another lane', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 30; i++) for (const id of chain({ [LANE_TAG]: 'green' }, routers)) seen.add(id);
    assert.deepEqual([...seen].sort(), ['cart-1', 'cart-2', 'price-1', 'price-2', 'stock-1']);
  });

  it('reports the lane that served, and skips route rules inside a lane', () => {
    const r = hop(4);
    const d = r.decide('stock', tags({ [LANE_TAG]: 'blue' }));
    assert.deepEqual([d.via, d.lane, d.instance.id], ['lane', 'blue', 'stock-blue']);
  });

  it('falls back to the baseline when the lane’s instances are all unhealthy', () => {
    const r = new Router({ random: seededRandom(1) });
    r.setInstances('cart', [instance('cart', 'cart-1'), instance('cart', 'cart-gray', { lane: 'gray' }, 'critical')]);
    const d = r.decide('cart', tags({ [LANE_TAG]: 'gray' }));
    assert.deepEqual([d.via, d.lane, d.instance.id], ['default', undefined, 'cart-1']);
  });

  it('says so when every instance is in a lane and the request is in none', () => {
    const r = new Router();
    r.setInstances('cart', [instance('cart', 'cart-gray', { lane: 'gray' })]);
    assert.throws(() => r.decide('cart', tags()), /all 1 instances are in lanes \(gray\); none serves requests outside them/);
  });
});
