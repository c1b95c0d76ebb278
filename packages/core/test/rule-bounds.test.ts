// Issue 16, item 2: every rule document is bounded in one place, parseRuleDocument, before
// any kind's parser sees it; a refusal always has a code and names the field.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  field,
  InMemoryKvStore,
  MAX_RULE_REASON_LENGTH,
  MemoryLogger,
  parseRuleDocument,
  RULE_DOCUMENT_LIMITS,
  RULES_PREFIX,
  type RuleKind,
  RuleRepository,
  RuleValidationError,
  RuleWatcher,
} from '../src/index.js';

/** A kind that takes any JSON: what is left to check is the document's bounds. */
const blob: RuleKind<unknown> = { name: 'blob', parse: (raw) => raw };
const L = RULE_DOCUMENT_LIMITS;

/** The document `{service, blob}` with the blob's JSON text given. */
const docWith = (blobText: string) => `{"service":"orders","blob":${blobText}}`;

function refusedWith(text: string, path: string, limit: string | undefined): void {
  assert.throws(
    () => parseRuleDocument(text, [blob]),
    (err: unknown) => {
      assert.ok(err instanceof RuleValidationError, String(err));
      assert.equal(err.code, 'MESHLET_BAD_RULE');
      assert.equal(err.path, path);
      assert.equal(err.limit, limit);
      return true;
    },
  );
}
const accepted = (text: string) => assert.doesNotThrow(() => parseRuleDocument(text, [blob]));

/**
 * A document of exactly `bytes` bytes of UTF-8: strings of `unit` (a piece of JSON string
 * text), each well within maxStringLength, the last padded with `x`.
 */
function documentOfBytes(bytes: number, unit: string): string {
  const unitBytes = Buffer.byteLength(unit);
  const perString = Math.floor(L.maxStringLength / 2 / unit.length);
  const frame = (k: number) => Buffer.byteLength(docWith(`[${new Array(k).fill('""').join(',')}]`));
  let k = 1;
  while (frame(k) + k * perString * unitBytes < bytes) k++;
  const content = bytes - frame(k);
  const units = Math.floor(content / unitBytes);
  const strings = Array.from({ length: k }, (_, i) => unit.repeat(Math.max(0, Math.min(perString, units - i * perString))));
  strings[k - 1] += 'x'.repeat(content - units * unitBytes);
  return docWith(`[${strings.map((p) => `"${p}"`).join(',')}]`);
}
const nested = (levels: number) => `${'['.repeat(levels)}${']'.repeat(levels)}`;

