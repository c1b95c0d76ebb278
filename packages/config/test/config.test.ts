import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FileKvStore, InMemoryKvStore, type KvEntry, type KvStore, MemoryLogger } from '@meshlet/core';
import {
  CONFIG_DOCUMENT_LIMITS,
  type ConfigOptions,
  ConfigParseError,
  ConfigSourceError,
  ConfigTooLargeError,
  ConfigValueError,
  createConfig,
} from '../src/index.js';
import { nextChange, recordChanges } from './helpers.js';

const base = (kv: KvStore, extra: Partial<ConfigOptions> = {}): ConfigOptions => ({
  kv,
  service: 'orders',
  profiles: ['dev'],
  env: {},
  logger: new MemoryLogger(),
  ...extra,
});

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'meshlet-config-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('createConfig: precedence across the four contexts', () => {
  it('key-value: the most specific context wins, and deleting it falls back one level at a time', async () => {
    const kv = new InMemoryKvStore();
    await kv.put('config/application/server/port', '1');
    await kv.put('config/application,dev/server/port', '2');
    await kv.put('config/orders/server/port', '3');
    await kv.put('config/orders,dev/server/port', '4');
    await kv.put('config/application/only/in/default', 'd');
    await kv.put('config/payments/server/port', '99'); // another service's: never read
    await kv.put('config/orders,prod/server/port', '98'); // an inactive profile's
    await kv.put('config/orders/folder/', ''); // a folder key, as Consul's UI makes
    const config = await createConfig(base(kv));
    assert.equal(config.get('server.port'), '4');
    assert.equal(config.get('only.in.default'), 'd');
    assert.equal(config.has('folder'), false);
    assert.deepEqual(config.snapshot(), { 'server.port': '4', 'only.in.default': 'd' });

    const seen: (string | undefined)[] = [];
    config.onChange((e) => seen.push(...e.changes.map((c) => c.newValue)));
    for (const key of [
      'config/orders,dev/server/port',
      'config/orders/server/port',
      'config/application,dev/server/port',
      'config/application/server/port',
    ]) {
      await kv.delete(key);
    }
    assert.deepEqual(seen, ['3', '2', '1', undefined]);
    assert.equal(config.get('server.port'), undefined);
    config.close();
  });

  it('the later of two profiles wins', async () => {
    const kv = new InMemoryKvStore();
    await kv.put('config/orders,dev/x', 'dev');
    await kv.put('config/orders,eu/x', 'eu');
    await kv.put('config/application,eu/y', 'app-eu');
    await kv.put('config/orders/y', 'orders');
    const config = await createConfig(base(kv, { profiles: ['dev', 'eu'] }));
    assert.equal(config.get('x'), 'eu');
    assert.equal(config.get('y'), 'orders', 'the service context beats the default context even with a profile');
    config.close();
  });

  it('honours prefix, defaultContext and profileSeparator options', async () => {
    const kv = new InMemoryKvStore();
    await kv.put('cfg/shared/a', 'shared');
    await kv.put('cfg/orders::dev/a', 'dev');
    await kv.put('config/orders,dev/a', 'wrong layout');
    const config = await createConfig(base(kv, { prefix: 'cfg', defaultContext: 'shared', profileSeparator: '::' }));
    assert.equal(config.get('a'), 'dev');
    assert.deepEqual(config.contexts, ['cfg/orders::dev/', 'cfg/orders/', 'cfg/shared::dev/', 'cfg/shared/']);
    config.close();
  });
});

