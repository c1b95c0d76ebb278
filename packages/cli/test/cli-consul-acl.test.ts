// The CLI against a real Consul agent with ACLs on (default deny), with a token that can write
// rules (KV) but not read services: Consul answers the health and catalog queries with what
// the token sees (nothing) and X-Consul-Results-Filtered-By-ACLs. Fails, never skips, when
// Consul cannot be started.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { type ConsulAgent, startConsulAgent } from '@meshlet/registry/testing';
import { meshlet } from './run-meshlet.js';

const MANAGEMENT = '3f0c9a52-7d1e-4b8a-9c61-2e5d8f4a7b90';
let agent: ConsulAgent;
let dir: string;
/** A token with `key_prefix "" write` and nothing else. */
let rulesWriter: string;

async function api(method: 'PUT' | 'GET', path: string, body?: unknown): Promise<unknown> {
  const res = await fetch(`${agent.address}${path}`, {
    method,
    headers: { 'x-consul-token': MANAGEMENT },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  assert.equal(res.status, 200, `${method} ${path}: ${text}`);
  return text === '' ? undefined : JSON.parse(text);
}

before(async () => {
  agent = await startConsulAgent({ aclManagementToken: MANAGEMENT });
  dir = await mkdtemp(join(tmpdir(), 'meshlet-cli-acl-'));
  await api('PUT', '/v1/agent/service/register', {
    ID: 'orders-v2',
    Name: 'orders',
    Address: '127.0.0.1',
    Port: 9,
    Meta: { version: '2' },
  });
  const policy = (await api('PUT', '/v1/acl/policy', { Name: 'rules-writer', Rules: 'key_prefix "" { policy = "write" }' })) as {
    ID: string;
  };
  rulesWriter = ((await api('PUT', '/v1/acl/token', { Policies: [{ ID: policy.ID }] })) as { SecretID: string }).SecretID;
});
after(async () => {
  await agent?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

it('rules apply does not warn of empty groups when the token cannot see the instances', async () => {
  const file = join(dir, 'orders.json');
  await writeFile(
    file,
    JSON.stringify({ service: 'orders', route: { rules: [{ name: 'gray', destinations: [{ group: { version: '2' }, weight: 100 }] }] } }),
  );
  const dry = await meshlet(['rules', 'apply', file, '--consul', agent.address, '--token', rulesWriter, '--dry-run', '--json']);
  assert.equal(dry.code, 0, dry.stderr);
  assert.equal((JSON.parse(dry.stdout) as { warnings?: string[] }).warnings, undefined);
  assert.equal(dry.stderr, '');
});

it('services and instances say that the token sees only part of the registry', async () => {
  const listed = await meshlet(['services', '--consul', agent.address, '--token', rulesWriter]);
  assert.equal(listed.code, 0, listed.stderr);
  assert.equal(listed.stderr, 'meshlet: the catalog lists only the services this token may read (X-Consul-Results-Filtered-By-ACLs)\n');
  const orders = await meshlet(['instances', 'orders', '--consul', agent.address, '--token', rulesWriter]);
  assert.match(orders.stderr, /^meshlet: orders: only the instances this token may read are shown \(X-Consul-Results-Filtered-By-ACLs\)\n/);
  // With the management token, the whole registry and no note.
  const all = await meshlet(['services', '--consul', agent.address, '--token', MANAGEMENT]);
  assert.equal(all.code, 0, all.stderr);
  assert.equal(all.stderr, '');
  assert.match(all.stdout, /^orders\s+1\s+1\s+2$/m);
});
