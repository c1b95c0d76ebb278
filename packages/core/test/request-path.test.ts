// The canonical request path (request-path.ts) and path templates compared in it: what a
// rule on `/internal/**` or `/login` matches, whatever spelling of the target a framework
// would route to the same handler.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ApiMatcher, canonicalPath, foldPath, PathTemplate, REQUEST_PATH_MAX_LENGTH, requestPath, seededRandom } from '../src/index.js';

/** [rule template, request target as node:http gives it (req.url), matches] */
const TABLE: [string, string, boolean][] = [
  ['/internal/**', '/internal/secrets', true],
  // Express routes case-insensitively by default.
  ['/internal/**', '/INTERNAL/secrets', true],
  ['/internal/**', '/Internal/Secrets', true],
  // Fastify routes the percent-decoded path.
  ['/internal/**', '/%69nternal/secrets', true],
  ['/internal/**', '/%69NTERNAL/secrets', true],
  ['/internal/**', '/%49nternal/secrets', true],
  // Absolute-form targets: Express and Fastify route their pathname.
  ['/internal/**', 'http://x/internal/secrets', true],
  ['/internal/**', 'HTTP://X:8080/Internal/secrets?a=1', true],
  ['/internal/**', 'http://user@x/internal/secrets#f', true],
  ['/internal/**', 'ftp://x/internal/secrets', true],
  ['/internal/**', 'http://[::1]:80/internal', true],
  // Runs of slashes are one (Fastify's ignoreDuplicateSlashes, a node:http app splitting on "/").
  ['/internal/**', '//internal/secrets', true],
  ['/internal/**', '/internal//secrets', true],
  ['/internal/**', '/internal/secrets?x=/public', true],
  ['/internal/**', '/internal/secrets#x', true],
  // %2F stays inside its segment: no framework routes it under /internal/.
  ['/internal/**', '/internal%2Fsecrets', false],
  ['/internal/**', '/internal%2fsecrets', false],
  ['/internal/**', '/internals/x', false],
  ['/internal/**', '/public/internal/x', false],
  ['/internal/**', 'http://internal/x', false],
  ['/internal/**', '/public?/internal/x', false],
  ['/login', '/login', true],
  ['/login', '/Login', true],
  ['/login', '/LOGIN/', true],
  ['/login', '/l%6Fgin', true],
  ['/login', '/l%6fGIN', true],
  ['/login', '/login?next=/x', true],
  // Express (parseurl on a "#") and Fastify cut the fragment.
  ['/login', '/login#x', true],
  ['/login', 'http://h/LOGIN?x', true],
  ['/login', '/login/x', false],
  ['/login', '/login;x', false],
  ['/login', '/logins', false],
  ['/users/{id}', '/Users/42', true],
  ['/users/{id}', '/users/%34%32', true],
  ['/users/{id}/orders', '/USERS/7/Orders', true],
  ['/users/{id}', '/users/a%2Fb', true],
  ['/users/{id}', '/users/a/b', false],
  ['/files/{name}.pdf', '/files/Report.PDF', true],
  ['/files/{name}.pdf', '/files/Report%2EPDF', true],
  ['/api/v{major}/items', '/API/V2/ITEMS', true],
  // Templates are compared in the same form: their escapes decoded, their case folded.
  ['/caf%C3%A9', '/caf%c3%a9', true],
  ['/caf%C3%A9', '/CAF%C3%89', true],
  ['/a%2Fb', '/a%2fb', true],
  ['/a%2Fb', '/a/b', false],
  ['/a%2fb/**', '/A%2FB/c', true],
  ['/100%', '/100%25', true],
  ['/100%', '/100%', true],
  ['/%7Euser', '/~user', true],
  ['/', 'http://x', true],
  ['/', 'http://x?y', true],
  ['/', '/?/internal', true],
];

/** Targets refused (the pipeline answers 400): their readings cannot be made one path. */
const REFUSED = [
  '/internal/..',
  '/internal/../public',
  '/public/../internal/secrets',
  '/internal/%2e%2e',
  '/internal/%2E%2e/x',
  '/internal/.%2e',
  '/internal/.',
  '/a/./b',
  '/%2e',
  '/..',
  'http://x/a/../internal',
  '/internal\\secrets',
  '/internal\\secrets#x',
  'http://x\\internal/secrets',
  '*',
  'x/y',
  'http:/a',
  'a:b',
  '',
];