describe('createConfig: formats', () => {
  it('yaml: the document at <context>/data, flattened; other keys ignored', async () => {
    const kv = new InMemoryKvStore();
    await kv.put('config/application/data', 'server:\n  port: 8080\n  host: app\nlist: [a, b]\n');
    await kv.put('config/orders,dev/data', 'server:\n  port: 9090\n');
    await kv.put('config/orders/server/port', '1'); // key-value layout: not read in yaml format
    const config = await createConfig(base(kv, { format: 'yaml' }));
    assert.deepEqual(config.snapshot(), { 'server.port': '9090', 'server.host': 'app', 'list[0]': 'a', 'list[1]': 'b' });
    assert.deepEqual(config.getList('list'), ['a', 'b']);
    config.close();
  });

  it('properties: the document at <context>/data; a custom dataKey', async () => {
    const kv = new InMemoryKvStore();
    await kv.put('config/application/props', 'a=1\nb=1');
    await kv.put('config/orders/props', 'b: 2\nc=multi \\\n  line');
    await kv.put('config/orders/data', 'a=wrong key');
    const config = await createConfig(base(kv, { format: 'properties', dataKey: 'props' }));
    assert.deepEqual(config.snapshot(), { a: '1', b: '2', c: 'multi line' });
    config.close();
  });

  it('key-value: a data key holding a YAML or properties document with meshlet. keys is read as it was, and said once per revision, naming the key and MESHLET_CONFIG_FORMAT', async () => {
    const kv = new InMemoryKvStore();
    const logger = new MemoryLogger();
    const doc = 'meshlet:\n  version: 1.2.3\n';
    await kv.put('config/orders/data', doc);
    await kv.put('config/application/data', 'meshlet.namespace=prod\n');
    await kv.put('config/orders/feature/data', doc); // not the data key of a context: a property like any
    await kv.put('config/orders,dev/data', 'plain: yaml without meshlet keys\n');
    const config = await createConfig(base(kv, { logger }));
    const hints = () => logger.entries.filter((e) => e.fields?.code === 'MESHLET_CONFIG_FORMAT_MISMATCH');
    assert.equal(config.get('data'), 'plain: yaml without meshlet keys\n', 'read as before: one property');
    assert.equal(config.get('meshlet.version'), undefined);
    assert.deepEqual(
      hints().map((e) => [e.level, e.fields?.key, e.fields?.format]),
      [
        ['warn', 'config/orders/data', 'yaml'],
        ['warn', 'config/application/data', 'properties'],
      ],
    );
    assert.match(String(hints()[0]?.message), /MESHLET_CONFIG_FORMAT=yaml/);

    await kv.put('config/orders/other', 'x'); // another key changes: not said again
    assert.equal(config.get('other'), 'x');
    assert.equal(hints().length, 2);
    await kv.put('config/orders/data', `${doc}  namespace: dev\n`); // the document changes: said once more
    assert.equal(hints().length, 3);
    assert.equal(hints()[2]?.fields?.key, 'config/orders/data');
    config.close();
  });

  it('files: config/<name>[-profile].yml|.yaml|.properties, with "-" as the profile separator', async () => {
    const kv = new InMemoryKvStore();
    await kv.put('config/application.yml', 'a: app\nb: app\nc: app\n');
    await kv.put('config/orders.properties', 'b=orders');
    await kv.put('config/orders-dev.yaml', 'c: orders-dev\n');
    await kv.put('config/orders,dev.yml', 'c: wrong separator\n');
    await kv.put('config/orders.json', '{"a": "not a known extension"}');
    const config = await createConfig(base(kv, { format: 'files' }));
    assert.deepEqual(config.snapshot(), { a: 'app', b: 'orders', c: 'orders-dev' });
    config.close();
  });
});

