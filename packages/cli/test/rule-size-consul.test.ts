// RULE_DOCUMENT_LIMITS.maxBytes against a real Consul agent: a document at the bound, whose
// apply is one transaction of the document and its history entry (base64, every byte of it
// doubled in the entry at worst), is stored; one byte over is refused by the parser before
// anything is sent. Fails, never skips, when Consul cannot be started.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  type KvStore,
  type KvWrite,
  MAX_AUTHOR_LENGTH,
  MAX_REASON_LENGTH,
  MAX_RULE_VERSION,
  ManualClock,
  RULE_DOCUMENT_LIMITS,
  RULES_HISTORY_PREFIX,
  RULES_PREFIX,
  RuleRepository,
  RuleValidationError,
} from '@meshlet/core';
import { ConsulError, ConsulKvStore } from '@meshlet/registry';
import { type ConsulAgent, startConsulAgent } from '@meshlet/registry/testing';
import { meshletInProcess } from './run-meshlet.js';

const L = RULE_DOCUMENT_LIMITS;

/**
 * A document for `service` of exactly `bytes` bytes of UTF-8, nearly all of it `\"`: each of
 * its bytes is doubled when the history entry quotes it, the worst case the bound is set for.
 */
function worstDocument(service: string, bytes: number): string {
  const open = `{"service":"${service}","blob":[`;
  const perString = L.maxStringLength / 2; // pieces of `\"` in one string: half its characters
  const frame = (k: number) => Buffer.byteLength(`${open}${new Array(k).fill('""').join(',')}]}`);
  let k = 1;
  while (frame(k) + k * perString * 2 < bytes) k++;
  const content = bytes - frame(k);
  const pieces = Math.floor(content / 2);
  const strings = Array.from({ length: k }, (_, i) => '\\"'.repeat(Math.max(0, Math.min(perString, pieces - i * perString))));
  strings[k - 1] += 'x'.repeat(content - pieces * 2);
  return `${open}${strings.map((s) => `"${s}"`).join(',')}]}`;
}

/** The longest service name, author and reason, each character of the last two escaped to six bytes in JSON. */
const SERVICE = `s${'x'.repeat(62)}`;
const AUTHOR = '\u0001'.repeat(MAX_AUTHOR_LENGTH);
const REASON = '\u0001'.repeat(MAX_REASON_LENGTH);

describe('rule documents at the size bound, on a real Consul agent', () => {
  let agent: ConsulAgent;
  let consul: ConsulKvStore;
  let dir: string;
  /** Every putAll sent to Consul: an apply is one. */
  const sent: (readonly KvWrite[])[] = [];
  let kv: KvStore;

  before(async () => {
    agent = await startConsulAgent();
    consul = new ConsulKvStore({ address: agent.address });
    kv = {
      get: (key) => consul.get(key),
      list: (prefix) => consul.list(prefix),
      put: (key, value, options) => consul.put(key, value, options),
      delete: (key, options) => consul.delete(key, options),
      putAll: (writes) => {
        sent.push(writes);
        return consul.putAll(writes);
      },
      watch: (prefix, listener) => consul.watch(prefix, listener),
    };
    dir = await mkdtemp(join(tmpdir(), 'meshlet-rule-size-'));
  });
  after(async () => {
    await agent?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('applies a document of maxBytes bytes that doubles in its history entry, with the longest author and reason', async () => {
    const text = worstDocument(SERVICE, L.maxBytes);
    assert.equal(Buffer.byteLength(text), L.maxBytes);
    const repo = new RuleRepository({ kv, kinds: [], unknownSections: 'keep' });
    const version = await repo.apply(text, { author: AUTHOR, reason: REASON });
    assert.equal((await consul.get(`${RULES_PREFIX}${SERVICE}`))?.value, text);
    assert.equal((await repo.history(SERVICE))[0]?.document, text);
    assert.equal(version.author, AUTHOR);
  });

  it('with the largest numbers too: version 9,999,999,999 restoring 9,999,999,998 at the last time a Date shows', async () => {
    const service = `t${'x'.repeat(62)}`;
    const text = worstDocument(service, L.maxBytes);
    const seeded = { version: MAX_RULE_VERSION - 1, at: 0, author: 'seed', action: 'apply', document: text };
    await consul.put(`${RULES_HISTORY_PREFIX}${service}/${MAX_RULE_VERSION - 1}`, JSON.stringify(seeded));
    const repo = new RuleRepository({ kv, kinds: [], unknownSections: 'keep', clock: new ManualClock(8.64e15) });
    const back = await repo.rollback(service, { author: AUTHOR, reason: REASON, to: MAX_RULE_VERSION - 1 });
    assert.deepEqual([back.version, back.restored], [MAX_RULE_VERSION, MAX_RULE_VERSION - 1]);
    assert.equal((await consul.get(`${RULES_PREFIX}${service}`))?.value, text);

    // The bound is close to Consul's: the same transaction with 500 bytes more of document
    // (written around the validator) is refused by Consul, HTTP 413.
    const over = worstDocument(service, L.maxBytes + 500);
    const entry = { ...seeded, version: MAX_RULE_VERSION, at: 8.64e15, author: AUTHOR, reason: REASON, action: 'rollback', document: over };
    await assert.rejects(
      consul.putAll([
        { key: `${RULES_PREFIX}x${service.slice(1)}`, value: over, ifRevision: 0 },
        { key: `${RULES_HISTORY_PREFIX}x${service.slice(1)}/${MAX_RULE_VERSION}`, value: JSON.stringify(entry), ifRevision: 0 },
      ]),
      (err: unknown) => err instanceof ConsulError && err.status === 413,
    );
  });

  it('refuses a document one byte over the bound, naming it, before anything is sent', async () => {
    const service = `u${'x'.repeat(62)}`;
    const repo = new RuleRepository({ kv, kinds: [], unknownSections: 'keep' });
    const count = sent.length;
    // One byte over; and the reviewer's ASCII document (224,530 characters, a 607,037-byte transaction).
    for (const text of [
      worstDocument(service, L.maxBytes + 1),
      JSON.stringify({ service, blob: ['q'.repeat(60_000), 'q'.repeat(60_000), 'q'.repeat(60_000), 'q'.repeat(44_500)] }),
    ]) {
      await assert.rejects(
        repo.apply(text, { author: 'ops' }),
        (err: unknown) =>
          err instanceof RuleValidationError && err.limit === 'size' && err.path === '' && /more than 128000 \(maxBytes\)/.test(err.reason),
      );
    }
    assert.equal(sent.length, count, 'nothing sent');
    assert.equal(await consul.get(`${RULES_PREFIX}${service}`), undefined);

    // The CLI refuses it as invalid rules (exit 4), the bound named, and writes nothing.
    const file = join(dir, 'over.json');
    await writeFile(file, worstDocument(service, L.maxBytes + 1));
    const r = await meshletInProcess(['rules', 'apply', file, '--consul', agent.address, '--allow-unknown', '--yes']);
    assert.equal(r.code, 4, r.stderr);
    assert.match(r.stderr, /128001 bytes of UTF-8, more than 128000 \(maxBytes\)/);
    assert.deepEqual(await consul.list(`${RULES_HISTORY_PREFIX}${service}/`), []);
  });
});
