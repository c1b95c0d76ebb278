// grpc-js's own log lines (process-global): the first mesh to use gRPC routes them through its
// throttled logger, cut and without a refused metadata value; an application's logger set
// before stays. Its own file: the first mesh of the process is the one under test.
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { getLogger } from '@grpc/grpc-js/build/src/logging.js';
import { InMemoryKvStore, InMemoryRegistry, MemoryLogger } from '@meshlet/core';
import { GRPC_LOG_CODE, GRPC_LOG_LINE_MAX } from '@meshlet/grpc';
import { createMesh } from '../src/index.js';
import { startEcho } from './grpc-echo.js';

const grpcDefault = getLogger();
const estate = () => ({ registry: new InMemoryRegistry(), rules: new InMemoryKvStore() });

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
