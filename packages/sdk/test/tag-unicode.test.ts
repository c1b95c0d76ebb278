// A tag header that carries a lone surrogate (JSON's "\ud800", which tsf-tags and
// sct-custom-metadata may hold): the tag has no UTF-8 form, and every outbound call of the
// request threw URIError where a dialect percent-encodes it. Found by a reviewer.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { checkTag, InMemoryRegistry, MemoryLogger, putTag } from '@meshlet/core';
import { listen, type TestServer, testInstance } from '@meshlet/core/testing';
import { createMesh, type Mesh } from '../src/index.js';

describe('a tag that is not well-formed Unicode', () => {
  it('is refused by checkTag, as key or value (malformed-unicode); a pair is fine', () => {
    assert.equal(checkTag('x', '\ud800'), 'malformed-unicode');
    assert.equal(checkTag('\udfff', 'a'), 'malformed-unicode');
    assert.equal(checkTag('x', 'a\udc00b'), 'malformed-unicode');
    assert.equal(checkTag('x', '😀'), undefined, 'a surrogate pair is one character');
    const tags = new Map<string, string>();
    assert.equal(putTag(tags, 'x', '\ud800'), 'malformed-unicode');
    assert.equal(tags.size, 0);
  });

  describe('sent by a client in a tag header', () => {
    let ledger: TestServer;
    let mesh: Mesh;
    let app: TestServer;
    const logger = new MemoryLogger();
    before(async () => {
      ledger = await listen((_req, res) => res.end('ledger ok'));
      const registry = new InMemoryRegistry();
      await registry.register(testInstance('ledger', 'l1', ledger.port));
      // The defaults: auth off, tag headers from anyone, every dialect read.
      mesh = createMesh({ service: 'orders', registry, logger });
      app = await listen(
        mesh.httpHandler(async (_req, res) => {
          try {
            res.end(await (await mesh.fetch('http://ledger/x')).text());
          } catch (err) {
            res.statusCode = 502;
            res.end(`${(err as Error).name}: ${(err as Error).message}`);
          }
        }),
      );
    });
    after(async () => {
      await app.close();
      await mesh.close();
      await ledger.close();
    });

    for (const [header, value] of [
      ['tsf-tags', '[{"k":"x","v":"\\ud800","f":["0"]}]'],
      ['tsf-tags', '[{"k":"\\udfff","v":"a","f":["0"]}]'],
      ['sct-custom-metadata', '{"x":"\\ud800"}'],
    ] as const)
      it(`${header} ${value}: the tag is dropped and the outbound call made (was URIError, 502)`, async () => {
        const res = await globalThis.fetch(`http://127.0.0.1:${app.port}/`, { headers: { [header]: value } });
        assert.deepEqual([res.status, await res.text()], [200, 'ledger ok']);
        assert.ok(
          logger.entries.some((e) => e.fields?.code === 'MESHLET_TAG_DROPPED' && e.fields?.reason === 'malformed-unicode'),
          'logged (once per interval) with its reason',
        );
      });
  });
});
