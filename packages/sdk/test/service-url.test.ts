// urlParts: the fast path for `http://service/path?query` gives exactly what WHATWG URL
// gives, and everything it cannot be sure of goes through URL.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { URL_CACHE_MAX_LENGTH, URL_CACHE_SIZE, urlCacheSize, urlParts } from '../src/service-url.js';

function viaUrl(s: string) {
  const u = new URL(s);
  return { hostname: u.hostname, pathname: u.pathname, search: u.search };
}

function parts(s: string) {
  const p = urlParts(s);
  return { hostname: p.hostname, pathname: p.pathname, search: p.search };
}

/** The parts, or the name of the error thrown: a URL that cannot be parsed must fail both ways. */
function outcome(f: (s: string) => unknown, s: string): unknown {
  try {
    return f(s);
  } catch (e) {
    return (e as Error).name;
  }
}

describe('urlParts', () => {
  const table: [input: string, why: string][] = [
    ['http://orders/api/users/42', 'plain path'],
    ['http://orders', 'no path: /'],
    ['http://orders/', 'root'],
    ['http://orders/a?b=1&c=2', 'query'],
    ['http://orders/a?', 'empty query: search is empty'],
    ['http://orders?x=1', 'query without a path'],
    ['http://orders/a%2Fb/c%20d', 'percent-encoding kept as written'],
    ['http://orders/a%zz', 'a bad percent sequence'],
    ['http://orders/a/./b/../c', 'dot segments removed'],
    ['http://orders/a/%2e%2E/c', 'encoded dot segments removed'],
    ['http://orders/a/..', 'a trailing dot-dot'],
    ['http://orders/a/.hidden/b..c', 'dots that are not segments'],
    ['http://Orders/A', 'upper-case host lowered, path kept'],
    ['HTTP://orders/a', 'upper-case scheme'],
    ['http://orders:8080/a', 'a port'],
    ['http://orders:80/a', 'the default port'],
    ['http://user:pw@orders/a', 'user info'],
    ['http://orders/a b', 'a space: encoded'],
    ['http://orders/a"b<c>d`e{f}', 'characters the path set encodes'],
    ["http://orders/a?q='x'", 'a quote the special query set encodes'],
    ['http://orders/a?q=<x>', 'angle brackets in the query'],
    ['http://orders/a#frag', 'a fragment is not part of the path'],
    ['http://orders/a\\b', 'a backslash is a slash'],
    ['http://orders/é', 'non-ASCII: encoded'],
    ['http://orders/a\t b', 'a tab is removed'],
    ['http://orders.default.svc/a', 'a dotted host'],
    ['http://orders./a', 'a trailing dot'],
    ['http://0x7f.1/a', 'an IPv4 host in hex'],
    ['http://127.0.0.1/a', 'an IPv4 host'],
    ['http://2130706433/a', 'an IPv4 host as one number'],
    ['http://svc.0x/a', 'an IPv4-like last label'],
    ['http://[::1]/a', 'IPv6'],
    ['https://orders/a', 'another scheme'],
    ['http://orders/a?x=1?y=/2', 'a second ? and / in the query'],
    ["http://orders/a!$&'()*+,;=:@~_-.", 'sub-delimiters in the path'],
  ];
  for (const [input, why] of table)
    it(`${why}: ${JSON.stringify(input)}`, () => {
      assert.deepEqual(outcome(parts, input), outcome(viaUrl, input));
    });

  it('agrees with URL on 20,000 random strings of URL-ish characters', () => {
    const alphabet = 'aAzZ09-._~!$&\'()*+,;=:@%/?#[]\\ "<>`{}|^é\t2eE';
    let seed = 42;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const hosts = ['orders', 'a.b', 'svc1', 'x-y.z', '0x1', 'svc.12', 'Up', 'xn--abc', ''];
    for (let i = 0; i < 20_000; i++) {
      let tail = i % 2 === 0 ? '/' : '';
      const len = rnd(16);
      for (let j = 0; j < len; j++) tail += alphabet[rnd(alphabet.length)];
      const input = `http://${hosts[rnd(hosts.length)]}${tail}`;
      assert.deepEqual(outcome(parts, input), outcome(viaUrl, input), input);
    }
  });

  it('a URL split before is taken from a bounded cache: the same parts, not a WHATWG URL anyone can change', () => {
    const a = urlParts('http://orders/cached?x=1');
    assert.equal(urlParts('http://orders/cached?x=1'), a, 'the same parts object');
    const viaWhatwg = urlParts('HTTP://Orders/x');
    assert.ok(viaWhatwg instanceof URL, 'the first split of a URL the fast path leaves alone is a URL');
    (viaWhatwg as URL).pathname = '/changed';
    assert.deepEqual(parts('HTTP://Orders/x'), viaUrl('HTTP://Orders/x'), 'the cache kept its own copy');
    for (let i = 0; i < 3 * URL_CACHE_SIZE; i++) urlParts(`http://orders/users/${i}`);
    assert.ok(urlCacheSize() <= URL_CACHE_SIZE, `${urlCacheSize()} entries`);
    const long = `http://orders/${'a'.repeat(URL_CACHE_MAX_LENGTH)}`;
    const before = urlCacheSize();
    assert.deepEqual(parts(long), viaUrl(long));
    assert.equal(urlCacheSize(), before, 'a long URL is not kept');
  });

  it('takes a URL as it is', () => {
    const u = new URL('http://orders/a?b');
    assert.equal(urlParts(u), u);
  });
});
