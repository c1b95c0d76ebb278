// Issue #16 item 8: one rule for service names everywhere. A URL lower-cases its host, so
// a service must be named in lower case to be reachable by its own URL; every place that
// takes a name refuses another, with a code and the name to use instead.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { authRuleKind } from '@meshlet/auth';
import {
  InMemoryKvStore,
  InMemoryRegistry,
  MemoryLogger,
  parseRuleDocument,
  RuleValidationError,
  SERVICE_NAME,
  serviceNameProblem,
} from '@meshlet/core';
import { listen } from '@meshlet/core/testing';
import { createMesh, ruleKinds } from '../src/index.js';

it('createMesh refuses an upper-case name, naming the lower-case one to use', () => {
  assert.throws(
    () => createMesh({ service: 'Upper-Svc', registry: new InMemoryRegistry(), rules: new InMemoryKvStore() }),
    (err: unknown) => {
      assert.equal((err as { code?: string }).code, 'MESHLET_BAD_OPTION');
      assert.match((err as Error).message, /^service: "Upper-Svc" has upper-case letters.*name the service "upper-svc"/);
      return true;
    },
  );
});

it('the lower-case name works, and a URL written with capitals reaches it', async () => {
  const registry = new InMemoryRegistry();
  const rules = new InMemoryKvStore();
  const svc = createMesh({ service: 'upper-svc', registry, rules, logger: new MemoryLogger() });
  const server = await listen(svc.httpHandler((_req, res) => res.end('here')));
  await svc.register({ port: server.port });
  const caller = createMesh({ service: 'caller', registry, rules, logger: new MemoryLogger() });
  try {
    assert.equal(await (await caller.fetch('http://Upper-Svc/')).text(), 'here');
    assert.equal(await (await caller.fetch('http://upper-svc/')).text(), 'here');
  } finally {
    await caller.close();
    await svc.close();
    await server.close();
  }
});

it('rule documents, auth rules and rulesInForce take the same rule', async () => {
  assert.throws(() => parseRuleDocument(JSON.stringify({ service: 'Upper-Svc' }), ruleKinds), RuleValidationError);
  assert.throws(
    () =>
      parseRuleDocument(JSON.stringify({ service: 'payment', auth: { rules: [{ name: 'r', action: 'deny', services: ['Checkout'] }] } }), [
        authRuleKind,
      ]),
    RuleValidationError,
  );
  const mesh = createMesh({ service: 'names', registry: new InMemoryRegistry(), rules: new InMemoryKvStore(), logger: new MemoryLogger() });
  try {
    await assert.rejects(mesh.rulesInForce('Upper-Svc'), (err: unknown) => {
      assert.equal((err as { code?: string }).code, 'MESHLET_BAD_OPTION');
      assert.match((err as Error).message, /upper-svc/);
      return true;
    });
  } finally {
    await mesh.close();
  }
});

it('serviceNameProblem explains each refusal; SERVICE_NAME is the one pattern', () => {
  for (const ok of ['a', 'user-service', 'v2-api', `a${'b'.repeat(62)}`]) {
    assert.equal(serviceNameProblem(ok), undefined, ok);
    assert.ok(SERVICE_NAME.test(ok));
  }
  for (const bad of ['', 'Upper', '2fa', 'a_b', '-a', 'a-', `a${'b'.repeat(63)}`, 'a.b', 'ä']) assert.ok(serviceNameProblem(bad), bad);
  assert.match(serviceNameProblem(42) ?? '', /number is not a service name/);
});
