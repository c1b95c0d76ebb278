import { type ChildProcess, spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
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
