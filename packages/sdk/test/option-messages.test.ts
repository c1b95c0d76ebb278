// createMesh's refusals show the refused value bounded (core's option-checks.ts, shownValue): a
// value read from a variable or a file can be any length, and the message is logged.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { InMemoryKvStore, InMemoryRegistry, MemoryLogger } from '@meshlet/core';
import { createMesh, type MeshOptions } from '../src/index.js';

const long = '9'.repeat(100_000);
const rows: readonly [string, Partial<MeshOptions>][] = [
  ['version', { version: long }],
  ['logIntervalMs', { logIntervalMs: long as never }],
  ['tagHeaders', { tagHeaders: long as never }],
  ['route.panicThresholdPercent', { route: { panicThresholdPercent: long as never } }],
  ['route.departedGraceMs', { route: { departedGraceMs: long as never } }],
  ['callDefaults.retries', { callDefaults: { retries: long as never } }],
  ['grpc.channels.maxChannels', { grpc: { channels: { maxChannels: long as never } } }],
];

/** createMesh with `option` over a mesh that needs nothing else. */
const meshWith = (option: Partial<MeshOptions>) =>
  createMesh({ service: 'checked', registry: new InMemoryRegistry(), rules: new InMemoryKvStore(), logger: new MemoryLogger(), ...option });

for (const [field, option] of rows)
  it(`refuses a long bad ${field} naming it, the value shown bounded`, () => {
    assert.throws(
      () => meshWith(option),
      (e: unknown) => {
        const message = (e as Error).message;
        assert.equal((e as { code?: string }).code, 'MESHLET_BAD_OPTION', message.slice(0, 200));
        assert.ok(message.startsWith(`${field}: `), message.slice(0, 200));
        assert.ok(message.length < 400, `a message of ${message.length} characters`);
        return true;
      },
    );
  });

it('shows a function given for a number as a function, not its source', () => {
  // A function whose source is long.
  const source = new Function(`return ${JSON.stringify(long)};`) as () => string;
  assert.throws(
    () => meshWith({ grpc: { channels: { maxChannels: source as never } } }),
    (e: unknown) => {
      const message = (e as Error).message;
      assert.equal(message, 'grpc.channels.maxChannels: a function must be a whole number from 1 to 65536');
      return true;
    },
  );
});
