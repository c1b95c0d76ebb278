// The app's own hooks on the inbound path (`tagsFromHeaders[].transform`, `inboundTags`)
// run on what the client sent. One that throws drops its tags (counted, logged at most
// once per interval) and the request is governed as any other: auth and limits still
// decide. A context that cannot be built at all is refused (HTTP 500, gRPC INTERNAL),
// never handed to the app ungoverned.
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import type { Authorizer } from '@meshlet/auth';
import { InMemoryKvStore, InMemoryRegistry, type LogFields, type Logger, ManualClock, throttledLogger } from '@meshlet/core';
import { adminAuthorization, listen, type TestServer } from '@meshlet/core/testing';
import type { TagPropagation } from '@meshlet/propagation';
import { ALLOWED, type RateLimiter } from '@meshlet/ratelimit';
import express from 'express';
import { inboundPipeline } from '../src/inbound-pipeline.js';
import { createMesh, type Mesh } from '../src/index.js';
import { Echo, type EchoClient, type EchoServer, say, startEcho } from './grpc-echo.js';

/** Keeps every line written. */
class Lines implements Logger {
  readonly lines: { message: string; fields: LogFields | undefined }[] = [];
  debug() {}
  info(message: string, fields?: LogFields) {
    this.lines.push({ message, fields });
  }
  warn(message: string, fields?: LogFields) {
    this.lines.push({ message, fields });
  }
  error(message: string, fields?: LogFields) {
    this.lines.push({ message, fields });
  }
  coded(code: string) {
    return this.lines.filter((l) => l.fields?.code === code);
  }
}

const TOKEN = 'hook-failures-admin-token-0123456789';
const SECRET_VALUE = 'garbage-from-the-client';

describe('an app hook that throws on what a client sent', () => {
  const lines = new Lines();
  const clock = new ManualClock(1_000_000);
  let mesh: Mesh;
  let http: TestServer;
  let ex: { port: number; close: () => Promise<void> };
  let echo: EchoServer;
  let client: EchoClient;
  let handled = 0;

  before(async () => {
    mesh = createMesh({
      service: 'vault',
      port: 1,
      registry: new InMemoryRegistry(),
      rules: new InMemoryKvStore(),
      logger: lines,
      clock,
      admin: { token: TOKEN },
      // An ordinary app bug: a header without the pattern makes match() null.
      tagsFromHeaders: [
        { header: 'x-client', tag: 'client-major', transform: (v) => (v.match(/app\/(\d+)/) as RegExpMatchArray)[1] },
        { header: 'x-count', tag: 'count', transform: (v) => Number(v) as unknown as string },
      ],
      inboundTags: (tags) => {
        if (tags('client-major') === undefined) throw new TypeError(`no major in ${SECRET_VALUE}`);
        return { lane: `v${tags('client-major')}` };
      },
    });
    // Only clients of major 7 are let in.
    await mesh.rules.apply(
      JSON.stringify({
        service: 'vault',
        auth: { default: 'deny', rules: [{ name: 'v7', action: 'allow', when: [{ tag: 'client-major', op: 'equals', value: '7' }] }] },
      }),
      { author: 'test' },
    );
    await mesh.rulesInForce('vault');
    http = await listen(
      mesh.httpHandler((_req, res) => {
        handled++;
        res.end('handler ran');
      }),
    );
    await mesh.register({ port: http.port });
    const app = express();
    app.use(mesh.express());
    app.get('/{*rest}', (_q, r) => {
      handled++;
      r.send('handler ran');
    });
    const server = app.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    ex = { port: (server.address() as AddressInfo).port, close: () => new Promise<void>((r) => server.close(() => r())) };
    echo = await startEcho('vault-0', [mesh.grpc.serverInterceptor()]);
    client = new Echo(`127.0.0.1:${echo.port}`, grpc.credentials.createInsecure());
  });
  after(async () => {
    client.close();
    await echo.close();
    await http.close();
    await ex.close();
    await mesh.close();
  });

  const get = async (port: number, client: string) => {
    // Bounded: a request whose listener threw is never answered.
    const res = await globalThis.fetch(`http://127.0.0.1:${port}/x`, {
      headers: { 'x-client': client },
      signal: AbortSignal.timeout(5_000),
    });
    return { status: res.status, body: await res.text() };
  };

  it('node:http and Express: the tag is dropped and auth decides (was an uncaught exception)', async () => {
    for (const port of [http.port, ex.port]) {
      assert.deepEqual(await get(port, 'app/7'), { status: 200, body: 'handler ran' });
      const before = handled;
      for (let i = 0; i < 10; i++) {
        const r = await get(port, SECRET_VALUE);
        assert.equal(r.status, 403, r.body);
        assert.match(r.body, /MESHLET_AUTH_DENIED/);
      }
      assert.equal(handled, before, 'the app never ran for a denied request');
    }
  });

  it('gRPC: the tag is dropped and auth decides (was admitted without auth)', async () => {
    const md = (v: string) => {
      const m = new grpc.Metadata();
      m.set('x-client', v);
      return m;
    };
    assert.match(await say(client, 'x', {}, md('app/7')), /^vault-0\|/);
    const hits = echo.state.hits;
    for (let i = 0; i < 5; i++)
      await assert.rejects(say(client, 'x', {}, md(SECRET_VALUE)), (e: grpc.ServiceError) => e.code === grpc.status.PERMISSION_DENIED);
    assert.equal(echo.state.hits, hits, 'the handler never ran');
  });

  it('counts every drop, writes one line per interval, and never logs the value', async () => {
    const dropped = lines.coded('MESHLET_TAG_DROPPED');
    const reasons = new Set(dropped.map((l) => l.fields?.reason));
    // One line in this interval: the first drop (the later ones are counted, not written).
    assert.equal(dropped.length, 1, JSON.stringify(dropped));
    assert.ok(reasons.has('transform-threw'), JSON.stringify(dropped));
    assert.equal(dropped[0]?.fields?.error, 'TypeError');
    clock.advance(60_000);
    const r = await globalThis.fetch(`http://127.0.0.1:${http.port}/`, { headers: { 'x-client': 'app/7', 'x-count': '3' } });
    assert.equal(r.status, 200);
    await r.text();
    const next = lines.coded('MESHLET_TAG_DROPPED');
    assert.equal(next.length, 2);
    // A transform giving a number: not a tag either.
    assert.equal(next[1]?.fields?.reason, 'transform-not-string');
    // 25 garbage requests each dropped the transform's tag and inboundTags' (50), then this one: one line, counting 50.
    assert.equal(next[1]?.fields?.count, 50);
    for (const l of lines.lines) assert.doesNotMatch(JSON.stringify(l), new RegExp(SECRET_VALUE));
    const metrics = await (
      await globalThis.fetch(`http://127.0.0.1:${http.port}/_meshlet/metrics`, { headers: adminAuthorization(TOKEN, http.port) })
    ).text();
    assert.match(metrics, /meshlet_conditions_total\{code="MESHLET_TAG_DROPPED"\} 51\n/);
  });
});

