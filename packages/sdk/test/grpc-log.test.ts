// grpc-js's own log lines (process-global): the oldest live mesh that uses gRPC gets them
// through its throttled logger, cut and without a refused metadata value; with no mesh left,
// grpc-js's default logger is back; an application's logger set before stays. Its own file:
// the meshes of the process are the ones under test.
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { getLogger, log } from '@grpc/grpc-js/build/src/logging.js';
import { InMemoryKvStore, InMemoryRegistry, MemoryLogger } from '@meshlet/core';
import { createMesh } from '../src/index.js';
import { startEcho } from './grpc-echo.js';

const grpcDefault = getLogger();
// As the grpc README says them (the package's constants are not exported): the code, and a line's bound.
const GRPC_LOG_CODE = 'MESHLET_GRPC_LOG';
const GRPC_LOG_LINE_MAX = 200;
const estate = () => ({ registry: new InMemoryRegistry(), rules: new InMemoryKvStore() });
const grpcLines = (logger: MemoryLogger) => logger.entries.filter((e) => e.fields?.code === GRPC_LOG_CODE).map((e) => e.fields?.line);

describe("grpc-js's log lines", () => {
  it("an application's grpc-js logger set before the first mesh is left as it is", async () => {
    const own = { error: () => {}, info: () => {}, debug: () => {} };
    grpc.setLogger(own);
    const mesh = createMesh({ service: 'first', ...estate(), logger: new MemoryLogger() });
    try {
      mesh.grpc.serverInterceptor();
      assert.equal(getLogger(), own);
    } finally {
      await mesh.close();
      grpc.setLogger(grpcDefault);
    }
  });

  it("a closed mesh's logger gets no more grpc-js lines: a live mesh's does, and with none left grpc-js's default is back", async () => {
    const la = new MemoryLogger();
    const lb = new MemoryLogger();
    const a = createMesh({ service: 'first', ...estate(), logger: la });
    const b = createMesh({ service: 'second', ...estate(), logger: lb });
    try {
      a.grpc.serverInterceptor();
      await a.close();
      b.grpc.serverInterceptor();
      log(grpc.logVerbosity.ERROR, 'line one');
      assert.deepEqual(grpcLines(la), []);
      assert.deepEqual(grpcLines(lb), ['line one']);
    } finally {
      await a.close();
      await b.close();
    }
    assert.equal(getLogger(), grpcDefault);
  });

  it("with two live meshes, the lines go to the first's; once it closes, to the second's", async () => {
    const la = new MemoryLogger();
    const lb = new MemoryLogger();
    const a = createMesh({ service: 'first', ...estate(), logger: la });
    const b = createMesh({ service: 'second', ...estate(), logger: lb });
    try {
      a.grpc.serverInterceptor();
      b.grpc.serverInterceptor();
      log(grpc.logVerbosity.ERROR, 'while both live');
      await a.close();
      log(grpc.logVerbosity.ERROR, 'after the first closed');
      assert.deepEqual(grpcLines(la), ['while both live']);
      assert.deepEqual(grpcLines(lb), ['after the first closed']);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it("an application's grpc-js logger set after a mesh routed it stays when the mesh closes", async () => {
    const mesh = createMesh({ service: 'first', ...estate(), logger: new MemoryLogger() });
    const own = { error: () => {}, info: () => {}, debug: () => {} };
    try {
      mesh.grpc.serverInterceptor();
      grpc.setLogger(own);
      await mesh.close();
      assert.equal(getLogger(), own);
    } finally {
      await mesh.close();
      grpc.setLogger(grpcDefault);
    }
  });

  it('metadata values grpc-js refuses (200 calls × 100 headers): one throttled line, cut, no value, nothing on stderr', async () => {
    const logger = new MemoryLogger();
    const mesh = createMesh({ service: 'guarded', ...estate(), logger });
    const echo = await startEcho('g-0', [mesh.grpc.serverInterceptor()]);
    const printed: unknown[] = [];
    const consoleError = console.error;
    console.error = (...args: unknown[]) => void printed.push(args);
    const session = http2.connect(`http://127.0.0.1:${echo.port}`);
    try {
      assert.notEqual(getLogger(), grpcDefault, "the mesh's logger is grpc-js's");
      const frame = Buffer.from([0, 0, 0, 0, 3, 0x0a, 1, 0x78]);
      for (let i = 0; i < 200; i++)
        await new Promise<void>((res) => {
          const headers: http2.OutgoingHttpHeaders = {
            ':method': 'POST',
            ':path': '/meshlet.interop.Echo/Say',
            'content-type': 'application/grpc',
            te: 'trailers',
          };
          for (let k = 0; k < 100; k++) headers[`x-evil-${k}`] = '\u00e9'.repeat(100);
          const s = session.request(headers);
          s.on('error', () => {});
          s.on('close', () => res());
          s.resume();
          s.end(frame);
        });
      const lines = logger.entries.filter((e) => e.fields?.code === GRPC_LOG_CODE);
      assert.equal(lines.length, 1, 'throttled: one line a minute');
      const line = String(lines[0]?.fields?.line);
      assert.ok(line.length <= GRPC_LOG_LINE_MAX + 1, line);
      assert.match(line, /^Failed to add metadata entry x-evil-0: value refused \(not shown\)$/);
      assert.deepEqual(printed, [], 'nothing written to stderr by grpc-js');
    } finally {
      console.error = consoleError;
      session.close();
      await echo.close();
      await mesh.close();
    }
  });
});