describe('createConfig: environment and local file', () => {
  it('env over KV over file; MESHLET_CONFIG_ names over relaxed names; get() finds env for keys nobody else defines', async () => {
    const file = join(dir, 'application.yml');
    await writeFile(file, 'a: file\nb: file\nc: file\nd: file\nserver:\n  max-connections: 10\n');
    const kv = new InMemoryKvStore();
    await kv.put('config/orders/b', 'kv');
    await kv.put('config/orders/c', 'kv');
    await kv.put('config/orders/d', 'kv');
    const env = {
      C: 'env',
      D: 'relaxed',
      MESHLET_CONFIG_D: 'explicit',
      MESHLET_CONFIG_NEW_KEY: 'new',
      SERVER_MAXCONNECTIONS: '20',
      ONLY_ENV: 'from env',
    };
    const config = await createConfig(base(kv, { file, env }));
    assert.equal(config.get('a'), 'file');
    assert.equal(config.get('b'), 'kv');
    assert.equal(config.get('c'), 'env');
    assert.equal(config.get('d'), 'explicit');
    assert.equal(config.get('new.key'), 'new');
    assert.equal(config.getNumber('server.max-connections'), 20);
    assert.equal(config.get('only.env'), 'from env');
    assert.equal(config.snapshot()['only.env'], undefined, 'snapshot lists keys some source defines');
    config.close();
  });

  it('relaxedEnv: false leaves plain variables out; a properties file works too', async () => {
    const file = join(dir, 'local.properties');
    await writeFile(file, 'path=/srv/app\nport=8080\n');
    const config = await createConfig(
      base(new InMemoryKvStore(), { file, env: { PATH: '/usr/bin', MESHLET_CONFIG_PORT: '9' }, relaxedEnv: false }),
    );
    assert.equal(config.get('path'), '/srv/app');
    assert.equal(config.getNumber('port'), 9);
    config.close();
  });

  it('a missing or unparsable local file, or an unknown extension, fails start', async () => {
    const kv = new InMemoryKvStore();
    await assert.rejects(createConfig(base(kv, { file: join(dir, 'nope.yml') })), ConfigSourceError);
    await assert.rejects(createConfig(base(kv, { file: join(dir, 'x.json') })), ConfigSourceError);
    const bad = join(dir, 'bad.yml');
    await writeFile(bad, 'a: [');
    await assert.rejects(
      createConfig(base(kv, { file: bad })),
      (err: Error) => err instanceof ConfigParseError && /read only at start/.test(err.message) && !/previous values/.test(err.message),
    );
  });

  it('a local file is read bounded: a FIFO is refused unread as no source, a file past what the document limit can hold unread as too large', async () => {
    const kv = new InMemoryKvStore();
    const fifo = join(dir, 'fifo.yml');
    execFileSync('mkfifo', [fifo]);
    // Read without a bound, a FIFO with no writer never ends: this would hang.
    await assert.rejects(
      createConfig(base(kv, { file: fifo })),
      (e: unknown) => e instanceof ConfigSourceError && /not a regular file/.test(e.message),
    );
    // Past 4 bytes a character (UTF-8's most), a file holds more characters than a document
    // may: refused as a document past 1 MiB of text is, at least a quarter of its bytes counted.
    const big = join(dir, 'big.yml');
    const text = `a: "${'x'.repeat(CONFIG_DOCUMENT_LIMITS.chars * 4)}"\n`;
    await writeFile(big, text);
    await assert.rejects(createConfig(base(kv, { file: big })), (e: unknown) => {
      assert.ok(e instanceof ConfigTooLargeError, String(e));
      assert.deepEqual(
        [e.code, e.source, e.bound, e.limit, e.measured, e.atLeast],
        ['MESHLET_CONFIG_TOO_LARGE', big, 'chars', CONFIG_DOCUMENT_LIMITS.chars, Math.ceil(text.length / 4), true],
      );
      assert.match(e.message, /too large: more than \d+ characters, at most 1048576\. Fix the file: it is read only at start/);
      return true;
    });
  });
});

