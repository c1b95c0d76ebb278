import { type ChildProcess, spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

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
  /** `https://127.0.0.1:<port>` when started with `tls`. */
  readonly httpsAddress?: string;
  /** Kills the agent (an outage); its data is gone: dev agents keep state in memory. */
  stop(): Promise<void>;
  /** Starts a fresh agent on the same ports. */
  restart(): Promise<void>;
}

/** How many times a start is tried again when a port was taken between choosing it and binding it. */
const BIND_ATTEMPTS = 5;

export interface ConsulAgentOptions {
  /** Default MESHLET_CONSUL_BIN, else `consul` on PATH. */
  readonly binary?: string;
  /** Copy the agent's output to stderr. */
  readonly log?: boolean;
  /** Turn ACLs on with default policy deny; this token is the management token. */
  readonly aclManagementToken?: string;
  /** Serve HTTPS too, with this certificate (PEM files); the HTTP address stays for the probe. */
  readonly tls?: { readonly caFile: string; readonly certFile: string; readonly keyFile: string };
}

export async function startConsulAgent(options: ConsulAgentOptions = {}): Promise<ConsulAgent> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnFreePorts(options);
    } catch (err) {
      if (!(err instanceof PortTakenError) || attempt >= BIND_ATTEMPTS) throw err;
    }
  }
}

/** The agent exited because one of its ports was bound by someone else first. */
class PortTakenError extends Error {}

async function startOnFreePorts(options: ConsulAgentOptions): Promise<ConsulAgent> {
  const binary = options.binary ?? process.env.MESHLET_CONSUL_BIN ?? 'consul';
  // Every port explicit: dev mode's defaults (gRPC TLS on 8503…) clash between agents.
  const [http, dns, serfLan, serfWan, server, grpc, grpcTls, https] = await freeLoopbackPorts(8);
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
    ...(options.tls
      ? [
          `-https-port=${https}`,
          '-hcl',
          `tls { defaults { ca_file = ${JSON.stringify(options.tls.caFile)}, cert_file = ${JSON.stringify(options.tls.certFile)}, key_file = ${JSON.stringify(options.tls.keyFile)}, verify_incoming = false } }`,
        ]
      : []),
    ...(options.aclManagementToken
      ? [
          '-hcl',
          `acl { enabled = true, default_policy = "deny", tokens { initial_management = ${JSON.stringify(options.aclManagementToken)} } }`,
        ]
      : []),
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
      proc.once('exit', (code) => {
        const message = `consul agent exited with ${code}: ${stderr}`;
        reject(/address already in use/.test(stderr) ? new PortTakenError(message) : new Error(message));
      });
    });
    failed.catch(() => {});
    // An agent that exited stops the wait for its leader at once.
    const gaveUp = new AbortController();
    try {
      await Promise.race([waitForLeader(address, 30_000, gaveUp.signal, options.aclManagementToken), failed]);
    } finally {
      gaveUp.abort();
    }
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
    ...(options.tls ? { httpsAddress: `https://127.0.0.1:${https}` } : {}),
    stop,
    async restart() {
      await stop();
      // The same ports again (callers hold the address). One that a stranger took in the
      // meantime is usually released soon; wait for it rather than fail at once.
      for (let attempt = 1; ; attempt++) {
        try {
          return await start();
        } catch (err) {
          if (!(err instanceof PortTakenError) || attempt >= BIND_ATTEMPTS) throw err;
          await new Promise((r) => setTimeout(r, 200 * attempt));
        }
      }
    },
  };
}

async function waitForLeader(address: string, timeoutMs: number, signal: AbortSignal, token: string | undefined): Promise<void> {
  const headers: Record<string, string> = token ? { 'x-consul-token': token } : {};
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline && !signal.aborted) {
    try {
      const res = await fetch(`${address}/v1/status/leader`, { signal: AbortSignal.timeout(1000) });
      const leader = await res.text();
      if (res.ok && leader.length > 2) {
        // The leader exists; wait until the catalog answers too (the node registers itself).
        const nodes = await fetch(`${address}/v1/catalog/nodes`, { headers, signal: AbortSignal.timeout(1000) }).then(
          (r) => r.json() as Promise<unknown[]>,
        );
        if (nodes.length > 0) return;
      }
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`consul agent at ${address} did not elect a leader within ${timeoutMs} ms`);
}

/**
 * Ports below Linux's ephemeral range (32768–60999), so that the kernel does not hand
 * them to outgoing connections or `listen(0)` servers in the meantime; each one is
 * checked free for TCP and UDP (Consul's DNS and Serf use both). Random, so that agents
 * started at once by parallel test files rarely pick the same; a start that loses the
 * race anyway is retried on new ports.
 */
