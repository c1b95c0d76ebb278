// Every TypeScript snippet of the READMEs compiles against the packages as built, and the
// ones that need nothing outside the process run: a README that drifts from the code
// fails here. Each snippet is listed below with how it is checked; a snippet added to a
// README without an entry fails the test, so nobody forgets one.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { globSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { before, describe, it } from 'node:test';
import { promisify } from 'node:util';

const run = promisify(execFile);
const root = resolve('.');
const dir = join(root, 'test/dist/snippets');

interface Spec {
  /** Declarations a fragment continues from (the README's earlier snippet, in short). */
  readonly prelude?: string;
  /** Runs with node and must exit 0 (and print this, when given). */
  readonly run?: boolean | RegExp;
  /** The snippet is (a part of) this example, which test/examples.test.ts runs: its lines must be there. */
  readonly example?: string;
  /** Compiled with experimentalDecorators and emitDecoratorMetadata (NestJS). */
  readonly legacyDecorators?: boolean;
  /** Why it compiles only (needs Consul, Redis, a fixed port, an HTTP server…). */
  readonly compileOnly?: string;
}

const MESH = "import { createMesh, type Mesh } from 'meshlet';\ndeclare const mesh: Mesh;\nvoid createMesh;\n";

const GRPC_CLIENT =
  "type G = typeof import('@grpc/grpc-js');\n" +
  "declare const UsersClient: new (address: string, credentials: import('@grpc/grpc-js').ChannelCredentials) => InstanceType<G['Client']> & {\n" +
  "  GetUser(req: { id: string }, options: import('@grpc/grpc-js').CallOptions, cb: (err: import('@grpc/grpc-js').ServiceError | null, user?: unknown) => void): import('@grpc/grpc-js').ClientUnaryCall;\n" +
  '};\n';

