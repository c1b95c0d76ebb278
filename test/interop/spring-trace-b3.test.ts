// One trace across Node → Spring → Node when both sides are set to B3 (the single `b3`
// header): Meshlet emits B3, Spring Boot (management.tracing.propagation.produce=b3) reads it
// and writes B3 back, Meshlet reads it. A separate file (and JVM) from the W3C tests:
// Spring's propagation type is fixed at start.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type ConsulAgent, startConsulAgent } from '@meshlet/registry/testing';
import { SpanKind } from '@opentelemetry/api';
import { eventually } from './eventually.js';
import { getJson } from './get-json.js';
import { type HelloAnswer, type NodeService, startNodeService, type ViaAnswer } from './node-service.js';
import { SPRING_LINES, type SpringLine, type SpringPeer, startSpringPeer } from './spring-peer.js';

// The same suite against each Spring line (Boot 3 and Boot 4 peers), one after the other.
for (const line of SPRING_LINES) describe(`B3 between Meshlet and Spring Boot — ${line.label}`, () => suite(line));

function suite(line: SpringLine): void {
  let consul: ConsulAgent;
  let spring: SpringPeer;
  let node: NodeService;

  before(
    async () => {
      consul = await startConsulAgent();
      node = await startNodeService({ consulAddress: consul.address, name: 'node-b3', instanceId: 'node-b3-1', emit: ['b3'] });
      spring = await startSpringPeer({
        boot: line.boot,
        consulAddress: consul.address,
        name: 'spring-b3',
        instanceId: 'spring-b3-1',
        propagation: 'b3',
      });
    },
    { timeout: 25 * 60_000 },
  );

  after(async () => {
    await spring?.stop();
    await node?.stop();
    await consul?.stop();
  });

  it('keeps one trace id on every span and in Spring’s log, with b3 headers only', async () => {
    const via = await getJson<ViaAnswer>(`${node.url}/via/spring-b3/call/node-b3/hello`);
    assert.equal(via.status, 200, via.body);
    const back = JSON.parse(via.body) as HelloAnswer;
    assert.equal(back.traceId, via.traceId);
    // b3: {traceId}-{spanId}-{sampled}; Spring's span is the parent.
    const b3 = back.headers.b3?.split('-');
    assert.equal(b3?.[0], via.traceId, `b3 header ${back.headers.b3}`);
    assert.equal(b3?.[2], '1');
    assert.equal(back.headers.traceparent, undefined, 'Spring set to b3 writes no traceparent');

    const spans = await eventually('three spans', async () => {
      const all = await node.spans();
      return all.length >= 3 ? all : undefined;
    });
    for (const s of spans) assert.equal(s.spanContext().traceId, via.traceId, s.name);
    const client = spans.find((s) => s.kind === SpanKind.CLIENT);
    const helloServer = spans.find((s) => s.kind === SpanKind.SERVER && s.attributes['url.path'] === '/hello');
    assert.ok(client && helloServer);
    assert.equal(helloServer.parentSpanContext?.spanId, b3?.[1]);
    assert.notEqual(helloServer.parentSpanContext?.spanId, client.spanContext().spanId);

    await eventually("the trace id in Spring's log", async () => (spring.logs().includes(`[spring-b3,${via.traceId},`) ? true : undefined));
  });

  it('Spring set to B3 still accepts a W3C traceparent from a Meshlet service left at the default', async () => {
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const hello = await getJson<{ traceId: string }>(`${spring.url}/hello`, { traceparent: `00-${traceId}-00f067aa0ba902b7-01` });
    assert.equal(hello.traceId, traceId);
  });
}
