// The admin client against admin endpoints on 127.0.0.1 that a registration could point at:
// what it sends, how much it reads, how many it asks at once.
import assert from 'node:assert/strict';
import type { ServerResponse } from 'node:http';
import { describe, it } from 'node:test';
import type { Instance } from '@meshlet/core';
import { adminAuthorization, listen } from '@meshlet/core/testing';
import { ADMIN_ANSWER_MAX_BYTES, AdminClient } from '../src/index.js';

const SECRET = 'admin-client-secret-0123456789';

const at = (port: number, id = `a-${port}`): Instance => ({
  id,
  service: 'a',
  address: '127.0.0.1',
  port,
  tags: [],
  metadata: { 'meshlet-admin': '/_meshlet' },
  health: 'passing',
});

describe('AdminClient', () => {
  it('sends each endpoint the token for its own address, never the secret', async () => {
    const seen: (string | undefined)[] = [];
    const s = await listen((req, res) => {
      seen.push(req.headers.authorization);
      res.end('{"service":"a"}');
    });
    try {
      const r = await new AdminClient({ token: SECRET, timeoutMs: 20_000 }).status(at(s.port));
      assert.equal(r.ok, true);
      assert.deepEqual(seen, [adminAuthorization(SECRET, s.port).authorization]);
      assert.equal(seen[0]?.includes(SECRET), false);
    } finally {
      await s.close();
    }
  });

  it("names an instance whose mesh has not registered yet (the admin endpoint's 503 MESHLET_ADMIN_NOT_REGISTERED); another 503 stays `HTTP 503`", async () => {
    const bodies = ['{"error":"not registered yet","code":"MESHLET_ADMIN_NOT_REGISTERED"}', '{"error":"busy"}', 'not json'];
    const s = await listen((req, res) => {
      res.statusCode = 503;
      res.end(bodies[Number(req.url?.split('/')[1])]);
    });
    try {
      const client = new AdminClient({ token: SECRET, timeoutMs: 20_000 });
      const reasons = [];
      for (let k = 0; k < bodies.length; k++) {
        const r = await client.status({ ...at(s.port), metadata: { 'meshlet-admin': `/${k}` } });
        reasons.push(r.ok ? 'ok' : r.reason);
      }
      assert.deepEqual(reasons, ['not registered yet', 'HTTP 503', 'HTTP 503']);
    } finally {
      await s.close();
    }
  });

  it('dials no address routing would not call: `127.1` (a URL reads it 127.0.0.1) is `no endpoint`', async () => {
    let asked = 0;
    const s = await listen((_req, res) => {
      asked++;
      res.end('{"service":"a"}');
    });
    try {
      const r = await new AdminClient({ token: SECRET, timeoutMs: 20_000 }).status({ ...at(s.port), address: '127.1' });
      assert.deepEqual(r, { ok: false, reason: 'no endpoint' });
      assert.equal(asked, 0);
    } finally {
      await s.close();
    }
  });

  it('takes as a status only a JSON object: anything else is `not a status`, not JSON is `not JSON`', async () => {
    const answers = ['null', '[]', '5', '"x"', 'true', '{"breakers":"x"}', '{nope'];
    const s = await listen((req, res) => res.end(answers[Number(req.url?.split('/')[1])]));
    try {
      const client = new AdminClient({ token: SECRET, timeoutMs: 20_000 });
      const reasons = [];
      for (let k = 0; k < answers.length; k++) {
        const r = await client.status({ ...at(s.port), metadata: { 'meshlet-admin': `/${k}` } });
        reasons.push(r.ok ? 'ok' : r.reason);
      }
      assert.deepEqual(reasons, ['not a status', 'not a status', 'not a status', 'not a status', 'not a status', 'ok', 'not JSON']);
    } finally {
      await s.close();
    }
  });

  it('stops reading an answer past 1 MiB, one that never ends too', async () => {
    const s = await listen((req, res) => {
      if (req.url?.startsWith('/declared')) {
        res.setHeader('content-length', ADMIN_ANSWER_MAX_BYTES + 1);
        res.write('{');
        return;
      }
      // No length, no end: a chunk whenever the socket drains, until the client goes away.
      const chunk = Buffer.alloc(64 * 1024, 0x20);
      const more = () => {
        while (!res.destroyed && res.write(chunk));
      };
      res.on('drain', more);
      more();
    });
    try {
      const client = new AdminClient({ token: SECRET, timeoutMs: 20_000 });
      const endless = await client.status(at(s.port));
      assert.deepEqual(endless, { ok: false, url: `http://127.0.0.1:${s.port}/_meshlet/status`, reason: 'answer too large' });
      assert.equal(await client.metricsText(at(s.port)), undefined);
      const declared = await new AdminClient({ token: SECRET, timeoutMs: 20_000, defaultPath: '/declared' }).status({
        ...at(s.port),
        metadata: {},
      });
      assert.equal(declared.ok ? 'ok' : declared.reason, 'answer too large');
    } finally {
      await s.close();
    }
  });

  it('gives up on an answer whose body stalls, at the timeout', async () => {
    const s = await listen((_req, res) => res.write('{"service":'));
    try {
      const r = await new AdminClient({ token: SECRET, timeoutMs: 100 }).status(at(s.port));
      assert.equal(r.ok ? 'ok' : r.reason, 'timeout');
    } finally {
      await s.close();
    }
  });

  it('follows no redirect', async () => {
    let elsewhere = 0;
    const other = await listen((_req, res) => {
      elsewhere++;
      res.end('{}');
    });
    const s = await listen((_req, res) => {
      res.writeHead(302, { location: `http://127.0.0.1:${other.port}/_meshlet/status` });
      res.end();
    });
    try {
      const r = await new AdminClient({ token: SECRET, timeoutMs: 20_000 }).status(at(s.port));
      assert.equal(r.ok ? 'ok' : r.reason, 'HTTP 302');
      assert.equal(elsewhere, 0);
    } finally {
      await s.close();
      await other.close();
    }
  });

  it('asks at most `concurrency` endpoints at once, however many are asked', async () => {
    const concurrency = 4;
    const held: ServerResponse[] = [];
    let arrived: () => void = () => {};
    const someHeld = new Promise<void>((resolve) => {
      arrived = resolve;
    });
    let answering = false;
    const s = await listen((_req, res) => {
      if (answering) return void res.end('{"service":"a"}');
      held.push(res);
      if (held.length === concurrency) arrived();
    });
    // Counts the fetches begun: the client calls the global fetch when it has a slot.
    const realFetch = globalThis.fetch;
    let begun = 0;
    globalThis.fetch = (...args: Parameters<typeof fetch>) => {
      begun++;
      return realFetch(...args);
    };
    try {
      const client = new AdminClient({ token: SECRET, timeoutMs: 20_000, concurrency });
      const all = Promise.all(Array.from({ length: 40 }, (_, k) => client.status(at(s.port, `a-${k}`))));
      await someHeld;
      // The endpoint answers none of them yet: the other 36 wait for a slot, unasked.
      assert.equal(begun, concurrency);
      answering = true;
      for (const r of held.splice(0)) r.end('{"service":"a"}');
      assert.equal((await all).filter((r) => r.ok).length, 40);
      assert.equal(begun, 40);
    } finally {
      globalThis.fetch = realFetch;
      await s.close();
    }
  });

  it('refuses a concurrency or size bound that is no bound, naming it', () => {
    for (const [options, field] of [
      [{ concurrency: 0 }, 'concurrency'],
      [{ maxBytes: 0.5 }, 'maxBytes'],
      [{ timeoutMs: 0 }, 'timeoutMs'],
    ] as const)
      assert.throws(
        () => new AdminClient({ token: SECRET, timeoutMs: 1_000, ...options }),
        (err: Error & { code?: string }) => err.code === 'MESHLET_BAD_OPTION' && err.message.startsWith(`${field}:`),
      );
  });
});
