// What ConsulClient does with answers it cannot use as they are: an X-Consul-Index that is not
// an index, JSON of the wrong shape, a body past maxBodyBytes, and an agent that says nothing
// to a query that does not block. Consul here is a fetch stub, or a node:http server where
// the connection itself is what is checked.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { type Instance, type KvEntry, type LogFields, MemoryLogger, throttledLogger } from '@meshlet/core';
import {
  CONSUL_MAX_BODY_BYTES,
  ConsulAnswerTooLargeError,
  ConsulBadAnswerError,
  ConsulClient,
  ConsulKvStore,
  type ConsulKvStoreOptions,
  ConsulRegistry,
  type HealthEntry,
} from '../src/index.js';
import { type FakeRequest, fakeConsulKv, json as jsonWithStatus } from './fake-consul-kv.js';

/** A fetch that answers the n-th request (from 0) with `answer(n, url)`, and records the URLs. */
function scripted(answer: (n: number, url: string) => Response) {
  const urls: string[] = [];
  const waiting: { n: number; resolve: () => void }[] = [];
  const fetch = (async (input: string | URL | Request) => {
    const url = String(input);
    urls.push(url);
    for (const w of waiting.filter((w) => w.n === urls.length)) w.resolve();
    return answer(urls.length - 1, url);
  }) as typeof globalThis.fetch;
  /** Resolves once `n` requests have been made. */
  const made = (n: number) => (urls.length >= n ? Promise.resolve() : new Promise<void>((resolve) => waiting.push({ n, resolve })));
  return { fetch, urls, made };
}

const json = (body: unknown, index?: string) =>
  new Response(typeof body === 'string' ? body : JSON.stringify(body), {
    status: 200,
    headers: { 'content-type': 'application/json', ...(index === undefined ? {} : { 'x-consul-index': index }) },
  });

/** An agent that accepts every request and never answers (until the caller gives up). */
const silent = ((_input: string | URL | Request, init?: RequestInit) =>
  new Promise<Response>((_resolve, reject) => {
    const signal = init?.signal;
    signal?.addEventListener('abort', () => reject(signal.reason), { once: true });
  })) as typeof globalThis.fetch;

const entry = (id: string): HealthEntry => ({
  Node: { Node: 'n', Address: '127.0.0.1' },
  Service: { ID: id, Service: 'up', Address: '127.0.0.1', Port: 9, Tags: [], Meta: {} },
  Checks: [{ Status: 'passing', ServiceID: id }],
});

