// Who labels the server metrics: with auth on, the caller as the mesh verified it, never a
// header; without auth, what x-meshlet-caller or tsf-metadata claims, checked alike (core's
// checkTag) and bounded in number (maxServices). Real servers on 127.0.0.1.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { meshKey } from '@meshlet/auth';
import { InMemoryKvStore, InMemoryRegistry, MemoryLogger } from '@meshlet/core';
import { listen, type TestServer } from '@meshlet/core/testing';
import { createMesh, type Mesh, type MeshOptions } from '../src/index.js';

describe('server metrics by caller', () => {
  const registry = new InMemoryRegistry();
  const rules = new InMemoryKvStore();
  const key = meshKey('k1', randomBytes(32).toString('base64'));
  const opened: { mesh: Mesh; server: TestServer }[] = [];
  after(async () => {
    for (const o of opened) {
      await o.server.close();
      await o.mesh.close();
    }
  });
  const serve = async (name: string, extra: Partial<MeshOptions> = {}) => {
    const mesh = createMesh({ service: name, registry, rules, logger: new MemoryLogger(), tracing: { sampleRatio: 0 }, ...extra });
    const server = await listen(mesh.httpHandler((_req, res) => res.end('ok')));
    await mesh.register({ port: server.port });
    opened.push({ mesh, server });
    return { mesh, port: server.port };
  };
  const callers = (mesh: Mesh) => (mesh.tracing?.serverMetrics?.snapshot() ?? []).map((s) => s.service);
  const get = async (port: number, headers: Record<string, string>) => {
    const res = await globalThis.fetch(`http://127.0.0.1:${port}/x`, { headers });
    await res.text();
  };

  it('without auth: x-meshlet-caller and tsf-metadata claims label the metrics when checkTag takes them, and alike', async () => {
    const values = ['gw', 'a'.repeat(512), 'b'.repeat(513), 'gw\rx', 'gw\u0001'];
    const byHeader = await serve('open-header');
    const byTsf = await serve('open-tsf');
    for (const v of values) {
      await get(byHeader.port, { 'x-meshlet-caller': `service=${encodeURIComponent(v)}` });
      await get(byTsf.port, { 'tsf-metadata': JSON.stringify({ sn: v }) });
    }
    const expected = ['gw', 'a'.repeat(512), ''];
    assert.deepEqual(callers(byHeader.mesh), expected);
    assert.deepEqual(callers(byTsf.mesh), expected);
  });

  it('without auth: 300 distinct claimed callers make at most maxServices series, the rest under _other', async () => {
    const { mesh, port } = await serve('open-many', { tracing: { sampleRatio: 0, metrics: { maxServices: 16 } } });
    for (let i = 0; i < 300; i++) await get(port, { 'x-meshlet-caller': `service=c${i}` });
    const seen = callers(mesh);
    assert.equal(seen.length, 17);
    assert.equal(seen.at(-1), '_other');
    assert.equal(mesh.tracing?.serverMetrics?.overflowed, 300 - 16);
  });

  it('with auth on: the verified caller labels the metrics; a client’s caller header or tsf-metadata does not', async () => {
    const { mesh, port } = await serve('shop-auth', { auth: { keys: [key] } });
    await get(port, { 'x-meshlet-caller': 'service=forged', 'tsf-metadata': JSON.stringify({ sn: 'forged-tsf' }) });
    const caller = createMesh({ service: 'web-auth', registry, rules, auth: { keys: [key] }, logger: new MemoryLogger() });
    const res = await caller.fetch('http://shop-auth/x');
    await res.text();
    await caller.close();
    assert.deepEqual(callers(mesh), ['', 'web-auth']);
  });
});
