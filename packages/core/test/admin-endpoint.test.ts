import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ADMIN_META_KEY, adminEndpoint, type Instance } from '../src/index.js';

const instance = (address: string, port: number, admin = '/_meshlet'): Instance => ({
  id: 'i',
  service: 'a',
  address,
  port,
  tags: [],
  metadata: { [ADMIN_META_KEY]: admin },
  health: 'passing',
});

describe('adminEndpoint', () => {
  it('is the instance origin and mount path; an IPv6 address bracketed, a host name with "_" kept', () => {
    assert.deepEqual(adminEndpoint(instance('10.0.0.7', 8080)), {
      origin: 'http://10.0.0.7:8080',
      authority: '10.0.0.7:8080',
      path: '/_meshlet',
    });
    assert.deepEqual(adminEndpoint(instance('::1', 8080, ':9901/admin/')), {
      origin: 'http://[::1]:9901',
      authority: '[::1]:9901',
      path: '/admin',
    });
    assert.equal(adminEndpoint(instance('my_host', 8080))?.origin, 'http://my_host:8080');
  });

  it('is none for an address or port routing would not call: no token is made for it, nothing dials it', () => {
    for (const [address, port] of [
      ['127.1', 8080], // a URL reads it as 127.0.0.1
      ['0x7f.1', 8080],
      ['fe80::1%eth0', 8080],
      ['[::1]', 8080],
      ['', 8080],
      ['evil.example/x?', 8080],
      ['10.0.0.7', 0],
      ['10.0.0.7', 70_000],
      ['10.0.0.7', 80.5],
    ] as const)
      assert.equal(adminEndpoint(instance(address, port)), undefined, `${address}:${port}`);
  });

  it('is none for an admin location that is not one', () => {
    assert.equal(adminEndpoint(instance('10.0.0.7', 8080, 'admin')), undefined);
    assert.equal(adminEndpoint(instance('10.0.0.7', 8080, ':0/admin')), undefined);
    assert.equal(adminEndpoint({ ...instance('10.0.0.7', 8080), metadata: {} }), undefined);
  });
});