describe('rule document bounds', () => {
  it('size: at most maxChars characters of JSON', () => {
    const big = docWith(JSON.stringify('x'.repeat(L.maxChars)));
    refusedWith(big, '', 'size');
  });

  it('size: at most maxBytes bytes of UTF-8, whatever the characters, the bound named', () => {
    for (const unit of ['x', '\\"', '\u7e41', '\u{1f600}']) {
      const atBound = documentOfBytes(L.maxBytes, unit);
      assert.equal(Buffer.byteLength(atBound), L.maxBytes);
      accepted(atBound);
      const over = documentOfBytes(L.maxBytes + 1, unit);
      refusedWith(over, '', 'size');
      assert.throws(
        () => parseRuleDocument(over, [blob]),
        (err: unknown) =>
          err instanceof RuleValidationError && err.reason.includes(`${L.maxBytes + 1} bytes of UTF-8, more than ${L.maxBytes} (maxBytes)`),
      );
    }
    // The reviewer's CJK document: 112,230 characters, 336,690 bytes, accepted before and refused by Consul.
    refusedWith(docWith(JSON.stringify(['\u7e41'.repeat(56_000), '\u7e41'.repeat(56_000)])), '', 'size');
  });

  it('depth: containers nested at most maxDepth levels, the field named', () => {
    // The root object is level 1 and the blob's outer array level 2.
    accepted(docWith(nested(L.maxDepth - 1)));
    refusedWith(docWith(nested(L.maxDepth)), `blob${'[0]'.repeat(L.maxDepth - 1)}`, 'depth');
    // The issue's document: 5,000 levels in about 10 KB.
    refusedWith(docWith(nested(5000)), `blob${'[0]'.repeat(L.maxDepth - 1)}`, 'depth');
    refusedWith(docWith(`{"a":${'{"a":'.repeat(100)}1${'}'.repeat(101)}`), `blob${'.a'.repeat(L.maxDepth - 1)}`, 'depth');
  });

  it('arrays, objects, keys and strings each have a bound', () => {
    accepted(docWith(JSON.stringify(new Array(L.maxArrayLength).fill(0))));
    refusedWith(docWith(JSON.stringify(new Array(L.maxArrayLength + 1).fill(0))), 'blob', 'array');
    const keys = (n: number) => JSON.stringify(Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, 0])));
    accepted(docWith(keys(L.maxObjectKeys)));
    refusedWith(docWith(keys(L.maxObjectKeys + 1)), 'blob', 'keys');
    const long = 'k'.repeat(L.maxKeyLength + 1);
    refusedWith(docWith(JSON.stringify({ [long]: 1 })), `blob.${long.slice(0, L.maxKeyLength)}`, 'key');
    accepted(docWith(JSON.stringify('s'.repeat(L.maxStringLength))));
    refusedWith(docWith(JSON.stringify({ s: 's'.repeat(L.maxStringLength + 1) })), 'blob.s', 'string');
  });

  it('values: at most maxNodes in the whole document', () => {
    const rows = Math.ceil(L.maxNodes / L.maxArrayLength) + 1;
    const many = JSON.stringify(Array.from({ length: rows }, () => new Array(L.maxArrayLength - 1).fill(0)));
    assert.ok(many.length < L.maxChars);
    assert.throws(
      () => parseRuleDocument(docWith(many), [blob]),
      (err: unknown) => err instanceof RuleValidationError && err.limit === 'nodes' && err.path.startsWith('blob['),
    );
  });

  it('regex conditions: a budget of compiled instructions over the whole document', () => {
    const big = { tag: 't', op: 'regex', pattern: '^.{495}x' }; // 499 instructions
    const fits = Math.floor(L.maxRegexProgram / 499);
    assert.equal(fits, 2);
    accepted(docWith(JSON.stringify(new Array(fits).fill(big))));
    refusedWith(docWith(JSON.stringify(new Array(fits + 1).fill(big))), `blob[${fits}].pattern`, 'regexBudget');
    // The reviewer's documents, each about 20,000 instructions (a decision on a 512-byte value
    // cost 50–170 ms on the NFA; re2js's DFA kept 23–287 MB after the first, which took 0.5–1.4 s).
    const unicode = { tag: 't', op: 'regex', pattern: '(?i)(?:\\pL|\\pN){500}z' }; // 503
    refusedWith(docWith(JSON.stringify(new Array(39).fill(unicode))), 'blob[1].pattern', 'regexBudget');
    refusedWith(docWith(JSON.stringify([{ tag: 't', op: 'regex', pattern: '(?s).{1000}z' }])), 'blob[0].pattern', 'regexProgram');
    // A regex on request.path counts eight times: a path may be 4,096 characters, a tag's value 512.
    const onPath = { tag: 'request.path', op: 'regex', pattern: '^/a.{120}' }; // 125 instructions
    accepted(docWith(JSON.stringify([onPath])));
    refusedWith(docWith(JSON.stringify([onPath, { tag: 'request.path', op: 'regex', pattern: '^/b' }])), 'blob[1].pattern', 'regexBudget');
    accepted(
      docWith(
        JSON.stringify([
          { ...onPath, tag: 't' },
          { tag: 't', op: 'regex', pattern: '^/a.{120}' },
        ]),
      ),
    );
    // Whichever section a condition is in, and refused as its kind would refuse it.
    refusedWith(docWith(JSON.stringify({ when: [{ tag: 't', op: 'regex', pattern: '(?=a)' }] })), 'blob.when[0].pattern', 'regex');
  });

  it('a parser that throws something other than a RuleValidationError is still a coded refusal of its section', () => {
    const broken: RuleKind<unknown> = {
      name: 'broken',
      parse: () => {
        throw new TypeError('a bug');
      },
    };
    assert.throws(
      () => parseRuleDocument('{"service":"orders","broken":{}}', [broken]),
      (err: unknown) => err instanceof RuleValidationError && err.path === 'broken' && /a bug/.test(err.reason),
    );
  });

  it('a refusal shows a refused value bounded, whatever its size (the watcher logs it, the CLI prints it)', () => {
    const oneOf: RuleKind<unknown> = {
      name: 'pick',
      parse: (raw, path) => field.oneOf(field.object(raw, path).mode, `${path}.mode`, ['enforce', 'shadow']),
    };
    const reasonOf = (mode: unknown): string => {
      try {
        parseRuleDocument(JSON.stringify({ service: 'orders', pick: { mode } }), [oneOf]);
      } catch (err) {
        assert.ok(err instanceof RuleValidationError);
        assert.equal(err.path, 'pick.mode');
        return err.reason;
      }
      assert.fail('accepted');
    };
    // The reviewer's values: a 65,536-character string (65,579 characters of reason) and an
    // array of strings (900 of them gave 227,748 characters; 400 fit the document's size now).
    const long = reasonOf('x'.repeat(L.maxStringLength));
    assert.ok(long.length < 200, `${long.length} characters`);
    assert.match(long, /\(got "x{80}"\)$/);
    assert.match(reasonOf(Array.from({ length: 400 }, () => 'x'.repeat(250))), /\(got an array\)$/);
    assert.match(reasonOf(7), /\(got 7\)$/);
    // The service name is shown escaped: a control character in it reaches no terminal.
    assert.throws(
      () => parseRuleDocument(JSON.stringify({ service: 'a\u001b[2Jb' }), [oneOf]),
      (err: unknown) => err instanceof RuleValidationError && err.reason.startsWith('"a\\u001b[2Jb" is not'),
    );
    // A kind's parser that puts a whole value in its message is cut all the same.
    const chatty: RuleKind<unknown> = {
      name: 'chatty',
      parse: (raw, path) => {
        throw new RuleValidationError(path, `bad value ${JSON.stringify(raw)}`);
      },
    };
    assert.throws(
      () => parseRuleDocument(JSON.stringify({ service: 'orders', chatty: 'y'.repeat(60_000) }), [chatty]),
      (err: unknown) => err instanceof RuleValidationError && err.reason.length === MAX_RULE_REASON_LENGTH && err.message.length < 1_100,
    );
  });

  it('not JSON text at all is a coded refusal', () => {
    assert.throws(
      () => parseRuleDocument(undefined as unknown as string, [blob]),
      (err: unknown) => err instanceof RuleValidationError,
    );
  });
});

