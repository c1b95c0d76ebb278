import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigParseError, parseYaml } from '../src/index.js';

describe('parseYaml', () => {
  it('flattens maps to dotted keys and lists to [i], as Spring does', () => {
    const text = `
server:
  port: 8080
  ssl: { enabled: true }
spring:
  profiles: [a, b]
servers:
  - host: a
    port: 1
  - host: b
matrix: [[1, 2], [3]]
empty-list: []
empty-map: {}
nothing:
ratio: 0.5
`;
    assert.deepEqual(Object.fromEntries(parseYaml(text)), {
      'server.port': '8080',
      'server.ssl.enabled': 'true',
      'spring.profiles[0]': 'a',
      'spring.profiles[1]': 'b',
      'servers[0].host': 'a',
      'servers[0].port': '1',
      'servers[1].host': 'b',
      'matrix[0][0]': '1',
      'matrix[0][1]': '2',
      'matrix[1][0]': '3',
      'empty-list': '',
      nothing: '',
      ratio: '0.5',
    });
  });

  it('keeps dotted and bracketed keys as written, and brackets non-string keys', () => {
    assert.deepEqual(Object.fromEntries(parseYaml('a.b: 1\nmap:\n  "[x.y]": 2\n  1: one\n')), {
      'a.b': '1',
      'map[x.y]': '2',
      'map[1]': 'one',
    });
  });

  it('reads YAML 1.1 as SnakeYAML does: yes/on are booleans, << merges', () => {
    const text = 'base: &b\n  timeout: 5\n  retry: on\nsvc:\n  <<: *b\n  timeout: 9\nflag: yes\nn: y\noff: 1\n';
    assert.deepEqual(Object.fromEntries(parseYaml(text)), {
      n: 'y',
      '[false]': '1',
      'base.timeout': '5',
      'base.retry': 'true',
      'svc.timeout': '9',
      'svc.retry': 'true',
      flag: 'true',
    });
  });

  it('merges the documents of a stream, later ones winning', () => {
    assert.deepEqual(Object.fromEntries(parseYaml('a: 1\nb: 1\n---\nb: 2\n')), { a: '1', b: '2' });
  });

  it('a root that is not a map is the key "document"; an empty document is nothing', () => {
    assert.deepEqual(Object.fromEntries(parseYaml('just text')), { document: 'just text' });
    assert.equal(parseYaml('').size, 0);
    assert.equal(parseYaml('# only a comment\n').size, 0);
  });

  it('rejects broken YAML and duplicate keys without quoting the document', () => {
    const secret = 'hunter2-plain';
    for (const text of [`password: ${secret}\n  bad: [`, `a: 1\na: ${secret}\n`, `key: "unterminated ${secret}`]) {
      assert.throws(
        () => parseYaml(text, 'config/orders/data'),
        (err: unknown) => err instanceof ConfigParseError && err.source === 'config/orders/data' && !err.message.includes(secret),
      );
    }
  });
});
