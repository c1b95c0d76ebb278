import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';

/**
 * A throwaway Consul dev agent on 127.0.0.1 for tests and examples, on free ports so
 * that several can run at once. The binary comes from MESHLET_CONSUL_BIN (set by
 * `npm test`, which builds it with scripts/install-consul.sh) or `consul` on PATH.
 * Starting fails loudly when there is no binary: tests that need Consul never skip.
 */
export interface ConsulAgent {
  /** `http://127.0.0.1:<port>` */
  readonly address: string;
  readonly httpPort: number;
  /** Kills the agent (an outage); its data is gone: dev agents keep state in memory. */
  stop(): Promise<void>;
  /** Starts a fresh agent on the same ports. */
  restart(): Promise<void>;
}

export async function startConsulAgent(options: { binary?: string; log?: boolean } = {}): Promise<ConsulAgent> {
  const binary = options.binary ?? process.env.MESHLET_CONSUL_BIN ?? 'consul';
  // Every port explicit: dev mode's defaults (gRPC TLS on 8503…) clash between agents.
  const [http, dns, serfLan, serfWan, server, grpc, grpcTls] = await freePorts(7);
  const args = [
    'agent',
    '-dev',
    '-client=127.0.0.1',
    '-bind=127.0.0.1',
    `-http-port=${http}`,
    `-dns-port=${dns}`,
    `-serf-lan-port=${serfLan}`,
    `-serf-wan-port=${serfWan}`,
    `-server-port=${server}`,
    `-grpc-port=${grpc}`,
    `-grpc-tls-port=${grpcTls}`,
    '-log-level=warn',
  ];
  const address = `http://127.0.0.1:${http}`;
  let child: ChildProcess | undefined;

  const start = async () => {
    const proc = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child = proc;
    let stderr = '';
    const keep = (d: Buffer) => {
      if (options.log) process.stderr.write(d);
      stderr = (stderr + d).slice(-2000);
    };
    // Consul logs to stdout; keep the tail of both for the error message.
    proc.stdout?.on('data', keep);
    proc.stderr?.on('data', keep);
    const failed = new Promise<never>((_, reject) => {
      proc.once('error', (err) =>
        reject(
          new Error(
            `consul agent could not start (${binary}): ${err.message}. Run \`npm test\`, or set MESHLET_CONSUL_BIN to a consul binary (scripts/install-consul.sh builds one).`,
          ),
        ),
      );
      proc.once('exit', (code) => reject(new Error(`consul agent exited with ${code}: ${stderr}`)));
    });
    failed.catch(() => {});
    await Promise.race([waitForLeader(address, 30_000), failed]);
  };

  const stop = async () => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    c.kill('SIGKILL');
    await once(c, 'exit');
  };
  await start();
  return {
    address,
    httpPort: http as number,
    stop,
    async restart() {
      await stop();
      await start();
    },
  };
}

async function waitForLeader(address: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const res = await fetch(`${address}/v1/status/leader`, { signal: AbortSignal.timeout(1000) });
      const leader = await res.text();
      if (res.ok && leader.length > 2) {
        // The leader exists; wait until the catalog answers too (the node registers itself).
        const nodes = await fetch(`${address}/v1/catalog/nodes`).then((r) => r.json() as Promise<unknown[]>);
        if (nodes.length > 0) return;
      }
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`consul agent at ${address} did not elect a leader within ${timeoutMs} ms`);
}

async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: n }, async () => {
      const s = createServer();
      s.listen(0, '127.0.0.1');
      await once(s, 'listening');
      return s;
    }),
  );
  const ports = servers.map((s) => {
    const a = s.address();
    return typeof a === 'object' && a ? a.port : 0;
  });
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}
