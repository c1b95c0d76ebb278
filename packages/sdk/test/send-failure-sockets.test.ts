// sendFailureOf against real sockets: what global fetch and undici's request really throw
// when the upstream refuses, dies with a request in flight, or dropped a keep-alive
// connection. The retry rules ("nothing was sent" for any method, "broken" for idempotent
// ones only) rest on these shapes.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { sendFailureOf } from '@meshlet/breaker';
import { listen } from '@meshlet/core/testing';
import { Agent } from 'undici';
import { startUpstream } from './upstream-process.js';

const agent = new Agent();
after(() => agent.close());

/** A port nothing listens on: a server's, closed. */
async function closedPort(): Promise<number> {
  const s = await listen((_req, res) => res.end());
  await s.close();
  return s.port;
}

async function errorOf(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  assert.fail('the call did not fail');
}

const viaFetch = (port: number, method: string) =>
  fetch(`http://127.0.0.1:${port}/`, { method, ...(method === 'POST' ? { body: 'x' } : {}) }).then((r) => r.text());
const viaRequest = (port: number, method: 'GET' | 'POST') =>
  agent
    .request({ origin: `http://127.0.0.1:${port}`, path: '/', method, ...(method === 'POST' ? { body: 'x' } : {}) })
    .then((r) => r.body.text());

describe('sendFailureOf on real sockets', () => {
  it('a closed port: not sent (fetch: ECONNREFUSED as the cause; request: ECONNREFUSED itself)', async () => {
    const port = await closedPort();
    const f = await errorOf(viaFetch(port, 'POST'));
    const r = await errorOf(viaRequest(port, 'POST'));
    assert.equal((f as { cause?: { code?: string } }).cause?.code, 'ECONNREFUSED');
    assert.equal((r as { code?: string }).code, 'ECONNREFUSED');
    assert.deepEqual([sendFailureOf(f), sendFailureOf(r)], ['not-sent', 'not-sent']);
  });

  it('a server that drops the connection once it has the request: broken (it may have acted on it)', async () => {
    const s = await listen((req) => req.socket.destroy());
    try {
      const f = await errorOf(viaFetch(s.port, 'POST'));
      const r = await errorOf(viaRequest(s.port, 'POST'));
      assert.deepEqual([sendFailureOf(f), sendFailureOf(r)], ['broken', 'broken']);
    } finally {
      await s.close();
    }
  });

  it('a keep-alive connection to a process killed since: undici reconnects, so not sent', async () => {
    const up = await startUpstream('gone');
    assert.equal(await viaFetch(up.port, 'GET'), 'gone');
    assert.equal(await viaRequest(up.port, 'GET'), 'gone');
    await up.kill();
    const f = await errorOf(viaFetch(up.port, 'POST'));
    const r = await errorOf(viaRequest(up.port, 'POST'));
    assert.deepEqual([sendFailureOf(f), sendFailureOf(r)], ['not-sent', 'not-sent']);
  });

  it('a request in flight when the process is killed: broken', async () => {
    const up = await startUpstream('slow', { slow: true });
    const id = 'in-flight';
    const f = errorOf(fetch(`http://127.0.0.1:${up.port}/`, { headers: { 'x-request-id': id } }));
    const r = errorOf(agent.request({ origin: `http://127.0.0.1:${up.port}`, path: '/', method: 'GET', headers: { 'x-request-id': id } }));
    // Both requests reached the process before it dies.
    while (up.seen.length < 2) await new Promise((resolve) => setImmediate(resolve));
    await up.kill();
    assert.deepEqual([sendFailureOf(await f), sendFailureOf(await r)], ['broken', 'broken']);
  });

  it('an origin that is no URL (an address in brackets, port 70000, user info): not sent (ERR_INVALID_URL, before connecting)', async () => {
    // As instanceOrigin makes them of an address "[::1]", a port 70000, an address "user:pw@127.0.0.1".
    for (const origin of ['http://[[::1]]:80', 'http://127.0.0.1:70000', 'http://[user:pw@127.0.0.1]:80']) {
      const f = await errorOf(fetch(`${origin}/`, { method: 'POST', body: 'x' }));
      const r = await errorOf(agent.request({ origin, path: '/', method: 'POST', body: 'x' }));
      assert.deepEqual([sendFailureOf(f), sendFailureOf(r)], ['not-sent', 'not-sent'], origin);
    }
  });

  it('https to a plain HTTP server: the handshake fails, nothing reaches the handler: not sent', async () => {
    let seen = 0;
    const s = await listen((_req, res) => {
      seen++;
      res.end();
    });
    try {
      const f = await errorOf(fetch(`https://127.0.0.1:${s.port}/`, { method: 'POST', body: 'x' }));
      const r = await errorOf(agent.request({ origin: `https://127.0.0.1:${s.port}`, path: '/', method: 'POST', body: 'x' }));
      assert.equal((r as { code?: string }).code, 'ERR_SSL_WRONG_VERSION_NUMBER');
      assert.deepEqual([sendFailureOf(f), sendFailureOf(r)], ['not-sent', 'not-sent']);
      assert.equal(seen, 0);
    } finally {
      await s.close();
    }
  });

  it('a server certificate the client does not trust: the handshake fails, nothing reaches the handler: not sent', async () => {
    const fixture = (name: string) => readFileSync(fileURLToPath(new URL(`../../../../test/fixtures/tls/${name}`, import.meta.url)));
    let seen = 0;
    const server = createHttpsServer({ cert: fixture('server.pem'), key: fixture('server.key') }, (_req, res) => {
      seen++;
      res.end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    try {
      const f = await errorOf(fetch(`https://127.0.0.1:${port}/`, { method: 'POST', body: 'x' }));
      const r = await errorOf(agent.request({ origin: `https://127.0.0.1:${port}`, path: '/', method: 'POST', body: 'x' }));
      assert.equal((r as { code?: string }).code, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE');
      assert.deepEqual([sendFailureOf(f), sendFailureOf(r)], ['not-sent', 'not-sent']);
      assert.equal(seen, 0);
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });
});