/** A MemoryLogger that can be waited on for a code. */
class WaitingLogger extends MemoryLogger {
  readonly #waiting: { code: string; resolve: () => void }[] = [];
  override warn(message: string, fields?: LogFields) {
    super.warn(message, fields);
    for (const w of this.#waiting.filter((w) => w.code === fields?.code)) w.resolve();
  }
  /** Resolves once an entry with `code` has been logged. */
  logged(code: string): Promise<void> {
    if (codes(this).includes(code)) return Promise.resolve();
    return new Promise((resolve) => this.#waiting.push({ code, resolve }));
  }
}

const codes = (logger: MemoryLogger) => logger.entries.map((e) => e.fields?.code);

describe('ConsulClient: X-Consul-Index', () => {
  it('an index that is not a whole number from 0 up is read as 0, counted, and logged once a minute', async () => {
    const values = ['abc', 'NaN', '-3', '1.5', '1e3', '0x10', '99999999999999999', ''];
    const { fetch } = scripted((n) => json([], values[n]));
    const logger = new MemoryLogger();
    const client = new ConsulClient({ fetch, logger });
    const read: number[] = [];
    for (const _ of values) read.push((await client.request('GET', '/v1/health/service/up?index=0')).index);
    assert.deepEqual(read, Array(values.length).fill(0));
    assert.equal(client.answerProblems.get('MESHLET_CONSUL_BAD_INDEX'), values.length);
    assert.deepEqual(codes(logger), ['MESHLET_CONSUL_BAD_INDEX']);
    assert.equal(logger.entries[0]?.fields?.value, '"abc"');
  });

  it("built without a logger, adopted by a mesh: the mesh's logger counts every bad index and writes one line", async () => {
    const { fetch } = scripted(() => json([], 'not-a-number'));
    const client = new ConsulClient({ fetch });
    // What a mesh adopts: its logger, counting every coded entry (meshlet_conditions_total).
    const written = new MemoryLogger();
    const mesh = throttledLogger(written);
    client.adoptLogger(mesh);
    for (let n = 0; n < 7; n++) await client.request('GET', '/v1/kv/a?index=0');
    assert.equal(client.answerProblems.get('MESHLET_CONSUL_BAD_INDEX'), 7);
    assert.equal(mesh.counts.get('MESHLET_CONSUL_BAD_INDEX'), 7, 'each answer reaches the mesh, not one a minute');
    assert.deepEqual(codes(written), ['MESHLET_CONSUL_BAD_INDEX'], 'the mesh throttles the lines');
  });

  it('a whole number is read as it is, and no header is 0 without a word', async () => {
    const { fetch } = scripted((n) => json([], n === 0 ? '0' : n === 1 ? '4294967296' : undefined));
    const logger = new MemoryLogger();
    const client = new ConsulClient({ fetch, logger });
    assert.equal((await client.request('GET', '/v1/kv/a')).index, 0);
    assert.equal((await client.request('GET', '/v1/kv/a')).index, 4294967296);
    assert.equal((await client.request('GET', '/v1/kv/a')).index, 0);
    assert.deepEqual(logger.entries, []);
  });

  it('a registry watch never sends index=NaN back (Consul answers that 400 Invalid index)', async () => {
    const { fetch, urls, made } = scripted((_n, url) => (url.includes('/v1/status/leader') ? json('"l"') : json([entry('up-1')], 'abc')));
    const registry = new ConsulRegistry({ fetch, logger: new MemoryLogger() });
    const off = registry.watch('up', () => {});
    try {
      await made(6);
    } finally {
      off();
      await registry.close();
    }
    const sent = urls.map((u) => new URL(u).searchParams.get('index'));
    assert.ok(
      sent.every((i) => i === '0' || i === '1'),
      `indexes sent: ${sent.join(',')}`,
    );
  });
});

describe('ConsulClient: the shape of an answer', () => {
  it('refuses JSON of another shape than `expect` with MESHLET_CONSUL_BAD_ANSWER, and an answer that is not JSON', async () => {
    const answers = ['{"a":1}', '[1]', 'null', '"text"', '<html>not json', ''];
    const { fetch } = scripted((n) => json(answers[n] ?? ''));
    const logger = new MemoryLogger();
    const client = new ConsulClient({ fetch, logger });
    const refused: string[] = [];
    for (const [n, expect] of (['list', 'object', 'list', 'list', 'list', 'list'] as const).entries()) {
      await client.request('GET', '/v1/health/service/up', { expect }).then(
        () => refused.push(`${answers[n]}: accepted`),
        (err: unknown) => {
          assert.ok(err instanceof ConsulBadAnswerError);
          assert.equal(err.code, 'MESHLET_CONSUL_BAD_ANSWER');
          assert.equal(err.status, 200);
          refused.push(err.message);
        },
      );
    }
    assert.deepEqual(refused.slice(0, 4), [
      'consul GET /v1/health/service/up: the answer is an object, not a list',
      'consul GET /v1/health/service/up: the answer is a list, not an object',
      'consul GET /v1/health/service/up: the answer is null, not a list',
      'consul GET /v1/health/service/up: the answer is a string, not a list',
    ]);
    assert.match(refused[4] ?? '', /the answer is not JSON/);
    assert.equal(refused[5], 'consul GET /v1/health/service/up: the answer is empty, not a list');
    assert.equal(client.answerProblems.get('MESHLET_CONSUL_BAD_ANSWER'), 6);
    assert.deepEqual(codes(logger), ['MESHLET_CONSUL_BAD_ANSWER']);
  });

  it('registry: an answer of the wrong shape is refused each time it comes, and the last good instances stay', async () => {
    // Was: read as a failure to reach Consul (DEGRADED, then RECOVERED), then ignored as
    // "no change" by the watch, since its content had been seen.
    const { fetch, made } = scripted((n, url) =>
      url.includes('/v1/status/leader') ? json('"l"') : n === 0 ? json([entry('up-1')], '5') : json({ a: 1 }, String(5 + n)),
    );
    const logger = new MemoryLogger();
    const registry = new ConsulRegistry({ fetch, logger });
    const seen: (readonly Instance[])[] = [];
    const off = registry.watch('up', (i) => seen.push(i));
    try {
      await made(3); // the good answer, the first bad one, and the read after it: both handled
      assert.equal(registry.client.answerProblems.get('MESHLET_CONSUL_BAD_ANSWER'), 1);
      await made(4);
      assert.equal(registry.client.answerProblems.get('MESHLET_CONSUL_BAD_ANSWER'), 2, 'the same bad answer again is refused again');
    } finally {
      off();
      await registry.close();
    }
    assert.deepEqual(
      seen.map((list) => list.map((i) => i.id)),
      [['up-1']],
    );
    assert.ok(codes(logger).includes('MESHLET_CONSUL_BAD_ANSWER'));
    assert.equal(registry.status.degraded, true);
    assert.match(registry.status.lastError ?? '', /the answer is an object, not a list/);
  });

  const rulesA = { Key: 'meshlet/rules/a', Value: Buffer.from('x').toString('base64'), ModifyIndex: 3 };

  /**
   * Watches meshlet/rules/ on a fake agent holding `rulesA` at index 3 whose `bad` answers the
   * requests it picks; resolves once the watch's query has failed, with the refusal logged if any.
   */
  async function watchThroughBadAnswer(bad: (req: FakeRequest) => Response | undefined, options: ConsulKvStoreOptions = {}) {
    const { fetch } = fakeConsulKv([rulesA], bad);
    const logger = new WaitingLogger();
    const kv = new ConsulKvStore({ fetch, logger, ...options });
    const seen: (readonly KvEntry[])[] = [];
    const off = kv.watch('meshlet/rules/', (e) => seen.push(e));
    let degraded: boolean;
    try {
      // The store logs the failed query after the client's refusal (or any other failure).
      await logger.logged('MESHLET_KV_DEGRADED');
      degraded = kv.degraded; // until the watch ends: its outage is then no one's
    } finally {
      off();
    }
    const refusal = logger.entries.find((e) => e.fields?.code === 'MESHLET_CONSUL_BAD_ANSWER')?.fields?.error;
    return { kv, degraded, keys: seen.map((list) => list.map((e) => e.key)), refusal: String(refusal) };
  }

  it('KV: a prefix answered with an object is refused; the watch keeps the entries it had', async () => {
    // The default shared query: its key list, after the first, is an object; so is a read of the prefix.
    const { kv, keys, refusal } = await watchThroughBadAnswer((req) =>
      (req.params.get('keys') !== null && req.params.get('index') === '3') || req.params.has('recurse') ? json({ a: 1 }, '4') : undefined,
    );
    assert.deepEqual(keys, [['meshlet/rules/a']]);
    assert.match(refusal, /the answer is an object, not a list/);
    await assert.rejects(kv.list('meshlet/rules/'), { code: 'MESHLET_CONSUL_BAD_ANSWER' });
  });

  it('KV (sharedQuery recurse): a prefix answered with an object is refused; the watch keeps the entries it had', async () => {
    const { kv, keys, refusal } = await watchThroughBadAnswer(
      (req) => (req.params.has('recurse') && req.params.get('index') !== '0' ? json({ a: 1 }, '4') : undefined),
      { sharedQuery: 'recurse' },
    );
    assert.deepEqual(keys, [['meshlet/rules/a']]);
    assert.match(refusal, /the answer is an object, not a list/);
    await assert.rejects(kv.list('meshlet/rules/'), { code: 'MESHLET_CONSUL_BAD_ANSWER' });
  });

  // Found reviewing the keys query: its list was sorted and searched as strings, so a non-string
  // threw a TypeError (a failed query, not a refused answer: neither logged nor counted as one).
  for (const [what, list] of [
    ['a number', ['meshlet/rules/a', 7]],
    ['null', [null, 'meshlet/rules/a']],
    ['an object', ['meshlet/rules/a', { Key: 'meshlet/rules/b' }]],
  ] as const) {
    it(`KV: a key list holding ${what} is refused as a bad answer; the watch keeps the entries it had`, async () => {
      const { degraded, keys, refusal } = await watchThroughBadAnswer((req) =>
        req.params.get('keys') !== null && req.params.get('index') === '3' ? json(list, '4') : undefined,
      );
      assert.deepEqual(keys, [['meshlet/rules/a']]);
      assert.match(refusal, /the answer is a list holding .* at \[\d\], not a list of keys/);
      assert.equal(degraded, true);
    });
  }

  // The key list moves (index 4, same key): the watched key's check-index transaction is answered with `body`.
  for (const [what, status, body, expected] of [
    ['Results an object', 200, { Results: { KV: rulesA }, Errors: null }, /Results is an object, not a list/],
    ['Results holding a number', 200, { Results: [7], Errors: null }, /a number at Results\[0\], not a result/],
    ['a KV whose Key is not a string', 200, { Results: [{ KV: { ...rulesA, Key: 5 } }] }, /Key is a number at Results\[0\]\.KV/],
    ['a KV whose ModifyIndex is not an index', 200, { Results: [{ KV: { ...rulesA, ModifyIndex: '3' } }] }, /ModifyIndex is not an index/],
    ['Errors an object (409)', 409, { Results: null, Errors: { OpIndex: 1 } }, /Errors is an object, not a list/],
    ['an error without OpIndex (409)', 409, { Results: null, Errors: [{ What: 'x' }] }, /without a whole OpIndex/],
  ] as const) {
    it(`KV: a transaction answer with ${what} is refused as a bad answer; the watch keeps the entries it had`, async () => {
      let txns = 0;
      const { degraded, keys, refusal } = await watchThroughBadAnswer((req) => {
        if (req.params.get('keys') !== null && req.params.get('index') === '3') return json(['meshlet/rules/a'], '4');
        // The first transaction reads the key; the next checks it.
        if (req.url.endsWith('/v1/txn') && txns++ > 0) return jsonWithStatus(body, '4', status);
        return undefined;
      });
      assert.deepEqual(keys, [['meshlet/rules/a']]);
      assert.match(refusal, expected);
      assert.equal(degraded, true);
    });
  }

  it('KV (sharedQuery recurse): a list holding something not a KV pair is refused as a bad answer', async () => {
    const { keys, refusal } = await watchThroughBadAnswer(
      (req) => (req.params.has('recurse') && req.params.get('index') === '3' ? json([rulesA, { Key: 'meshlet/rules/b' }], '4') : undefined),
      { sharedQuery: 'recurse' },
    );
    assert.deepEqual(keys, [['meshlet/rules/a']]);
    assert.match(refusal, /a KV pair whose Value is empty at \[1\]/);
  });
});

describe('ConsulClient: maxBodyBytes', () => {
  /** A server that streams 16 KiB chunks for as long as the connection stays, up to `total` bytes. */
  async function streaming(total: number, contentLength?: number) {
    const served = { bytes: 0, closedEarly: undefined as Promise<boolean> | undefined };
    const server = createServer((_req, res) => {
      res.setHeader('x-consul-index', '9');
      if (contentLength !== undefined) res.setHeader('content-length', contentLength);
      res.write('[');
      const chunk = Buffer.alloc(16 * 1024, 0x20);
      served.closedEarly = once(res, 'close').then(() => !res.writableFinished);
      const pump = () => {
        while (served.bytes < total && !res.destroyed) {
          served.bytes += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
        if (!res.destroyed) res.end(']');
      };
      pump();
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return { served, server, address: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
  }

  it('refuses a body past the cap with MESHLET_CONSUL_ANSWER_TOO_LARGE and drops the connection', async () => {
    const { served, server, address } = await streaming(256 * 2 ** 20);
    const logger = new MemoryLogger();
    const client = new ConsulClient({ address, maxBodyBytes: 64 * 1024, logger });
    try {
      await assert.rejects(client.request('GET', '/v1/health/service/up?index=0', { expect: 'list' }), (err: unknown) => {
        assert.ok(err instanceof ConsulAnswerTooLargeError);
        assert.equal(err.code, 'MESHLET_CONSUL_ANSWER_TOO_LARGE');
        assert.equal(err.maxBodyBytes, 64 * 1024);
        return true;
      });
      assert.equal(await served.closedEarly, true, 'the server saw the connection close before the body ended');
      assert.ok(served.bytes < 256 * 2 ** 20, `served ${served.bytes} bytes`);
      assert.deepEqual(codes(logger), ['MESHLET_CONSUL_ANSWER_TOO_LARGE']);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });

  it('refuses at once an answer whose Content-Length is past the cap', async () => {
    const { fetch } = scripted(() => new Response('[]', { headers: { 'content-length': String(2 * 2 ** 20) } }));
    const client = new ConsulClient({ fetch, maxBodyBytes: 2 ** 20, logger: new MemoryLogger() });
    await assert.rejects(client.request('GET', '/v1/kv/a'), { code: 'MESHLET_CONSUL_ANSWER_TOO_LARGE' });
  });

  it('reads an answer of exactly the cap, and defaults to 64 MiB', async () => {
    const body = JSON.stringify(['x'.repeat(1000)]);
    const { fetch } = scripted(() => json(body));
    const client = new ConsulClient({ fetch, maxBodyBytes: Buffer.byteLength(body) });
    assert.deepEqual((await client.request('GET', '/v1/kv/a', { expect: 'list' })).body, ['x'.repeat(1000)]);
    assert.equal(CONSUL_MAX_BODY_BYTES, 64 * 2 ** 20);
  });

  it('refuses a maxBodyBytes that is not a whole number of at least 1, naming it', () => {
    for (const bad of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      assert.throws(() => new ConsulClient({ maxBodyBytes: bad }), { code: 'MESHLET_BAD_OPTION', message: /^maxBodyBytes: / });
    }
  });
});

describe('ConsulClient: a query that does not block', () => {
  // The client's non-blocking timeout is 30 ms here; a blocking query's timeout is given as
  // a watch gives it, (25 + 25/16 + 5) s. Each test has 10 s: the bug was a 31.6 s wait.
  const watchTimeoutMs = (25 + 25 / 16 + 5) * 1000;

  it('index=0 is held to the client’s timeout, not the blocking one its caller gave', { timeout: 10_000 }, async () => {
    const signals: AbortSignal[] = [];
    const fetch = ((input: string | URL | Request, init?: RequestInit) => {
      if (init?.signal) signals.push(init.signal);
      return silent(input, init);
    }) as typeof globalThis.fetch;
    const client = new ConsulClient({ fetch, timeoutMs: 30 });
    const blocking = client.request('GET', '/v1/health/service/up?index=5&wait=25s', { timeoutMs: watchTimeoutMs });
    blocking.catch(() => {});
    await assert.rejects(client.request('GET', '/v1/health/service/up?index=0&wait=25s', { timeoutMs: watchTimeoutMs }), /unreachable/);
    assert.equal(signals[0]?.aborted, false, 'a query with index 5 blocks: its own timeout holds');
  });

  it('registry: a silent agent and no snapshot: the first answer comes after the client’s timeout', { timeout: 10_000 }, async () => {
    const logger = new MemoryLogger();
    const registry = new ConsulRegistry({ fetch: silent, timeoutMs: 30, logger });
    try {
      assert.deepEqual(await registry.healthyInstances('up'), []);
      assert.ok(codes(logger).includes('MESHLET_REGISTRY_DEGRADED'));
    } finally {
      await registry.close();
    }
  });

  it('KV: a silent agent: the watch reports the failure after the client’s timeout', { timeout: 10_000 }, async () => {
    const logger = new WaitingLogger();
    const kv = new ConsulKvStore({ fetch: silent, timeoutMs: 30, logger });
    const off = kv.watch('meshlet/rules/', () => {});
    try {
      await logger.logged('MESHLET_KV_DEGRADED');
    } finally {
      off();
    }
  });
});
