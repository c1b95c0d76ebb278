import type { Instance, TagLookup } from '@meshlet/core';
import { DEFAULT_WEIGHT, type Endpoint } from './endpoint.js';
import type { LoadBalancer } from './load-balancer.js';

export const DEFAULT_VIRTUAL_NODES = 160;
/** Most points on one ring: bounds memory and build time at large fleets (about 8 MB). */
export const MAX_RING_POINTS = 1 << 19;

/**
 * Consistent hashing on a request tag (e.g. a user id) over a ring of virtual nodes:
 * the same tag value goes to the same instance while it is there, and when one of n
 * instances leaves only the keys it owned move (about 1/n of them). Each instance gets
 * virtual nodes in proportion to its weight. A lookup hashes the tag value, then finds
 * the next point through a 65 536-bucket index over the ring: O(1) expected, whatever
 * the fleet size. Requests without the tag are spread round robin.
 */
export class ConsistentHash implements LoadBalancer {
  readonly #endpoints: readonly Endpoint[];
  readonly #hashTag: string;
  readonly #virtualNodes: number;
  #ring: Ring | undefined;
  #next = 0;

  constructor(endpoints: readonly Endpoint[], hashTag: string, virtualNodes = DEFAULT_VIRTUAL_NODES) {
    this.#endpoints = endpoints;
    this.#hashTag = hashTag;
    this.#virtualNodes = virtualNodes;
  }

  pick(tags: TagLookup): Instance {
    const key = tags(this.#hashTag);
    if (key === undefined) {
      const e = this.#endpoints[this.#next] as Endpoint;
      this.#next = this.#next + 1 === this.#endpoints.length ? 0 : this.#next + 1;
      return e.instance;
    }
    this.#ring ??= buildRing(this.#endpoints, this.#virtualNodes);
    return (this.#endpoints[this.#ring.owner(hashString(key))] as Endpoint).instance;
  }
}

class Ring {
  readonly #points: Uint32Array;
  readonly #owners: Uint32Array;
  /** bucket b's points are points[start[b]] .. points[start[b + 1] - 1]; b is a point's top 16 bits. */
  readonly #start: Uint32Array;

  constructor(points: Uint32Array, owners: Uint32Array) {
    this.#points = points;
    this.#owners = owners;
    const start = new Uint32Array(65537);
    let p = 0;
    for (let b = 0; b <= 65536; b++) {
      while (p < points.length && (points[p] as number) >>> 16 < b) p++;
      start[b] = p;
    }
    this.#start = start;
  }

  /** The owner of the first point at or after `h`, wrapping round. */
  owner(h: number): number {
    const b = h >>> 16;
    let lo = this.#start[b] as number;
    let hi = this.#start[b + 1] as number;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.#points[mid] as number) < h) lo = mid + 1;
      else hi = mid;
    }
    return this.#owners[lo === this.#points.length ? 0 : lo] as number;
  }
}

/**
 * How many points each endpoint gets on the ring: `virtualNodes` for an instance of the
 * default weight, in proportion to weight, at least 1 each, and MAX_RING_POINTS in all at
 * most (past that many instances, exactly one each). On a big fleet the points of the
 * default weight are scaled down; as max(1, round(x)) ≤ x + 1, keeping the scaled total
 * to MAX_RING_POINTS less one point per endpoint keeps the whole within it.
 */
export function ringPointCounts(weights: readonly number[], virtualNodes: number): number[] {
  const totalWeight = weights.reduce((s, w) => s + w, 0);
  const perDefault = Math.max(0, Math.min(virtualNodes, ((MAX_RING_POINTS - weights.length) * DEFAULT_WEIGHT) / totalWeight));
  return weights.map((w) => Math.max(1, Math.round((perDefault * w) / DEFAULT_WEIGHT)));
}

function buildRing(endpoints: readonly Endpoint[], virtualNodes: number): Ring {
  const counts = ringPointCounts(
    endpoints.map((e) => e.weight),
    virtualNodes,
  );
  // Packed as hash * 2^20 + owner, so a plain numeric sort orders by hash, then owner.
  const packed: number[] = [];
  endpoints.forEach((e, owner) => {
    const count = counts[owner] as number;
    // Points depend on the instance id only: other instances coming and going never move them.
    for (let k = 0; k < count; k++) packed.push(hashString(`${e.instance.id}#${k}`) * 1048576 + owner);
  });
  const sorted = Float64Array.from(packed).sort();
  const points = new Uint32Array(sorted.length);
  const owners = new Uint32Array(sorted.length);
  for (let i = 0; i < sorted.length; i++) {
    const v = sorted[i] as number;
    points[i] = Math.floor(v / 1048576);
    owners[i] = v % 1048576;
  }
  return new Ring(points, owners);
}

/** FNV-1a over UTF-16 code units with murmur3's finalizer, so that close keys spread. */
export function hashString(s: string): number {
  return finalize(fnv1a(s, FNV_OFFSET));
}

/** FNV-1a's offset basis: the state before any character. */
export const FNV_OFFSET = 0x811c9dc5;

/** FNV-1a over `s`'s UTF-16 code units, from state `h`: a prefix hashed once can be continued. */
export function fnv1a(s: string, h: number): number {
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h;
}

/** murmur3's 32-bit finalizer: every input bit reaches every output bit. Unsigned. */
export function finalize(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
