import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ApiMatcher, normalizeTemplate, PathTemplate, PathTemplateError, pathTemplateProblem } from '../src/index.js';

/** [template, path, expected params or undefined for no match] */
const CASES: [string, string, Record<string, string> | undefined][] = [
  ['/', '/', {}],
  ['/', '/users', undefined],
  ['/users', '/users', {}],
  ['/users', '/users/', {}],
  ['/users/', '/users', {}],
  ['/users', '/users/42', undefined],
  ['/users/{id}', '/users/42', { id: '42' }],
  ['/users/{id}', '/users/42/', { id: '42' }],
  ['/users/{id}', '/users', undefined],
  ['/users/{id}', '/users/', undefined],
  ['/users/{id}', '/users//', undefined],
  ['/users/{id}', '/users/42/orders', undefined],
  ['/users/{id}', '/users/a%2Fb', { id: 'a%2Fb' }],
  ['/users/{userId}/orders/{orderId}', '/users/7/orders/x-9', { userId: '7', orderId: 'x-9' }],
  ['/users/{userId}/orders/{orderId}', '/users/7/orders', undefined],
  ['/users/:id', '/users/42', { id: '42' }],
  ['/files/{name}.{ext}', '/files/report.pdf', { name: 'report', ext: 'pdf' }],
  ['/files/{name}.{ext}', '/files/archive.tar.gz', { name: 'archive', ext: 'tar.gz' }],
  ['/files/{name}.{ext}', '/files/report', undefined],
  ['/files/{name}.{ext}', '/files/.pdf', undefined],
  ['/files/{name}.{ext}', '/files/report.', undefined],
  ['/api/v{major}/items', '/api/v2/items', { major: '2' }],
  ['/api/v{major}/items', '/api/v/items', undefined],
  ['/api/v{major}/items', '/api/x2/items', undefined],
  ['/reports/report-{id}.pdf', '/reports/report-17.pdf', { id: '17' }],
  ['/reports/report-{id}.pdf', '/reports/report-.pdf', undefined],
  ['/reports/report-{id}.pdf', '/reports/report-17.csv', undefined],
  ['/d/{a}-{b}.json', '/d/x-y-z.json', { a: 'x', b: 'y-z' }],
  ['/d/{a}-{b}.json', '/d/x.json', undefined],
  ['/static/*', '/static/app.js', {}],
  ['/static/*', '/static', undefined],
  ['/static/**', '/static', {}],
  ['/static/**', '/static/js/app.js', {}],
  ['/static/**', '/statics/app.js', undefined],
  ['/**', '/anything/at/all', {}],
  ['/**', '/', {}],
  ['/{x}', '/', undefined],
  ['/tenants/{tenant}/**', '/tenants/t1/a/b', { tenant: 't1' }],
];

describe('path templates', () => {
  it('matches every supported form and extracts the parameters', () => {
    for (const [template, path, params] of CASES) {
      const t = PathTemplate.parse(template);
      assert.equal(t.matches(path), params !== undefined, `${template} vs ${path}`);
      assert.deepEqual(t.extract(path), params, `${template} vs ${path}`);
    }
  });

  it('normalises to the OpenAPI spelling', () => {
    assert.equal(normalizeTemplate('/users/:id/'), '/users/{id}');
    assert.equal(normalizeTemplate('/files/{name}.{ext}'), '/files/{name}.{ext}');
    assert.equal(normalizeTemplate('/'), '/');
    assert.deepEqual(PathTemplate.parse('/a/{x}/b/{y}.{z}').params, ['x', 'y', 'z']);
  });

  it('refuses what is not a template, saying why', () => {
    const bad: [string, RegExp][] = [
      ['users', /start with "\/"/],
      ['', /start with "\/"/],
      ['/a//b', /empty segment/],
      ['/a/**/b', /last segment/],
      ['/a/b*', /whole segment/],
      ['/a/{id', /unclosed/],
      ['/a/id}', /unbalanced/],
      ['/a/{}', /not a parameter name/],
      ['/a/{1x}', /not a parameter name/],
      ['/a/{a}{b}', /side by side/],
      ['/a/{id}/b/{id}', /twice/],
      ['/a/:', /not a parameter name/],
      ['/a?b', /not allowed/],
      ['/a b', /not allowed/],
      [`/${'a'.repeat(1100)}`, /longer than/],
    ];
    for (const [template, reason] of bad) {
      assert.throws(
        () => PathTemplate.parse(template),
        (err: unknown) => err instanceof PathTemplateError && err.code === 'MESHLET_BAD_PATH_TEMPLATE' && reason.test(err.reason),
        template,
      );
      assert.match(pathTemplateProblem(template) ?? '', reason);
    }
    assert.equal(pathTemplateProblem('/users/{id}'), undefined);
  });

  it('is linear on hostile input (no backtracking)', () => {
    const t = PathTemplate.parse('/f/{a}.{b}.{c}.x');
    // Matching must simply answer; a backtracking regex would take minutes here.
    assert.equal(t.matches(`/f/${'.'.repeat(100_000)}`), false);
    assert.equal(t.matches(`/f/${'a.'.repeat(50_000)}x`), true);
  });
});