describe('requestPath: the canonical path of a request target', () => {
  it('refuses a path longer than REQUEST_PATH_MAX_LENGTH, counted after decoding, its query not counted', () => {
    const at = `/${'a'.repeat(REQUEST_PATH_MAX_LENGTH - 1)}`;
    assert.equal(requestPath(`${at}?${'q'.repeat(10_000)}`), at);
    assert.equal(requestPath(`${at}b`), undefined);
    assert.equal(requestPath(`http://x${at}b`), undefined);
    // Escapes count as the characters they decode to; `//` as one `/`.
    assert.equal(requestPath(`/${'%61'.repeat(REQUEST_PATH_MAX_LENGTH - 1)}`), at);
    assert.equal(requestPath(`//${'a'.repeat(REQUEST_PATH_MAX_LENGTH - 1)}`), at);
    // Asked with no bound, a sound long path is given: how the pipeline tells 414 from 400.
    assert.equal(requestPath(`${at}b`, Number.POSITIVE_INFINITY), `${at}b`);
    assert.equal(requestPath(`${at}b/..`, Number.POSITIVE_INFINITY), undefined);
  });

  it('matches rule templates as every framework reads the target, and only those', () => {
    for (const [template, target, expected] of TABLE) {
      const path = requestPath(target);
      assert.notEqual(path, undefined, `${target} is refused`);
      const t = PathTemplate.parse(template);
      assert.equal(t.matches(path as string), expected, `${template} vs ${target} (${path})`);
      // ApiMatcher (auth apis, the catalog, breakers) decides the same.
      assert.equal(
        new ApiMatcher([{ method: 'GET', path: template }]).test('GET', path as string),
        expected,
        `ApiMatcher ${template} vs ${target}`,
      );
      assert.equal(
        new ApiMatcher([
          { method: '*', path: template },
          { method: 'GET', path: '/{zz}/q/r/s' },
        ]).test('GET', path as string),
        expected,
      );
    }
  });

  it('refuses a dot segment, a backslash before the query, and a target that is neither a path nor a URL', () => {
    for (const target of REFUSED) assert.equal(requestPath(target), undefined, JSON.stringify(target));
    // Not dot segments, or not in the path.
    for (const target of ['/a/.../b', '/a/..b', '/a/.b/', '/a?x=/../', '/a?x=\\', '/a#/../b', '/a/%2e%2ex'])
      assert.notEqual(requestPath(target), undefined, target);
  });

  it('keeps the case and %2F, decodes the rest, and is a fixed point', () => {
    assert.equal(requestPath('/Users/%4A%6fe/a%2fb?x'), '/Users/Joe/a%2Fb');
    assert.equal(requestPath('HTTP://Host/A//B'), '/A/B');
    assert.equal(canonicalPath('/a%2541'), '/a%2541');
    assert.equal(canonicalPath('/%%34%31'), '/%2541', 'a bare "%" is written %25: no escape is made by decoding');
    assert.equal(canonicalPath('/%zz/%4'), '/%25zz/%254');
    assert.equal(canonicalPath('/%C3/%e2%82/%80'), '/%C3/%E2%82/%80', 'bytes that are not UTF-8 stay escaped');
    assert.equal(canonicalPath('/%e2%82%ac%C3%a9'), '/€é');
    assert.equal(canonicalPath('/%C0%80/%ED%A0%80'), '/%C0%80/%ED%A0%80', 'overlong and surrogate spellings are not UTF-8');
    assert.equal(foldPath('/A%2fB/Ä'), '/a%2fb/ä');
    const plain = '/already/canonical';
    assert.equal(canonicalPath(plain), plain);
    // Random strings over an alphabet of escapes, slashes and dots.
    const random = seededRandom(0x2f2f);
    const alphabet = [
      '%',
      '2',
      'F',
      'f',
      '5',
      'e',
      'E',
      'C',
      '3',
      'A',
      '9',
      '8',
      '0',
      '/',
      '.',
      'a',
      'Z',
      '%C3',
      '%A9',
      '%2F',
      '%25',
      '%E2',
      '%82',
    ];
    for (let i = 0; i < 20_000; i++) {
      let s = '/';
      const n = Math.floor(random() * 12);
      for (let k = 0; k < n; k++) s += alphabet[Math.floor(random() * alphabet.length)];
      const once = canonicalPath(s);
      assert.equal(canonicalPath(once), once, `not a fixed point: ${s} -> ${once}`);
      assert.equal(foldPath(foldPath(s)), foldPath(s), s);
      // Nothing is lost: decoding both spellings gives the same string (slashes aside).
      if (!s.includes('//')) {
        let decoded: string | undefined;
        try {
          decoded = decodeURIComponent(s);
        } catch {}
        if (decoded !== undefined) assert.equal(decodeURIComponent(once), decoded, s);
      }
      const path = requestPath(s);
      if (path !== undefined) assert.equal(path, once);
    }
  });

  it('keeps the case of parameter values, though it compares without case', () => {
    assert.deepEqual(PathTemplate.parse('/users/{id}/files/{name}.{ext}').extract('/USERS/AbC/Files/Re%50ort.TAR.gz'), {
      id: 'AbC',
      name: 'RePort',
      ext: 'TAR.gz',
    });
    assert.deepEqual(PathTemplate.parse('/a/{x}').extract('/A/%C3%89t%C3%A9'), { x: 'Été' });
    // The key an API is counted and named by is the template's spelling, whatever the request's.
    const m = new ApiMatcher([
      { method: 'GET', path: '/Users/{id}' },
      { method: 'GET', path: '/Users/Me' },
    ]);
    assert.equal(m.match('GET', '/users/me')?.key, 'GET /Users/Me');
    assert.equal(m.match('GET', '/USERS/42')?.key, 'GET /Users/{id}');
  });

  it('is linear on hostile targets', () => {
    // A quadratic step would take minutes on these (1 MiB each).
    const big = 1 << 20;
    const hostile = [
      `/${'%'.repeat(big)}`,
      `/${'%C3'.repeat(big / 3)}`,
      `/${'%E2%82'.repeat(big / 6)}`,
      '/'.repeat(big),
      `/${'a/'.repeat(big / 2)}`,
      `/${'%2F%25'.repeat(big / 6)}`,
      `http://${'h'.repeat(big)}`,
      `/${'.%2e/'.repeat(big / 5)}`,
    ];
    for (const target of hostile) {
      requestPath(target);
      foldPath(target);
    }
    const t = PathTemplate.parse('/f/{a}.{b}.{c}.x');
    assert.equal(t.matches(`/F/${'%2E'.repeat(100_000)}`), false);
  });
});
