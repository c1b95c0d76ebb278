// The sdk README's metrics table is the one list of what `/_meshlet/metrics` serves: every
// family the code writes has its row, and every row names a family the code writes. The
// families come from the source (admin-metrics.ts's names, call-metrics.ts's per prefix)
// and from a real mesh's scrape, so a family written some other way is caught too.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { it } from 'node:test';
import { InMemoryKvStore, InMemoryRegistry, MemoryLogger } from '@meshlet/core';
import { adminAuthorization, listen } from '@meshlet/core/testing';
import { createMesh } from 'meshlet';

const root = resolve('.');
const read = (path: string) => readFileSync(resolve(root, path), 'utf8');

/** The backticked family names in the first column of the README's table under "### Admin metrics". */
function tableFamilies(): Set<string> {
  const readme = read('packages/sdk/README.md');
  const section = readme.slice(readme.indexOf('### Admin metrics'), readme.indexOf('\n## ', readme.indexOf('### Admin metrics')));
  const names = [...section.matchAll(/^\| `(meshlet_[a-z_]+)` \|/gm)].map((m) => m[1] as string);
  assert.equal(new Set(names).size, names.length, 'a family has two rows');
  return new Set(names);
}

/** The families the source writes: admin-metrics.ts's names, and call-metrics.ts's for each prefix tracing gives it. */
function sourceFamilies(): Set<string> {
  const status = [...read('packages/sdk/src/admin-metrics.ts').matchAll(/'(meshlet_[a-z_]+)'/g)].map((m) => m[1] as string);
  const prefixes = [...read('packages/trace/src/tracing.ts').matchAll(/prefix: '(meshlet_[a-z]+)'/g)].map((m) => m[1] as string);
  const suffixes = [...read('packages/trace/src/call-metrics.ts').matchAll(/# TYPE \$\{p\}_([a-z_]+) /g)].map((m) => m[1] as string);
  assert.ok(status.length >= 30 && prefixes.length === 2 && suffixes.length >= 4, 'the source patterns this test reads have moved');
  return new Set([...status, ...prefixes.flatMap((p) => suffixes.map((s) => `${p}_${s}`))]);
}

it('the sdk README has a row for every metrics family the source writes, and none for one it does not', () => {
  const table = tableFamilies();
  const source = sourceFamilies();
  assert.deepEqual([...source].filter((f) => !table.has(f)).sort(), [], 'families without a row');
  assert.deepEqual([...table].filter((f) => !source.has(f)).sort(), [], 'rows for no family');
});

it("a real mesh's scrape serves only families the table names", async (t) => {
  const token = 'a-long-enough-admin-token-0123';
  const registry = new InMemoryRegistry();
  const mesh = createMesh({
    service: 'web',
    registry,
    rules: new InMemoryKvStore(),
    logger: new MemoryLogger(),
    admin: { token },
    tracing: { sampleRatio: 0 },
  });
  const server = await listen(mesh.httpHandler((_req, res) => res.end('ok')));
  t.after(async () => {
    await mesh.close();
    await server.close();
  });
  await mesh.register({ port: server.port });
  // A call out (client metrics) that the mesh also serves (server metrics).
  await (await mesh.fetch('http://web/x')).text();
  const res = await fetch(`http://127.0.0.1:${server.port}/_meshlet/metrics`, { headers: adminAuthorization(token, server.port) });
  assert.equal(res.status, 200);
  const served = [...(await res.text()).matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1] as string);
  assert.ok(served.includes('meshlet_client_requests_total') && served.includes('meshlet_server_requests_total'), served.join(' '));
  const table = tableFamilies();
  assert.deepEqual(
    served.filter((f) => !table.has(f)),
    [],
  );
});