export async function freeLoopbackPorts(n: number, range: { from: number; to: number } = belowEphemeral()): Promise<number[]> {
  if (range.to - range.from < n) throw new RangeError(`${n} ports do not fit in ${range.from}–${range.to}`);
  const ports: number[] = [];
  for (let tries = 0; ports.length < n; tries++) {
    if (tries === 10_000) throw new Error(`no ${n} free ports in ${range.from}–${range.to} (found ${ports.length})`);
    const port = range.from + Math.floor(Math.random() * (range.to - range.from));
    if (!ports.includes(port) && (await isFree(port))) ports.push(port);
  }
  return ports;
}

/** 12 000 ports just below the kernel's ephemeral range (Linux default 32768–60999). */
function belowEphemeral(): { from: number; to: number } {
  let low = 32_768;
  try {
    const first = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    if (Number.isInteger(first) && first > 2_048) low = first;
  } catch {
    // not Linux: keep the default
  }
  const to = Math.min(low, 32_000);
  return { from: Math.max(1_024, to - 12_000), to };
}

async function isFree(port: number): Promise<boolean> {
  const tcp = createServer();
  const udp = createSocket('udp4');
  try {
    tcp.listen(port, '127.0.0.1');
    await once(tcp, 'listening');
    udp.bind(port, '127.0.0.1');
    await once(udp, 'listening');
    return true;
  } catch {
    return false;
  } finally {
    if (tcp.listening) await new Promise((r) => tcp.close(r));
    try {
      udp.close();
    } catch {
      // never bound
    }
  }
}

/** One node of a ConsulCluster: a real `consul agent` process with its own ports and data directory. */
export interface ConsulNode {
  readonly name: string;
  /** `http://127.0.0.1:<port>`: this node's HTTP API. */
  readonly address: string;
  /** For a server, its RPC address as `/v1/status/leader` names it (`127.0.0.1:<port>`). */
  readonly rpcAddress: string | undefined;
  /** True while the process runs. */
  readonly running: boolean;
  /** The process id while it runs (to read its CPU time, say). */
  readonly pid: number | undefined;
  /** Kills the process (SIGKILL): a crash. Its data directory stays. */
  stop(): Promise<void>;
  /** Starts it again on the same ports and data directory; resolves once its HTTP API answers. */
  start(): Promise<void>;
}

/** Three servers and one client agent on 127.0.0.1, as production runs Consul (a cluster, apps on a client agent). */
export interface ConsulCluster {
  readonly servers: readonly ConsulNode[];
  /** The client agent applications talk to. */
  readonly client: ConsulNode;
  /** Resolves with the server that is leader once the running servers agree on one. */
  leader(timeoutMs?: number): Promise<ConsulNode>;
  /** Stops every node and removes the data directories. */
  stop(): Promise<void>;
}

export interface ConsulClusterOptions {
  /** Default MESHLET_CONSUL_BIN, else `consul` on PATH. */
  readonly binary?: string;
  /** Copy the agents' output to stderr. */
  readonly log?: boolean;
  /** More HCL for every node (e.g. `limits { http_max_conns_per_client = 10000 }` for a benchmark). */
  readonly hcl?: readonly string[];
}

/**
 * Starts a 3-server cluster and a client agent from the same binary, each node on its own
 * free loopback ports below the ephemeral range and its own data directory: servers with
 * `-bootstrap-expect=3` and `-retry-join` on each other's Serf LAN ports, the client
 * joining them. Raft timing is production's recommended `raft_multiplier = 1` (elections
 * within a few seconds). Resolves once the cluster has a leader and the client agent has
 * joined it. Fails loudly, never skips, when there is no binary.
 */
export async function startConsulCluster(options: ConsulClusterOptions = {}): Promise<ConsulCluster> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startClusterOnFreePorts(options);
    } catch (err) {
      if (!(err instanceof PortTakenError) || attempt >= BIND_ATTEMPTS) throw err;
    }
  }
}

