import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { it } from 'node:test';
import { freeLoopbackPorts } from '../src/testing/consul-agent.js';

it('free loopback ports are distinct, below the ephemeral range, and bindable on TCP and UDP', async () => {
  const ports = await freeLoopbackPorts(7);
  assert.equal(new Set(ports).size, 7);
  for (const port of ports) {
    assert.ok(port >= 1_024 && port < 32_768, `port ${port} is not below the ephemeral range`);
    const tcp = createServer().listen(port, '127.0.0.1');
    await once(tcp, 'listening');
    const udp = createSocket('udp4');
    udp.bind(port, '127.0.0.1');
    await once(udp, 'listening');
    udp.close();
    await new Promise((r) => tcp.close(r));
  }
});

it('a port in use is never handed out', async () => {
  // A range of ten with seven taken: the three left are the only answer. Above the range
  // agents draw from by default, below the kernel's ephemeral ports.
  const from = 32_100;
  const all = Array.from({ length: 10 }, (_, i) => from + i);
  const taken = all.filter((p) => p % 3 !== 0).map((p) => createServer().listen(p, '127.0.0.1'));
  await Promise.all(taken.map((s) => once(s, 'listening')));
  try {
    const ports = await freeLoopbackPorts(all.length - taken.length, { from, to: from + all.length });
    assert.deepEqual(
      ports.sort((a, b) => a - b),
      all.filter((p) => p % 3 === 0),
    );
  } finally {
    await Promise.all(taken.map((s) => new Promise((r) => s.close(r))));
  }
});
