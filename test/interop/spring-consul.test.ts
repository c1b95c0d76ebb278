// Meshlet and a real Spring Cloud service (test/interop/spring-peer: Spring Boot 3.5 /
// Spring Cloud Consul 4.3, then Boot 4.0 / Spring Cloud Consul 5.0) on one real Consul
// agent: discovery both ways, calls by name both ways, one W3C trace, shared config, tags
// carried through Spring. The Spring app and
// Consul start once for the file; Java, the jar or Consul missing fails the file.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { createConfig } from '@meshlet/config';
import { decodeTags, encodeTags, TAG_HEADER } from '@meshlet/core';
import { ConsulKvStore } from '@meshlet/registry';
import { type ConsulAgent, startConsulAgent } from '@meshlet/registry/testing';
import { SpanKind } from '@opentelemetry/api';
import { eventually } from './eventually.js';
import { getJson } from './get-json.js';
import { type HelloAnswer, type NodeService, startNodeService, type ViaAnswer } from './node-service.js';
import { SPRING_LINES, type SpringLine, type SpringPeer, startSpringPeer } from './spring-peer.js';

/** One entry of the peer's `/discovery/{service}`: Spring's ServiceInstance as JSON. */
interface SpringInstance {
  readonly instanceId: string;
  readonly serviceId: string;
  readonly host: string;
  readonly port: number;
  readonly secure: boolean;
  readonly uri: string;
  readonly metadata: Record<string, string>;
}

const SHARED_CONFIG = 'greeting: hello from consul\nshared:\n  key: one\n';
const NODE_CONFIG = 'greeting: hello node\n';

// The same suite against each Spring line (Boot 3 and Boot 4 peers), one after the other.
for (const line of SPRING_LINES) describe(`Meshlet and a Spring Cloud service on one Consul — ${line.label}`, () => suite(line));