async function startClusterOnFreePorts(options: ConsulClusterOptions): Promise<ConsulCluster> {
  const binary = options.binary ?? process.env.MESHLET_CONSUL_BIN ?? 'consul';
  const root = await mkdtemp(join(tmpdir(), 'meshlet-consul-cluster-'));
  // Per node: http, serf LAN, serf WAN, server RPC.
  const ports = await freeLoopbackPorts(16);
  const port = (node: number, which: number) => ports[node * 4 + which] as number;
  const serfLan = [0, 1, 2].map((n) => `-retry-join=127.0.0.1:${port(n, 1)}`);
  const nodes: ManagedAgent[] = [0, 1, 2, 3].map((n) => {
    const server = n < 3;
    const name = server ? `server-${n + 1}` : 'client-1';
    const args = [
      'agent',
      `-node=${name}`,
      `-data-dir=${join(root, name)}`,
      '-bind=127.0.0.1',
      '-client=127.0.0.1',
      `-http-port=${port(n, 0)}`,
      `-serf-lan-port=${port(n, 1)}`,
      `-serf-wan-port=${port(n, 2)}`,
      `-server-port=${port(n, 3)}`,
      '-dns-port=-1',
      '-grpc-port=-1',
      '-grpc-tls-port=-1',
      '-log-level=warn',
      '-disable-host-node-id',
      '-hcl',
      'performance { raft_multiplier = 1 }',
      ...(options.hcl ?? []).flatMap((h) => ['-hcl', h]),
      ...(server ? ['-server', '-bootstrap-expect=3'] : []),
      ...serfLan.filter((_, i) => i !== n),
    ];
    return managedAgent(binary, name, args, `http://127.0.0.1:${port(n, 0)}`, server ? `127.0.0.1:${port(n, 3)}` : undefined, options.log);
  });
  const stopAll = async () => {
    await Promise.all(nodes.map((n) => n.stop()));
    await rm(root, { recursive: true, force: true });
  };
  try {
    await Promise.all(nodes.map((n) => n.start()));
    const servers = nodes.slice(0, 3);
    const client = nodes[3] as ManagedAgent;
    const leader = async (timeoutMs = 30_000): Promise<ConsulNode> => {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        const answers = await Promise.all(
          servers
            .filter((s) => s.running)
            .map((s) =>
              fetch(`${s.address}/v1/status/leader`, { signal: AbortSignal.timeout(1000) })
                .then((r) => r.json() as Promise<string>)
                .catch(() => ''),
            ),
        );
        const found = servers.find((s) => s.rpcAddress === answers[0]);
        if (found?.running && answers.every((a) => a === answers[0])) return found;
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error(`the consul cluster elected no leader within ${timeoutMs} ms`);
    };
    await leader();
    // The client agent has joined and can read through the servers.
    const deadline = Date.now() + 30_000;
    for (;;) {
      const nodesSeen = await fetch(`${client.address}/v1/catalog/nodes`, { signal: AbortSignal.timeout(1000) })
        .then((r) => (r.ok ? (r.json() as Promise<unknown[]>) : []))
        .catch(() => []);
      if (nodesSeen.length === 4) break;
      if (Date.now() > deadline) throw new Error('the consul client agent did not join the cluster within 30 s');
      await new Promise((r) => setTimeout(r, 100));
    }
    return { servers, client, leader, stop: stopAll };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

type ManagedAgent = ConsulNode;

/** A consul process that can be killed and started again with the same arguments. */
function managedAgent(
  binary: string,
  name: string,
  args: string[],
  address: string,
  rpcAddress: string | undefined,
  log: boolean | undefined,
): ManagedAgent {
  let child: ChildProcess | undefined;
  const running = () => child !== undefined && child.exitCode === null && child.signalCode === null;
  return {
    name,
    address,
    rpcAddress,
    get running() {
      return running();
    },
    get pid() {
      return running() ? child?.pid : undefined;
    },
    async stop() {
      const c = child;
      if (!c || !running()) return;
      c.kill('SIGKILL');
      await once(c, 'exit');
    },
    async start() {
      const proc = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      child = proc;
      let output = '';
      const keep = (d: Buffer) => {
        if (log) process.stderr.write(`[${name}] ${d}`);
        output = (output + d).slice(-2000);
      };
      proc.stdout?.on('data', keep);
      proc.stderr?.on('data', keep);
      const failed = new Promise<never>((_, reject) => {
        proc.once('error', (err) => reject(new Error(`consul ${name} could not start (${binary}): ${err.message}`)));
        proc.once('exit', (code) => {
          const message = `consul ${name} exited with ${code}: ${output}`;
          reject(/address already in use/.test(output) ? new PortTakenError(message) : new Error(message));
        });
      });
      failed.catch(() => {});
      const answering = (async () => {
        const deadline = Date.now() + 30_000;
        while (Date.now() < deadline && running()) {
          try {
            const res = await fetch(`${address}/v1/agent/self`, { signal: AbortSignal.timeout(1000) });
            await res.body?.cancel();
            if (res.ok) return;
          } catch {
            // not up yet
          }
          await new Promise((r) => setTimeout(r, 50));
        }
        if (running()) throw new Error(`consul ${name} did not answer at ${address} within 30 s`);
      })();
      await Promise.race([answering, failed]);
    },
  };
}
