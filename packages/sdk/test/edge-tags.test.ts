// Issue #16 item 6: an edge client must not choose its own gray release. With auth on,
// tag headers are believed only from a verified mesh caller; without auth, `tagHeaders:
// 'none'` turns them off. Real servers on 127.0.0.1.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { meshKey } from '@meshlet/auth';
import { createContext, getTag, InMemoryKvStore, InMemoryRegistry, MemoryLogger, runWithContext, setTag, TAG_HEADER } from '@meshlet/core';
import { listen, type TestServer } from '@meshlet/core/testing';
import { createMesh, type Mesh, type MeshOptions, userAgentFamily } from '../src/index.js';

const FIREFOX = 'Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0';
/** What a client at the edge types to be routed as a Chrome VIP in the blue lane. */
const FORGED = {
  'user-agent': FIREFOX,
  [TAG_HEADER]: 'ua.family=Chrome,user-tier=vip',
  'tsf-tags': '[{"k":"lane","v":"blue","f":["0"]}]',
  'sct-custom-metadata': '{"canary":"on"}',
};
const SEEN = ['ua.family', 'user-tier', 'lane', 'canary'] as const;

describe('tags from the edge', () => {
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

  /** A gateway that answers with the tags its request has; its tags from the UA only. */
  const gateway = async (name: string, extra: Partial<MeshOptions>) => {
    const mesh = createMesh({
      service: name,
      registry,
      rules,
      logger: new MemoryLogger(),
      tagsFromHeaders: [{ header: 'user-agent', tag: 'ua.family', transform: userAgentFamily }],
      ...extra,
    });
    const server = await listen(
      mesh.httpHandler((_req, res) => res.end(JSON.stringify(Object.fromEntries(SEEN.map((t) => [t, getTag(t) ?? null]))))),
    );
    await mesh.register({ port: server.port });
    opened.push({ mesh, server });
    return { mesh, port: server.port };
  };
  const edgeCall = async (port: number) =>
    (await (await globalThis.fetch(`http://127.0.0.1:${port}/`, { headers: FORGED })).json()) as Record<string, string | null>;

  it('with auth on, a client’s tag headers in every dialect are ignored; its tags come from the configured sources', async () => {
    const { port } = await gateway('edge-auth', { auth: { keys: [key] } });
    assert.deepEqual(await edgeCall(port), { 'ua.family': 'Firefox', 'user-tier': null, lane: null, canary: null });
  });

  it('with auth on, a verified mesh caller’s tags are believed', async () => {
    await gateway('inner-auth', { auth: { keys: [key] } });
    const caller = createMesh({ service: 'caller-auth', registry, rules, auth: { keys: [key] }, logger: new MemoryLogger() });
    const seen = await runWithContext(createContext({ tags: [['user-tier', 'vip']] }), async () => {
      setTag('lane', 'blue');
      return (await (await caller.fetch('http://inner-auth/')).json()) as Record<string, string | null>;
    });
    assert.equal(seen['user-tier'], 'vip');
    assert.equal(seen.lane, 'blue');
    await caller.close();
  });

  it('without auth a client can choose its tags (the documented default), and tagHeaders: none turns that off', async () => {
    const open = await gateway('edge-open', {});
    assert.deepEqual(await edgeCall(open.port), { 'ua.family': 'Chrome', 'user-tier': 'vip', lane: 'blue', canary: 'on' });
    const closed = await gateway('edge-closed', { tagHeaders: 'none' });
    assert.deepEqual(await edgeCall(closed.port), { 'ua.family': 'Firefox', 'user-tier': null, lane: null, canary: null });
  });

  it("refuses tagHeaders: 'verified' without auth, and an unknown value, naming the option", () => {
    for (const tagHeaders of ['verified', 'some'] as const) {
      assert.throws(
        () => createMesh({ service: 'bad-trust', registry, rules, tagHeaders: tagHeaders as 'none' }),
        (err: unknown) => (err as { code?: string }).code === 'MESHLET_BAD_OPTION' && /tagHeaders/.test((err as Error).message),
      );
    }
  });
});