describe('a context that cannot be built', () => {
  const stubAuthorizer = { revision: 0, decide: () => ({ allowed: true, rule: undefined, reason: 'allowed' }) } as unknown as Authorizer;
  const stubLimiter = { revision: 0, decide: () => ALLOWED } as unknown as RateLimiter;
  const failing = {
    extract: () => {
      throw new TypeError('a dialect that breaks');
    },
  } as unknown as TagPropagation;
  const memory = new Lines();
  const logger = throttledLogger(memory, { clock: new ManualClock(0) });
  const pipeline = inboundPipeline({
    service: 'broken',
    healthPath: '/health',
    stopping: () => false,
    context: { tagsFromHeaders: [], propagation: failing, logger, owner: undefined },
    verifier: undefined,
    tagHeaders: 'any',
    inboundTags: undefined,
    authorizer: stubAuthorizer,
    rateLimiter: stubLimiter,
    tracing: undefined,
    admin: undefined,
    catalog: undefined,
    logger,
  });

  it('is answered 500 without the app, on node:http and Express (was an uncaught exception)', async () => {
    let ran = 0;
    const http = await listen(
      pipeline.httpHandler((_req, res) => {
        ran++;
        res.end('app');
      }),
    );
    const app = express();
    app.use(pipeline.express());
    app.use((_q, r) => {
      ran++;
      r.send('app');
    });
    const server = app.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    try {
      for (const port of [http.port, (server.address() as AddressInfo).port]) {
        for (let i = 0; i < 3; i++) {
          const res = await globalThis.fetch(`http://127.0.0.1:${port}/anything`, { signal: AbortSignal.timeout(5_000) });
          assert.equal(res.status, 500);
          assert.match(await res.text(), /MESHLET_CONTEXT_FAILED/);
        }
      }
      assert.equal(ran, 0);
      assert.equal(logger.counts.get('MESHLET_CONTEXT_FAILED'), 6);
      assert.equal(memory.coded('MESHLET_CONTEXT_FAILED').length, 1, 'one line per interval');
    } finally {
      await http.close();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});
