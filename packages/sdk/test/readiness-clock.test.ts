import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { it, mock } from 'node:test';
import { waitUntilReady } from '../src/lifecycle.js';

it('waits out readiness on the monotonic clock: a forward step of the wall clock (Date.now) during the wait does not end it', async () => {
  const real = Date.now.bind(Date);
  let probes = 0;
  // Not ready for the first two probes; the wall clock is stepped an hour on at the first.
  const server = createServer((_req, res) => {
    probes++;
    if (probes === 1) mock.method(Date, 'now', () => real() + 3_600_000);
    res.statusCode = probes >= 3 ? 200 : 503;
    res.end();
  }).listen(0, '127.0.0.1');
  try {
    await once(server, 'listening');
    assert.equal(await waitUntilReady(server, '/health', 30_000), (server.address() as AddressInfo).port);
    assert.equal(probes, 3);
  } finally {
    mock.restoreAll();
    server.close();
  }
});
