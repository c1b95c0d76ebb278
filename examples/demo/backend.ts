import { execFileSync } from 'node:child_process';
import { InMemoryKvStore, InMemoryRegistry, type KvStore, type Registry } from 'meshlet';

/** The registry and rule store the demo runs on: in memory, or a throwaway Consul agent. */
export async function demoBackend(consul: boolean): Promise<{ name: string; registry: Registry; rules: KvStore; close(): Promise<void> }> {
  if (!consul)
    return { name: 'embedded (in memory)', registry: new InMemoryRegistry(), rules: new InMemoryKvStore(), close: async () => {} };
  const { ConsulKvStore, ConsulRegistry } = await import('@meshlet/registry');
  const { startConsulAgent } = await import('@meshlet/registry/testing');
  // The agent binary: MESHLET_CONSUL_BIN, else the project's script builds (once) and caches it.
  const binary =
    process.env.MESHLET_CONSUL_BIN ??
    execFileSync('scripts/install-consul.sh', { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] })
      .trim()
      .split('\n')
      .at(-1);
  const agent = await startConsulAgent(binary ? { binary } : {});
  const registry = new ConsulRegistry({ address: agent.address, healthCheck: { type: 'http', interval: '2s' } });
  return {
    name: `Consul dev agent at ${agent.address}`,
    registry,
    rules: new ConsulKvStore({ address: agent.address }),
    async close() {
      await registry.close();
      await agent.stop();
    },
  };
}
