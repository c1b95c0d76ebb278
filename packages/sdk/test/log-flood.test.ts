// Issue #16 item 4: logs must not grow with the attacker's input. A flood of bad requests
// (2,048 tags each, a bad TSF header, a bad caller header) through a real server writes a
// bounded number of lines; the metrics count every condition.
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { InMemoryKvStore, InMemoryRegistry, type LogFields, type Logger, ManualClock, TAG_HEADER } from '@meshlet/core';
import { adminAuthorization, listen, type TestServer } from '@meshlet/core/testing';
import { createMesh, type Mesh } from '../src/index.js';

/** Counts lines; keeps the first few. */
class CountingLogger implements Logger {
  lines = 0;
  readonly first: { message: string; fields: LogFields | undefined }[] = [];
  #write(message: string, fields?: LogFields) {
    this.lines++;
    if (this.first.length < 50) this.first.push({ message, fields });
  }
  debug() {}
  info(m: string, f?: LogFields) {
    this.#write(m, f);
  }
  warn(m: string, f?: LogFields) {
    this.#write(m, f);
  }
  error(m: string, f?: LogFields) {
    this.#write(m, f);
  }
}

const ALPHABET = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
/** 2,048 distinct tags in 8 KiB: 64 are taken, 1,984 dropped as too many. */
const MANY_TAGS = Array.from({ length: 2048 }, (_, i) => `${ALPHABET[i % 62]}${ALPHABET[Math.floor(i / 62)]}=`).join(',');
const REQUESTS = 2_000;
const TOKEN = 'flood-test-admin-token-0123456789';

const logger = new CountingLogger();
const clock = new ManualClock(1_000_000);
let mesh: Mesh;
let server: TestServer;
before(async () => {
  mesh = createMesh({
    service: 'flooded',
    registry: new InMemoryRegistry(),
    rules: new InMemoryKvStore(),
    logger,
    clock,
    admin: { token: TOKEN },
  });
  server = await listen(mesh.httpHandler((_req, res) => res.end('ok')));
  await mesh.register({ port: server.port });
});
after(async () => {
  await server.close();
  await mesh.close();
});

const flood = async (n: number) => {
  const headers = { [TAG_HEADER]: MANY_TAGS, 'tsf-tags': '[{"k":', 'x-meshlet-caller': 'no-equals-sign' };
  let next = 0;
  const worker = async () => {
    while (next < n) {
      next++;
      const res = await globalThis.fetch(`http://127.0.0.1:${server.port}/`, { headers });
      assert.equal(res.status, 200);
      await res.text();
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
};

it('refuses a log interval that is not a duration, naming the option', () => {
  for (const logIntervalMs of [-1, Number.NaN, Number.POSITIVE_INFINITY]) {
    assert.throws(
      () => createMesh({ service: 'bad-interval', registry: new InMemoryRegistry(), rules: new InMemoryKvStore(), logIntervalMs }),
      (err: unknown) => (err as { code?: string }).code === 'MESHLET_BAD_OPTION' && /logIntervalMs/.test((err as Error).message),
    );
  }
});

it(`${REQUESTS} requests with 2,048 bad tags each: a handful of lines, every condition counted`, async () => {
  assert.equal(MANY_TAGS.length <= 8 * 1024, true);
  await flood(REQUESTS / 2);
  const firstInterval = logger.lines;
  // One line per code per interval: the dropped tags, the bad TSF header, the bad caller header.
  assert.ok(firstInterval <= 3, `${firstInterval} lines: ${JSON.stringify(logger.first)}`);
  clock.advance(60_000);
  await flood(REQUESTS / 2);
  assert.ok(logger.lines <= 6, `${logger.lines} lines`);
  const dropped = logger.first.filter((l) => l.fields?.code === 'MESHLET_TAG_DROPPED');
  assert.equal(dropped[0]?.fields?.count, 1);
  // The second interval's line carries every drop since the first line.
  assert.equal(dropped[1]?.fields?.count, (REQUESTS / 2) * 1984);

  const metrics = await (
    await globalThis.fetch(`http://127.0.0.1:${server.port}/_meshlet/metrics`, { headers: adminAuthorization(TOKEN, server.port) })
  ).text();
  assert.match(metrics, new RegExp(`meshlet_conditions_total\\{code="MESHLET_TAG_DROPPED"\\} ${REQUESTS * 1984}\\n`));
  assert.match(metrics, new RegExp(`meshlet_conditions_total\\{code="MESHLET_BAD_TAG_HEADER"\\} ${REQUESTS * 2}\\n`));
});
