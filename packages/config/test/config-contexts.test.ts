import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { configContexts, watchPrefixes } from '../src/index.js';

const layout = {
  service: 'orders',
  profiles: ['dev'],
  format: 'key-value',
  prefix: 'config',
  defaultContext: 'application',
  profileSeparator: ',',
} as const;

describe('configContexts', () => {
  it('lists Spring Cloud Consul Config contexts, most specific first', () => {
    assert.deepEqual(configContexts(layout), ['config/orders,dev/', 'config/orders/', 'config/application,dev/', 'config/application/']);
  });

  it('with several profiles the later one is more specific', () => {
    assert.deepEqual(configContexts({ ...layout, profiles: ['dev', 'eu'] }), [
      'config/orders,eu/',
      'config/orders,dev/',
      'config/orders/',
      'config/application,eu/',
      'config/application,dev/',
      'config/application/',
    ]);
  });

  it('without profiles, and with an empty prefix', () => {
    assert.deepEqual(configContexts({ ...layout, profiles: [], prefix: '' }), ['orders/', 'application/']);
  });

  it('in files format a context is a file: .properties before .yaml before .yml', () => {
    assert.deepEqual(configContexts({ ...layout, format: 'files', profileSeparator: '-' }), [
      'config/orders-dev.properties',
      'config/orders-dev.yaml',
      'config/orders-dev.yml',
      'config/orders.properties',
      'config/orders.yaml',
      'config/orders.yml',
      'config/application-dev.properties',
      'config/application-dev.yaml',
      'config/application-dev.yml',
      'config/application.properties',
      'config/application.yaml',
      'config/application.yml',
    ]);
  });

  it('watches one prefix per base name, none covered by another', () => {
    assert.deepEqual(watchPrefixes(layout), ['config/application', 'config/orders']);
    assert.deepEqual(watchPrefixes({ ...layout, service: 'application-api' }), ['config/application']);
    assert.deepEqual(watchPrefixes({ ...layout, service: 'application' }), ['config/application']);
  });
});