describe('createConfig: hot reload', () => {
  it('applies changes through kv.watch with a typed event: keys, old and new values, secrets masked', async () => {
    const kv = new InMemoryKvStore();
    await kv.put('config/orders/data', 'timeout: 5\ndb:\n  password: old-pass\n  url: jdbc:a\n');
    const config = await createConfig(base(kv, { format: 'yaml' }));
    const events = recordChanges(config);
    await kv.put('config/orders/data', 'timeout: 7\ndb:\n  password: new-pass\n  url: jdbc:a\nretries: 3\n');
    assert.equal(events.length, 1);
    assert.deepEqual(events[0]?.changes, [
      { key: 'db.password', oldValue: '******', newValue: '******', secret: true },
      { key: 'retries', oldValue: undefined, newValue: '3', secret: false },
      { key: 'timeout', oldValue: '5', newValue: '7', secret: false },
    ]);
    assert.equal(events[0]?.revision, (await kv.get('config/orders/data'))?.revision);
    assert.equal(config.get('db.password'), 'new-pass', 'the app reads the real value');
    assert.equal(config.snapshot({ maskSecrets: true })['db.password'], '******');

    // A write that changes no value in force (here: a lower context) is no event.
    await kv.put('config/application/data', 'timeout: 1\n');
    await kv.put('config/orders/data', 'timeout: 7\ndb:\n  password: new-pass\n  url: jdbc:a\nretries: 3\n');
    assert.equal(events.length, 1);
    config.close();
    await kv.put('config/orders/data', 'timeout: 8\n');
    assert.equal(events.length, 1, 'closed: no more events');
    assert.equal(config.get('timeout'), '7');
  });

  it('a document that fails to parse is logged with its key and ignored; the previous values stay', async () => {
    const kv = new InMemoryKvStore();
    const logger = new MemoryLogger();
    await kv.put('config/orders/data', 'timeout: 5\nname: orders\n');
    await kv.put('config/application/data', 'shared: yes\n');
    const config = await createConfig(base(kv, { format: 'yaml', logger }));
    const events = recordChanges(config);

    await kv.put('config/orders/data', 'timeout: [9\n');
    assert.equal(config.get('timeout'), '5');
    assert.equal(config.get('name'), 'orders');
    assert.equal(events.length, 0);
    assert.equal(config.status.rejectedDocuments, 1);
    assert.equal(config.status.lastError?.source, 'config/orders/data');
    const errors = logger.entries.filter((e) => e.level === 'error');
    assert.equal(errors.length, 1);
    assert.equal(errors[0]?.fields?.key, 'config/orders/data');
    assert.equal(errors[0]?.fields?.code, ConfigParseError.code);

    // Another document changing meanwhile is applied; the bad one still keeps its values.
    await kv.put('config/application/data', 'shared: no\n');
    assert.equal(config.get('shared'), 'false');
    assert.equal(config.get('timeout'), '5');
    assert.equal(logger.entries.filter((e) => e.level === 'error').length, 1, 'logged once per bad revision');

    await kv.put('config/orders/data', 'timeout: 9\n');
    assert.equal(config.get('timeout'), '9');
    assert.equal(config.get('name'), undefined);
    assert.deepEqual(
      events.at(-1)?.changes.map((c) => c.key),
      ['name', 'timeout'],
    );
    config.close();
  });

  it('a YAML document whose aliases flatten past CONFIG_DOCUMENT_LIMITS.keys is refused at once; the previous values stay', async () => {
    const kv = new InMemoryKvStore();
    const logger = new MemoryLogger();
    await kv.put('config/orders/data', 'server:\n  port: 8080\n');
    const config = await createConfig(base(kv, { format: 'yaml', logger }));
    // 4 KB that aliases made 1.8 million keys (and 16 s of a blocked event loop) before.
    let bomb = `server:\n  port: 9090\nl0: &l0 [${Array(2000).fill('1').join(',')}]\n`;
    bomb += `l1: &l1 [${Array(30).fill('*l0').join(',')}]\nl2: [${Array(30).fill('*l1').join(',')}]\n`;
    await kv.put('config/orders/data', bomb);
    assert.equal(config.get('server.port'), '8080');
    assert.equal(config.status.rejectedDocuments, 1);
    assert.equal(config.status.lastError?.code, ConfigTooLargeError.code);
    assert.match(String(config.status.lastError?.message), new RegExp(`too large: more than ${CONFIG_DOCUMENT_LIMITS.keys} keys`));
    const [line] = logger.entries.filter((e) => e.fields?.code === ConfigTooLargeError.code);
    assert.deepEqual(
      [line?.fields?.key, line?.fields?.bound, line?.fields?.limit, line?.fields?.measured],
      ['config/orders/data', 'keys', CONFIG_DOCUMENT_LIMITS.keys, CONFIG_DOCUMENT_LIMITS.keys + 1],
    );
    config.close();
  });

  // Found in the final review: the key budget was per `---` document, so a stream of
  // documents each rewriting the same keys passed with the map at the bound.
  it('a YAML stream is one budget: documents that each rewrite the same keys are refused past it', async () => {
    const kv = new InMemoryKvStore();
    await kv.put('config/orders/data', 'server:\n  port: 8080\n');
    const config = await createConfig(base(kv, { format: 'yaml' }));
    const doc = `a: &a {${Array.from({ length: 100 }, (_, i) => `k${i}: 1`).join(', ')}}\nb: [${Array(99).fill('*a').join(',')}]\n`;
    // Each document 10,000 keys (at the bound alone); three of them write 30,000.
    await kv.put('config/orders/data', `server:\n  port: 9090\n---\n${doc}---\n${doc}---\n${doc}`);
    assert.equal(config.get('server.port'), '8080');
    assert.equal(config.status.lastError?.code, ConfigTooLargeError.code);
    assert.match(String(config.status.lastError?.message), new RegExp(`more than ${CONFIG_DOCUMENT_LIMITS.keys} keys`));
    config.close();
  });

  it('refuses a document past its characters or its keys (properties too) as too large, naming the bound and the measure', async () => {
    const kv = new InMemoryKvStore();
    await kv.put('config/orders/data', 'a=1');
    const config = await createConfig(base(kv, { format: 'properties' }));
    const many = Array.from({ length: CONFIG_DOCUMENT_LIMITS.keys + 1 }, (_, i) => `k${i}=1`).join('\n');
    await kv.put('config/orders/data', many);
    assert.equal(config.status.lastError?.code, ConfigTooLargeError.code);
    assert.match(
      String(config.status.lastError?.message),
      new RegExp(
        `^config/orders/data: the document is too large: ${CONFIG_DOCUMENT_LIMITS.keys + 1} keys .*at most ${CONFIG_DOCUMENT_LIMITS.keys}`,
      ),
    );
    const text = `a=${'x'.repeat(CONFIG_DOCUMENT_LIMITS.chars)}`;
    await kv.put('config/orders/data', text);
    assert.equal(config.status.lastError?.code, ConfigTooLargeError.code);
    assert.match(
      String(config.status.lastError?.message),
      new RegExp(`too large: ${text.length} characters, at most ${CONFIG_DOCUMENT_LIMITS.chars}\\. .*previous values stay`),
    );
    assert.equal(config.status.rejectedDocuments, 2);
    assert.equal(config.get('a'), '1');
    config.close();
  });

  it("names at most 50 changed keys in the 'config applied' log line, and counts them all", async () => {
    const kv = new InMemoryKvStore();
    const logger = new MemoryLogger();
    await kv.put('config/orders/data', 'a=1');
    const config = await createConfig(base(kv, { format: 'properties', logger }));
    await kv.put('config/orders/data', Array.from({ length: 500 }, (_, i) => `k${i}=1`).join('\n'));
    const applied = logger.entries.filter((e) => e.message === 'config applied').at(-1);
    assert.equal((applied?.fields?.changed as string[] | undefined)?.length, 50);
    assert.equal(applied?.fields?.changes, 501);
    config.close();
  });

  it('a document that is bad at start fails start (failFast), naming its key and the parse error', async () => {
    const kv = new InMemoryKvStore();
    await kv.put('config/orders/data', 'meshlet:\n  version: [1.2\n');
    await assert.rejects(createConfig(base(kv, { format: 'yaml' })), (err: unknown) => {
      assert.ok(err instanceof ConfigParseError);
      assert.equal(err.source, 'config/orders/data');
      assert.match(err.reason, /^invalid YAML: /);
      assert.match(err.message, /failFast: false to start without it/);
      assert.doesNotMatch(err.message, /previous values/);
      return true;
    });
  });

  it('a document too large at start fails start (failFast) as too large, not as one that does not parse, naming its key and bound', async () => {
    const kv = new InMemoryKvStore();
    // Parses (Spring would read it); past the key bound only.
    await kv.put('config/orders/data', Array.from({ length: CONFIG_DOCUMENT_LIMITS.keys + 5 }, (_, i) => `k${i}=1`).join('\n'));
    await assert.rejects(createConfig(base(kv, { format: 'properties' })), (err: unknown) => {
      assert.ok(err instanceof ConfigTooLargeError);
      assert.deepEqual(
        [err.code, err.source, err.bound, err.limit, err.measured],
        ['MESHLET_CONFIG_TOO_LARGE', 'config/orders/data', 'keys', CONFIG_DOCUMENT_LIMITS.keys, CONFIG_DOCUMENT_LIMITS.keys + 5],
      );
      assert.match(err.message, /too large/);
      assert.doesNotMatch(err.message, /parse/);
      assert.match(err.message, /failFast: false to start without it/);
      return true;
    });
    // failFast: false starts without it, logged with the bound.
    const logger = new MemoryLogger();
    const config = await createConfig(base(kv, { format: 'properties', failFast: false, logger }));
    assert.deepEqual(config.snapshot(), {});
    const [line] = logger.entries.filter((e) => e.fields?.code === ConfigTooLargeError.code);
    assert.match(String(line?.message), /at start .*started without it/);
    assert.deepEqual([line?.fields?.bound, line?.fields?.measured], ['keys', CONFIG_DOCUMENT_LIMITS.keys + 5]);
    config.close();
  });

  it('a local file too large is refused at start as too large', async () => {
    const big = join(dir, 'many.properties');
    await writeFile(big, Array.from({ length: CONFIG_DOCUMENT_LIMITS.keys + 1 }, (_, i) => `k${i}=1`).join('\n'));
    await assert.rejects(
      createConfig(base(new InMemoryKvStore(), { file: big })),
      (e: unknown) => e instanceof ConfigTooLargeError && e.source === big && /too large.*read only at start/.test(e.message),
    );
  });

  it('with failFast: false, a document that is bad at start contributes nothing, is logged as such, and is applied once fixed', async () => {
    const kv = new InMemoryKvStore();
    const logger = new MemoryLogger();
    await kv.put('config/orders/data', 'a=\\uZZZZ');
    const config = await createConfig(base(kv, { format: 'properties', failFast: false, logger }));
    assert.deepEqual(config.snapshot(), {});
    assert.equal(config.status.rejectedDocuments, 1);
    const rejected = logger.entries.filter((e) => e.fields?.code === ConfigParseError.code);
    assert.equal(rejected.length, 1);
    assert.match(String(rejected[0]?.message), /at start .*started without it/);
    assert.equal(rejected[0]?.fields?.key, 'config/orders/data');
    assert.doesNotMatch(String(config.status.lastError?.message), /previous values/);
    const change = nextChange(config);
    await kv.put('config/orders/data', 'a=1');
    assert.deepEqual((await change).changes, [{ key: 'a', oldValue: undefined, newValue: '1', secret: false }]);
  });

  it('follows a FileKvStore: ops edit a file, the app sees the change', async () => {
    const kvDir = join(dir, 'kv');
    const kv = new FileKvStore(kvDir);
    await kv.put('config/orders,dev/data', 'feature:\n  enabled: false\n');
    const config = await createConfig(base(kv, { format: 'yaml' }));
    assert.equal(config.getBoolean('feature.enabled'), false);
    const change = nextChange(config);
    await kv.put('config/orders,dev/data', 'feature:\n  enabled: true\n');
    assert.deepEqual((await change).changes, [{ key: 'feature.enabled', oldValue: 'false', newValue: 'true', secret: false }]);
    assert.equal(config.getBoolean('feature.enabled'), true);
    config.close();
  });

  it('one transaction across config/application/ and config/<app>/ is one change, though the two watches answer in different turns', async () => {
    const memory = new InMemoryKvStore();
    await memory.putAll([
      { key: 'config/application/x', value: '1' },
      { key: 'config/orders/y', value: '1' },
    ]);
    // As Consul: each prefix's blocking query answers on its own, a turn of the event loop apart.
    const kv: KvStore = {
      get: (k) => memory.get(k),
      list: (p) => memory.list(p),
      put: (k, v, o) => memory.put(k, v, o),
      delete: (k, o) => memory.delete(k, o),
      putAll: (w) => memory.putAll(w),
      watch: (prefix, listener) => memory.watch(prefix, (entries) => setImmediate(() => listener(entries))),
    };
    const config = await createConfig(base(kv));
    const seen: string[] = [];
    config.onChange(() => seen.push(`x=${config.get('x')} y=${config.get('y')}`));
    const change = nextChange(config);
    await memory.putAll([
      { key: 'config/application/x', value: '2' },
      { key: 'config/orders/y', value: '2' },
    ]);
    const event = await change;
    assert.deepEqual(
      event.changes.map((c) => `${c.key}:${c.oldValue}->${c.newValue}`),
      ['x:1->2', 'y:1->2'],
    );
    assert.deepEqual(seen, ['x=2 y=2']);
    config.close();
  });

  it('a listener that throws, or returns a promise that rejects, is logged with a code and counted; the others are called', async () => {
    const kv = new InMemoryKvStore();
    const failures: string[] = [];
    let bothLogged!: () => void;
    const logged = new Promise<void>((resolve) => {
      bothLogged = resolve;
    });
    const logger = new MemoryLogger();
    const error = logger.error.bind(logger);
    logger.error = (message, fields) => {
      error(message, fields);
      if (fields?.code === 'MESHLET_CONFIG_LISTENER_FAILED') failures.push(String(fields.reason));
      if (failures.length === 2) bothLogged();
    };
    const config = await createConfig(base(kv, { logger }));
    let heard = 0;
    config.onChange(() => {
      throw new Error('boom');
    });
    // Unhandled, this rejection would end the process (and fail this test file).
    config.onChange(async () => {
      throw new Error('reconnect failed');
    });
    config.onChange(() => {
      heard++;
    });
    const change = nextChange(config);
    await kv.put('config/orders/a', '1');
    await change;
    await logged;
    assert.equal(heard, 1);
    assert.deepEqual(failures.sort(), ['boom', 'reconnect failed']);
    assert.equal(config.status.listenerFailures, 2);
    assert.equal(config.get('a'), '1');
    config.close();
  });
});