describe('ApiMatcher', () => {
  const apis = [
    { method: 'GET', path: '/users/{id}' },
    { method: 'GET', path: '/users/me' },
    { method: 'GET', path: '/users/**' },
    { method: '*', path: '/users/{id}/avatar' },
    { method: 'GET', path: '/users/{id}/{tab}' },
    { method: 'POST', path: '/users' },
    { method: 'GET', path: '/files/{name}.{ext}' },
    { method: 'GET', path: '/files/{name}' },
    { method: 'DELETE', path: '/users/:id' },
  ];
  const m = new ApiMatcher(apis);
  const key = (method: string, path: string) => m.match(method, path)?.key;

  it('returns the most specific template whatever the order', () => {
    assert.equal(key('GET', '/users/me'), 'GET /users/me');
    assert.equal(key('GET', '/users/42'), 'GET /users/{id}');
    assert.equal(key('GET', '/users/42/'), 'GET /users/{id}');
    assert.equal(key('GET', '/users/42/posts'), 'GET /users/{id}/{tab}');
    // Path specificity comes before the method: a literal "avatar" beats {tab}.
    assert.equal(key('GET', '/users/42/avatar'), '* /users/{id}/avatar');
    assert.equal(key('PUT', '/users/42/avatar'), '* /users/{id}/avatar');
    assert.equal(key('GET', '/users/42/posts/9'), 'GET /users/**');
    assert.equal(key('GET', '/files/a.txt'), 'GET /files/{name}.{ext}');
    assert.equal(key('GET', '/files/readme'), 'GET /files/{name}');
    assert.equal(key('DELETE', '/users/9'), 'DELETE /users/{id}', 'Express :id is normalised in the key');
    assert.equal(key('POST', '/users'), 'POST /users');
    assert.equal(key('POST', '/users/9'), undefined);
    assert.equal(key('PATCH', '/orders'), undefined);
  });

  it('lets HEAD fall back to GET templates', () => {
    assert.equal(key('HEAD', '/users/42'), 'GET /users/{id}');
    assert.equal(key('HEAD', '/users'), 'GET /users/**');
    assert.equal(key('HEAD', '/orders'), undefined);
  });

  it('gives the entry given, and an empty matcher matches nothing', () => {
    assert.equal(m.match('GET', '/users/me')?.entry, apis[1]);
    assert.equal(new ApiMatcher([]).match('GET', '/'), undefined);
    assert.equal(m.test('GET', '/users/1'), true);
  });

  it('prefers a named method over * on equal paths', () => {
    const mm = new ApiMatcher([
      { method: '*', path: '/a/{x}' },
      { method: 'GET', path: '/a/{y}' },
      { method: '*', path: '/b' },
      { method: 'GET', path: '/b' },
    ]);
    assert.equal(mm.match('GET', '/a/1')?.key, 'GET /a/{y}');
    assert.equal(mm.match('POST', '/a/1')?.key, '* /a/{x}');
    assert.equal(mm.match('GET', '/b')?.key, 'GET /b');
    assert.equal(mm.match('PUT', '/b')?.key, '* /b');
  });

  it('prefers a literal segment over a parameter from the left', () => {
    const mm = new ApiMatcher([
      { method: 'GET', path: '/{a}/b' },
      { method: 'GET', path: '/a/{b}' },
    ]);
    assert.equal(mm.match('GET', '/a/b')?.key, 'GET /a/{b}');
  });

  it('throws PathTemplateError for a bad template at construction', () => {
    assert.throws(() => new ApiMatcher([{ method: 'GET', path: '/a/{' }]), PathTemplateError);
  });
});