const SNIPPETS: Record<string, Spec> = {
  'README.md#0': { example: 'examples/quickstart/main.ts', compileOnly: 'listens on 8080/8081; the example is run' },
  'README.md#1': { prelude: MESH, compileOnly: 'continues the quick start' },
  'README.md#2': {
    prelude: `import * as grpc from '@grpc/grpc-js';\n${MESH}${GRPC_CLIENT}declare const port: number;\n`,
    compileOnly: 'serves gRPC and registers; examples/grpc is run',
  },
  'packages/auth/README.md#0': { run: /^false \{"error":"forbidden".*\nGET \/users\/\{id\}\ntrue$/m },
  'packages/breaker/README.md#0': { run: true },
  'packages/breaker/README.md#1': {
    prelude: "import { CircuitBreaker, Retry, Timeout } from 'meshlet';\n",
    run: true,
  },
  'packages/cli/README.md#0': { compileOnly: 'reads ./rules of the caller' },
  'packages/config/README.md#0': { run: true },
  'packages/core/README.md#0': { run: /vip Chrome/ },
  'packages/core/README.md#1': { run: /GET \/users\/me\nGET \/users\/\{id\}/ },
  'packages/fault/README.md#0': { run: /chrome-503/ },
  'packages/propagation/README.md#0': { run: true },
  'packages/grpc/README.md#0': {
    prelude: `${GRPC_CLIENT}declare const Orders: { service: import('@grpc/grpc-js').ServiceDefinition };\ndeclare const handlers: import('@grpc/grpc-js').UntypedServiceImplementation;\n`,
    compileOnly: 'serves gRPC on 9090 and registers; examples/grpc is run',
  },
  'packages/nestjs/README.md#0': { legacyDecorators: true, compileOnly: 'listens on 8080; examples/nest is the app the tests run' },
  'packages/ratelimit/README.md#0': { run: true },
  'packages/ratelimit/README.md#1': {
    prelude: 'declare function healthyInstanceCount(): number;\n',
    compileOnly: 'needs Redis',
  },
  'packages/registry/README.md#0': { compileOnly: 'needs Consul' },
  'packages/route/README.md#0': { run: true },
  'packages/route/README.md#1': {
    prelude:
      "import { type Instance, ManualClock } from '@meshlet/core';\nimport { Router, WarmupFeed } from '@meshlet/route';\nconst router = new Router();\nconst clock = new ManualClock();\nconst instances: Instance[] = [];\n",
    run: true,
  },
  'packages/sdk/README.md#0': { compileOnly: 'listens on 8080 and registers' },
  'packages/sdk/README.md#1': { prelude: MESH, compileOnly: 'calls user-service' },
  'packages/sdk/README.md#2': { prelude: MESH, compileOnly: 'calls user-service; examples/axios is run' },
  'packages/sdk/README.md#3': { compileOnly: 'listens and registers; test/mesh-from-config.test.ts covers it' },
  'packages/sdk/README.md#4': { compileOnly: 'listens on 8080 in a worker thread; packages/sdk/test/worker-serve.test.ts covers it' },
  'packages/sdk/README.md#5': {
    prelude:
      "import { createConfig } from '@meshlet/config';\nimport { InMemoryKvStore } from '@meshlet/core';\nimport { createMesh, followIdentityKeys, meshKeysFromConfig } from 'meshlet';\nconst kv = new InMemoryKvStore();\n",
    compileOnly: 'needs keys in the config; packages/sdk/test covers it',
  },
  'packages/trace/README.md#0': { compileOnly: 'serves HTTP' },
  'packages/trace/README.md#1': { run: /^1 GET$/m },
  'packages/trace/README.md#2': { compileOnly: 'reads the TLS files of /etc/otel' },
  'packages/trace/README.md#3': { run: true },
  'packages/trace/README.md#4': { prelude: "import { Traced } from '@meshlet/trace';\n", run: true },
  'packages/tsf/README.md#0': { run: true },
  'packages/tsf/README.md#1': {
    prelude:
      "import { InMemoryKvStore } from '@meshlet/core';\nimport { createMesh } from 'meshlet';\nimport { readTsfWarmup } from '@meshlet/tsf';\nconst consulKv = new InMemoryKvStore();\n",
    compileOnly: 'a fragment of the TSF walk-through',
  },
  'packages/tsf/README.md#2': {
    prelude:
      "import { type Instance, InMemoryKvStore, MemoryLogger } from '@meshlet/core';\nimport { TsfLanes, tsfLaneMetadata } from '@meshlet/tsf';\nconst consulKv = new InMemoryKvStore();\nconst logger = new MemoryLogger();\ndeclare const instances: Instance[];\ndeclare const tags: Record<string, string>;\n",
    compileOnly: 'a fragment of the TSF walk-through',
  },
  'packages/tsf/README.md#3': {
    prelude:
      "import { InMemoryKvStore } from '@meshlet/core';\nimport { createMesh, ruleKinds } from 'meshlet';\nimport { TsfLanes, TsfRuleStore, tsfMetadata, tsfLaneMetadata } from '@meshlet/tsf';\nconst consulKv = new InMemoryKvStore();\ndeclare const identity: ConstructorParameters<typeof TsfRuleStore>[0]['identity'];\ndeclare const myGroupId: string;\ndeclare const registration: Parameters<typeof tsfMetadata>[0];\n",
    compileOnly: 'a fragment of the TSF walk-through',
  },
};

interface Snippet {
  readonly id: string;
  readonly file: string;
  readonly code: string;
  readonly spec: Spec | undefined;
}

async function snippets(): Promise<Snippet[]> {
  const readmes = ['README.md', ...globSync('packages/*/README.md').sort()];
  // A ```js block is compiled as TypeScript too: the same strictness as the rest.
  const out: Snippet[] = [];
  for (const readme of readmes) {
    const text = await readFile(join(root, readme), 'utf8');
    let i = 0;
    for (const m of text.matchAll(/```(ts|typescript|js)\n([\s\S]*?)```/g)) {
      const id = `${readme}#${i++}`;
      out.push({ id, file: `${id.replace(/^packages\//, '').replace(/[/#.]+/g, '-')}.ts`, code: m[2] ?? '', spec: SNIPPETS[id] });
    }
  }
  return out;
}

const tsconfig = (legacy: boolean, files: string[]) =>
  JSON.stringify({
    extends: '../../../tsconfig.base.json',
    compilerOptions: {
      composite: false,
      declaration: false,
      declarationMap: false,
      sourceMap: false,
      inlineSources: false,
      rootDir: '.',
      outDir: 'out',
      ...(legacy ? { experimentalDecorators: true, emitDecoratorMetadata: true } : {}),
    },
    files,
  });

describe('README snippets', () => {
  let all: Snippet[] = [];
  before(async () => {
    all = await snippets();
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });
    for (const s of all) await writeFile(join(dir, s.file), `${s.spec?.prelude ?? ''}${s.code}\nexport {};\n`);
  });

  it('every snippet is listed, and every listed snippet exists', () => {
    const ids = all.map((s) => s.id);
    assert.deepEqual(
      ids.filter((id) => !SNIPPETS[id]),
      [],
      'new README snippets: add them to SNIPPETS with how they are checked',
    );
    assert.deepEqual(
      Object.keys(SNIPPETS).filter((id) => !ids.includes(id)),
      [],
      'listed snippets no README has any more',
    );
  });

  for (const legacy of [false, true]) {
    it(`every snippet compiles${legacy ? ' (NestJS: experimentalDecorators)' : ''}`, async () => {
      const files = all.filter((s) => (s.spec?.legacyDecorators ?? false) === legacy).map((s) => s.file);
      const config = legacy ? 'tsconfig.legacy.json' : 'tsconfig.json';
      await writeFile(join(dir, config), tsconfig(legacy, files));
      const tsc = join(root, 'node_modules/.bin/tsc');
      const r = await run(tsc, ['-p', join(dir, config)], { cwd: root, timeout: 120_000 }).then(
        () => '',
        (err: { stdout?: string }) => err.stdout ?? String(err),
      );
      assert.equal(r, '', `README snippets that do not compile (test/dist/snippets):\n${r}`);
    });
  }

  it('snippets that say they are an example are in that example', async () => {
    for (const s of all.filter((x) => x.spec?.example)) {
      const example = await readFile(join(root, s.spec?.example ?? ''), 'utf8');
      const missing = s.code
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => l !== '' && !l.startsWith('//') && !l.startsWith('import'))
        .filter((l) => !example.includes(l.replace(/\s*\/\/.*$/, '')));
      assert.deepEqual(missing, [], `${s.id}: lines not in ${s.spec?.example}`);
    }
  });

  it('runs the snippets that need nothing outside the process, their temp files in a dir of the test', async () => {
    // A snippet's mkdtemp(tmpdir()) (the trace README's orders-*) lands here, not in the
    // machine's /tmp (where every run left one), and is removed with the dir.
    const tmp = join(dir, 'tmp');
    await mkdir(tmp);
    for (const s of all.filter((x) => x.spec?.run)) {
      const js = join(dir, 'out', s.file.replace(/\.ts$/, '.js'));
      const r = await run(process.execPath, [js], { cwd: dir, timeout: 30_000, env: { ...process.env, TMPDIR: tmp } }).catch(
        (err: { stderr?: string; code?: number }) => {
          assert.fail(`${s.id} exited ${err.code}: ${err.stderr}`);
        },
      );
      if (s.spec?.run instanceof RegExp) assert.match(r.stdout, s.spec.run, s.id);
    }
    const left = await readdir(tmp);
    assert.ok(
      left.some((f) => f.startsWith('orders-')),
      `the trace README's orders-* dir is not in ${tmp}: ${left.join(', ')}`,
    );
    await rm(tmp, { recursive: true, force: true });
  });
});