describe('createConfig: KV unavailable at start', () => {
  const broken: KvStore = {
    get: async () => undefined,
    list: async (): Promise<readonly KvEntry[]> => {
      throw new Error('connect ECONNREFUSED 127.0.0.1:8500');
    },
    put: async () => false,
    delete: async () => false,
    putAll: async () => false,
    watch: () => () => {},
  };

  it('fails start by default (failFast), naming what to do', async () => {
    await assert.rejects(
      createConfig(base(broken)),
      (err: unknown) => err instanceof ConfigSourceError && /failFast: false/.test(err.message),
    );
  });

  it('with failFast: false starts from env and file, with a warning', async () => {
    const logger = new MemoryLogger();
    const config = await createConfig(base(broken, { failFast: false, env: { MESHLET_CONFIG_A: '1' }, logger }));
    assert.equal(config.get('a'), '1');
    assert.ok(logger.entries.some((e) => e.level === 'warn' && e.fields?.code === ConfigSourceError.code));
    config.close();
  });

  it("starts from the store's snapshot (failFast or not) when the store kept one", async () => {
    const logger = new MemoryLogger();
    const kept: KvStore = {
      ...broken,
      saved: async (prefix) => (prefix === 'config/orders' ? [{ key: 'config/orders/a', value: 'kept', revision: 7 }] : undefined),
    };
    const config = await createConfig(base(kept, { logger }));
    assert.equal(config.get('a'), 'kept');
    assert.equal(config.status.revision, 7);
    assert.ok(logger.entries.some((e) => e.fields?.code === ConfigSourceError.code && /snapshot/.test(e.message)));
    config.close();
  });

  it('starts from the snapshot without a document in it that does not parse, failFast or not (it keeps what KV held, a refused one too; nothing can be fixed while Consul is down)', async () => {
    const logger = new MemoryLogger();
    const kept: KvStore = {
      ...broken,
      saved: async (prefix) =>
        prefix === 'config/orders' ? [{ key: 'config/orders/data', value: 'a: [unclosed', revision: 8 }] : undefined,
    };
    const config = await createConfig(base(kept, { logger, format: 'yaml' }));
    const rejected = logger.entries.find((e) => e.level === 'error' && e.fields?.code === 'MESHLET_CONFIG_PARSE');
    assert.match(rejected?.message ?? '', /snapshot rejected at start; started without it/);
    config.close();
  });
});