describe('applying: a whole valid document or nothing', () => {
  it('a refused document is not written and the one in force stays', async () => {
    const kv = new InMemoryKvStore();
    const repo = new RuleRepository({ kv, kinds: [blob] });
    await repo.apply(docWith('{"v":1}'), { author: 't' });
    const before = await repo.current('orders');
    for (const bad of [docWith(nested(5000)), '{"service":"orders","blub":{}}', docWith(JSON.stringify('x'.repeat(L.maxChars)))]) {
      await assert.rejects(repo.apply(bad, { author: 't' }), (err: unknown) => err instanceof RuleValidationError);
    }
    assert.deepEqual(await repo.current('orders'), before);
    assert.equal((await repo.history('orders')).length, 1);
  });

  it('a listener that throws or rejects is logged with a code and reaches neither the writer nor the other listeners', async () => {
    const kv = new InMemoryKvStore();
    const logger = new MemoryLogger();
    let rejectionLogged!: () => void;
    const logged = new Promise<void>((resolve) => {
      rejectionLogged = resolve;
    });
    const error = logger.error.bind(logger);
    logger.error = (message, fields) => {
      error(message, fields);
      if (fields?.error === 'reload failed') rejectionLogged();
    };
    const watcher = new RuleWatcher({ kv, service: 'orders', kinds: [blob], logger }).start();
    const heard: unknown[] = [];
    watcher.subscribe((d) => {
      if (d) throw new RangeError('Maximum call stack size exceeded');
    });
    // Unhandled, this rejection would end the process (and fail this test file).
    watcher.subscribe(async (d) => {
      if (d) throw new Error('reload failed');
    });
    watcher.subscribe((d) => heard.push(d?.sections.get('blob')));
    await kv.put(`${RULES_PREFIX}orders`, docWith('{"v":2}'));
    await logged;
    assert.deepEqual(heard, [undefined, { v: 2 }]);
    const failed = logger.entries.filter((e) => e.fields?.code === 'MESHLET_RULE_LISTENER_FAILED');
    assert.deepEqual(failed.map((e) => e.fields?.error).sort(), ['Maximum call stack size exceeded', 'reload failed']);
    watcher.close();
  });
});