function suite(line: SpringLine): void {
  let consul: ConsulAgent;
  let kv: ConsulKvStore;
  let spring: SpringPeer;
  let nodeA: NodeService;
  let nodeB: NodeService;

  before(
    async () => {
      consul = await startConsulAgent();
      kv = new ConsulKvStore({ address: consul.address, waitSeconds: 5 });
      // Written before Spring starts: Spring reads config at boot (spring.config.import=consul:).
      await kv.put('config/application/data', SHARED_CONFIG);
      await kv.put('config/node-svc/data', NODE_CONFIG);
      [nodeA, nodeB] = await Promise.all([
        // node-svc-a is stopped under load: keep serving well past Spring's 1 s cache TTL on a slow machine.
        startNodeService({
          consulAddress: consul.address,
          name: 'node-svc',
          instanceId: 'node-svc-a',
          zone: 'zone-a',
          deregisterDelayMs: 8000,
        }),
        startNodeService({ consulAddress: consul.address, name: 'node-svc', instanceId: 'node-svc-b', zone: 'zone-b' }),
      ]);
      spring = await startSpringPeer({
        boot: line.boot,
        consulAddress: consul.address,
        name: 'spring-peer',
        instanceId: 'spring-peer-1',
        zone: 'zone-a',
      });
    },
    { timeout: 25 * 60_000 },
  );

  after(async () => {
    await spring?.stop();
    await Promise.all([nodeA?.stop(), nodeB?.stop()]);
    await consul?.stop();
  });

  it("Spring's DiscoveryClient sees the Meshlet instances with their metadata, zone and scheme", async () => {
    const seen = await getJson<SpringInstance[]>(`${spring.url}/discovery/node-svc`);
    // The registration time (for warm-up) varies: check its form, then compare the rest exactly.
    for (const i of seen) assert.match(i.metadata['registered-at'] ?? '', /^\d{13}$/);
    const byId = [...seen]
      .sort((a, b) => a.instanceId.localeCompare(b.instanceId))
      .map((i) => ({ ...i, metadata: Object.fromEntries(Object.entries(i.metadata).filter(([k]) => k !== 'registered-at')) }));
    assert.deepEqual(byId, [
      {
        instanceId: 'node-svc-a',
        serviceId: 'node-svc',
        host: '127.0.0.1',
        port: nodeA.port,
        secure: false,
        uri: `http://127.0.0.1:${nodeA.port}`,
        metadata: { namespace: 'default', secure: 'false', version: '1.0.0', zone: 'zone-a' },
      },
      {
        instanceId: 'node-svc-b',
        serviceId: 'node-svc',
        host: '127.0.0.1',
        port: nodeB.port,
        secure: false,
        uri: `http://127.0.0.1:${nodeB.port}`,
        metadata: { namespace: 'default', secure: 'false', version: '1.0.0', zone: 'zone-b' },
      },
    ]);
  });

  it('an instance failing its Consul check is in Consul but hidden from Spring (query-passing)', async () => {
    // A port nothing listens on: Consul's HTTP check fails and the instance turns critical.
    const deadPort = nodeB.port + 1 === nodeA.port ? nodeB.port + 2 : nodeB.port + 1;
    await nodeA.registry.register({
      ...nodeA.instance,
      id: 'node-svc-down',
      port: deadPort,
      metadata: { secure: 'false', zone: 'zone-a' },
    });
    try {
      await eventually('node-svc-down critical in Consul', async () => {
        const checks = await getJson<{ ServiceID: string; Status: string }[]>(`${consul.address}/v1/health/checks/node-svc`);
        return checks.some((c) => c.ServiceID === 'node-svc-down' && c.Status === 'critical') ? true : undefined;
      });
      const all = await getJson<{ Service: { ID: string } }[]>(`${consul.address}/v1/health/service/node-svc`);
      assert.ok(
        all.some((e) => e.Service.ID === 'node-svc-down'),
        'Consul still lists the critical instance',
      );
      const seen = await getJson<SpringInstance[]>(`${spring.url}/discovery/node-svc`);
      assert.deepEqual(seen.map((i) => i.instanceId).sort(), ['node-svc-a', 'node-svc-b']);
      assert.deepEqual(
        (await nodeA.registry.healthyInstances('node-svc')).map((i) => i.id).sort(),
        ['node-svc-a', 'node-svc-b'],
        'Meshlet hides it too',
      );
    } finally {
      await nodeA.registry.deregister('node-svc-down');
    }
  });

  it('Spring calls the Meshlet service by name through @LoadBalanced, preferring its own zone', async () => {
    const served: string[] = [];
    for (let i = 0; i < 6; i++) {
      const hello = await getJson<HelloAnswer>(`${spring.url}/call/node-svc/hello`);
      assert.equal(hello.service, 'node-svc');
      served.push(hello.instanceId);
    }
    // Spring Cloud LoadBalancer's zone preference read `zone` from the Meta Meshlet wrote.
    assert.deepEqual(served, Array(6).fill('node-svc-a'));
  });

  it("Meshlet finds Spring's instance in Consul with Spring's metadata and calls it by name", async () => {
    const instances = await nodeA.registry.healthyInstances('spring-peer');
    assert.deepEqual(
      instances.map((i) => ({ id: i.id, address: i.address, port: i.port, metadata: i.metadata, health: i.health })),
      [{ id: 'spring-peer-1', address: '127.0.0.1', port: spring.port, metadata: { secure: 'false', zone: 'zone-a' }, health: 'passing' }],
    );
    const via = await getJson<ViaAnswer>(`${nodeA.url}/via/spring-peer/hello`);
    assert.equal(via.status, 200);
    assert.equal(via.instance, 'spring-peer-1');
    const hello = JSON.parse(via.body) as { service: string; instanceId: string };
    assert.deepEqual([hello.service, hello.instanceId], ['spring-peer', 'spring-peer-1']);
  });

  it('one W3C trace runs Node → Spring → Node: the same trace id on every span and in Spring’s log', async () => {
    const before = (await nodeA.spans()).length;
    const via = await getJson<ViaAnswer>(`${nodeA.url}/via/spring-peer/call/node-svc/hello`);
    assert.equal(via.status, 200, via.body);
    const traceId = via.traceId;
    assert.match(traceId, /^[0-9a-f]{32}$/);
    const back = JSON.parse(via.body) as HelloAnswer;
    assert.equal(back.instanceId, 'node-svc-a');
    assert.equal(back.traceId, traceId, 'the Node service called back by Spring continued the trace');
    // Spring wrote W3C only (its default), with its own span as parent.
    const parent = back.headers.traceparent?.split('-');
    assert.equal(parent?.[1], traceId);
    assert.equal(back.headers.b3, undefined);

    const spans = await eventually('three new spans on node-svc-a', async () => {
      const all = await nodeA.spans();
      return all.length >= before + 3 ? all.slice(before) : undefined;
    });
    for (const s of spans) assert.equal(s.spanContext().traceId, traceId, s.name);
    const client = spans.find((s) => s.kind === SpanKind.CLIENT);
    const helloServer = spans.find((s) => s.kind === SpanKind.SERVER && s.attributes['url.path'] === '/hello');
    assert.ok(client && helloServer);
    assert.equal(client.attributes['service.peer.name'], 'spring-peer');
    // Between Meshlet's client span and the server span of the call back sit Spring's spans.
    assert.equal(helloServer.parentSpanContext?.spanId, parent?.[2]);
    assert.notEqual(helloServer.parentSpanContext?.spanId, client.spanContext().spanId);

    await eventually("the trace id in Spring's log lines", async () =>
      spring.logs().includes(`[spring-peer,${traceId},`) && spring.logs().includes(`call http://node-svc/hello traceId=${traceId}`)
        ? true
        : undefined,
    );
  });

  it('a tag set by Node reaches Spring as x-meshlet-tags, and Spring forwarding it brings it back', async () => {
    const header = encodeTags([
      ['user-tier', 'vip'],
      ['note', 'a,b=c'],
    ]).header;
    const direct = await getJson<ViaAnswer>(`${nodeA.url}/via/spring-peer/hello`, { [TAG_HEADER]: header });
    const atSpring = JSON.parse(direct.body) as { headers: Record<string, string> };
    assert.equal(atSpring.headers[TAG_HEADER], header);

    const round = await getJson<ViaAnswer>(`${nodeA.url}/via/spring-peer/call/node-svc/hello`, { [TAG_HEADER]: header });
    const back = JSON.parse(round.body) as HelloAnswer;
    const tags = decodeTags(back.headers[TAG_HEADER] ?? '').tags;
    assert.deepEqual(Object.fromEntries(tags), { 'user-tier': 'vip', note: 'a,b=c' });
  });

  it("a key under config/application/data is seen by both; Node's own context overrides it for Node only", async () => {
    const config = await createConfig({ kv, service: 'node-svc', format: 'yaml', env: {}, watch: false });
    try {
      assert.equal(config.get('shared.key'), 'one');
      assert.equal(config.get('greeting'), 'hello node');
      const atSpring = async (key: string) => (await getJson<{ value: string | null }>(`${spring.url}/config/${key}`)).value;
      assert.equal(await atSpring('shared.key'), 'one');
      assert.equal(await atSpring('greeting'), 'hello from consul');
    } finally {
      config.close();
    }
  });

  it('a change to the shared document reaches both, Node by its watch and Spring by its refresh', async () => {
    const config = await createConfig({ kv, service: 'node-svc', format: 'yaml', env: {} });
    try {
      const changed = new Promise<string | undefined>((resolve) => {
        config.onChange(() => resolve(config.get('shared.key')));
      });
      await kv.put('config/application/data', SHARED_CONFIG.replace('key: one', 'key: two'));
      assert.equal(await changed, 'two');
      await eventually('Spring sees shared.key=two', async () => {
        const { value } = await getJson<{ value: string | null }>(`${spring.url}/config/shared.key`);
        return value === 'two' ? value : undefined;
      });
      assert.equal(config.get('greeting'), 'hello node');
    } finally {
      config.close();
    }
  });

  // Last: it stops node-svc-a.
  it("a Meshlet instance stopping gracefully under Spring's load fails none of Spring's calls", async () => {
    const failures: string[] = [];
    const servedBy = new Map<string, number>();
    let served = 0;
    let running = true;
    const worker = async () => {
      while (running) {
        try {
          const res = await fetch(`${spring.url}/call/node-svc/hello`, { signal: AbortSignal.timeout(10_000) });
          const text = await res.text();
          if (res.status !== 200) failures.push(`${res.status} ${text.slice(0, 300)}`);
          else {
            const id = (JSON.parse(text) as HelloAnswer).instanceId;
            servedBy.set(id, (servedBy.get(id) ?? 0) + 1);
            served++;
          }
        } catch (err) {
          failures.push((err as Error).message);
        }
      }
    };
    const workers = Array.from({ length: 4 }, worker);
    try {
      await eventually('Spring calling node-svc-a under load', async () => ((servedBy.get('node-svc-a') ?? 0) >= 20 ? true : undefined));
      // Deregister, then keep serving past Spring Cloud LoadBalancer's cache TTL (1 s for this peer; 35 s by default).
      await nodeA.stop();
      const atStop = served;
      await eventually('Spring calling on after the stop', async () => (served >= atStop + 20 ? true : undefined));
    } finally {
      running = false;
      await Promise.all(workers);
    }
    assert.deepEqual(failures, []);
    // Zone preference fell back to the other zone once zone-a had no instance left.
    assert.ok((servedBy.get('node-svc-b') ?? 0) >= 20, JSON.stringify(Object.fromEntries(servedBy)));
  });

  it("the peer's JVM keeps Tomcat's base dir in a temp dir of its own, removed when it stops", async () => {
    // Tomcat's tomcat.0.* and tomcat-docbase.* were left in /tmp by every run.
    const made = await readdir(spring.tempDir);
    assert.ok(
      made.some((f) => f.startsWith('tomcat.')),
      `no tomcat.* in ${spring.tempDir}: ${made.join(', ')}`,
    );
    await spring.stop();
    assert.equal(existsSync(spring.tempDir), false, `${spring.tempDir} is left after stop`);
  });
}