describe('typed getters', () => {
  it('read numbers, booleans, lists, with fallbacks; a bad value is a ConfigValueError that hides secrets', async () => {
    const kv = new InMemoryKvStore();
    await kv.put('config/orders/data', 'n: 1.5\nb: ON\nbad: abc\nempty: ""\ncsv: a, b ,c\ndb:\n  password: abc\n');
    const config = await createConfig(base(kv, { format: 'yaml' }));
    assert.equal(config.getNumber('n'), 1.5);
    assert.equal(config.getNumber('missing', 42), 42);
    assert.equal(config.getBoolean('b'), true);
    assert.equal(config.getBoolean('missing', true), true);
    assert.equal(config.getString('missing', 'x'), 'x');
    assert.equal(config.getString('bad'), 'abc');
    assert.deepEqual(config.getList('csv'), ['a', 'b', 'c']);
    assert.deepEqual(config.getList('missing'), []);
    assert.throws(
      () => config.getNumber('bad'),
      (e: unknown) => e instanceof ConfigValueError && e.key === 'bad' && e.message.includes('"abc"'),
    );
    assert.throws(() => config.getNumber('empty', 1), ConfigValueError);
    assert.throws(() => config.getBoolean('bad'), ConfigValueError);
    assert.throws(
      () => config.getNumber('db.password'),
      (e: unknown) => e instanceof ConfigValueError && !e.message.includes('abc') && e.message.includes('secret'),
    );
    config.close();
  });
});
