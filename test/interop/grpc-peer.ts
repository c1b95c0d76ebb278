// Starts the grpc-java test peer (test/interop/grpc-peer: grpc-java 1.85 on Netty, no
// Spring, stubs written by hand with MethodDescriptor) against a test Consul agent. It
// registers itself with `Meta.gRPC_port` as grpc-spring does and calls services by name
// through Consul.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

export interface GrpcPeer {
  readonly port: number;
  readonly instanceId: string;
  logs(): string;
  /** SIGTERM: the peer deregisters from Consul and shuts its server down. */
  stop(): Promise<void>;
}

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = [resolve(here, '../..'), resolve(here, '../../..')].find((d) => existsSync(resolve(d, 'scripts/grpc-peer.sh')));

let jarPath: Promise<string> | undefined;

/**
 * The peer's jar: MESHLET_GRPC_PEER_JAR, else built (or taken from the cache) by
 * scripts/grpc-peer.sh. Fails loudly when Java, Maven or the jar is missing.
 */
export function grpcPeerJar(): Promise<string> {
  jarPath ??= (async () => {
    const given = process.env.MESHLET_GRPC_PEER_JAR;
    if (given) {
      if (!existsSync(given)) throw new Error(`MESHLET_GRPC_PEER_JAR=${given} does not exist: build it with scripts/grpc-peer.sh`);
      return given;
    }
    if (!repoRoot) throw new Error('scripts/grpc-peer.sh not found: set MESHLET_GRPC_PEER_JAR to the grpc-peer jar');
    try {
      const { stdout } = await promisify(execFile)(resolve(repoRoot, 'scripts/grpc-peer.sh'), [], {
        cwd: repoRoot,
        timeout: 20 * 60_000,
        maxBuffer: 16 * 1024 * 1024,
      });
      const jar = stdout.trim().split('\n').at(-1) ?? '';
      if (!existsSync(jar)) throw new Error(`scripts/grpc-peer.sh printed "${jar}", which is not a file`);
      return jar;
    } catch (err) {
      const e = err as Error & { stderr?: string };
      throw new Error(`could not build the grpc-java peer with scripts/grpc-peer.sh: ${e.message}\n${e.stderr ?? ''}`);
    }
  })();
  return jarPath;
}

/** Starts the peer; resolves once it listens and Consul reports its instance passing. */
export async function startGrpcPeer(options: { consulAddress: string; name: string; instanceId: string }): Promise<GrpcPeer> {
  const jar = await grpcPeerJar();
  const args = [
    '-XX:TieredStopAtLevel=1',
    '-XX:+UseSerialGC',
    '-jar',
    jar,
    `--consul=${options.consulAddress}`,
    `--name=${options.name}`,
    `--id=${options.instanceId}`,
  ];
  let child: ChildProcess;
  try {
    child = spawn('java', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    throw new Error(`could not run java: ${(err as Error).message}. Install a JDK 17+ (Debian: openjdk-17-jdk-headless).`);
  }
  let output = '';
  const keep = (d: Buffer) => {
    output += d.toString();
    if (output.length > 4 * 1024 * 1024) output = output.slice(-2 * 1024 * 1024);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<never>((_, reject) => {
    child.once('error', (err) => reject(new Error(`could not run java: ${err.message}`)));
    child.once('exit', (code, signal) =>
      reject(new Error(`grpc peer ${options.instanceId} exited (${code ?? signal}) before it was ready:\n${output.slice(-4000)}`)),
    );
  });
  exited.catch(() => {});
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const done = once(child, 'exit');
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    await done;
    clearTimeout(timer);
  };
  const ready = async (): Promise<number> => {
    const deadline = Date.now() + 120_000;
    let last = 'not listening yet';
    while (Date.now() < deadline) {
      const m = /GRPC-PEER LISTENING (\d+)/.exec(output);
      if (m) {
        try {
          const res = await fetch(`${options.consulAddress}/v1/health/service/${options.name}?passing=true`, {
            signal: AbortSignal.timeout(2000),
          });
          const entries = (await res.json()) as { Service: { ID: string } }[];
          if (entries.some((e) => e.Service.ID === options.instanceId)) return Number(m[1]);
          last = 'listening, not passing in Consul yet';
        } catch (err) {
          last = (err as Error).message;
        }
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(`grpc peer ${options.instanceId} not ready (${last}):\n${output.slice(-4000)}`);
  };
  let port: number;
  try {
    port = await Promise.race([ready(), exited]);
  } catch (err) {
    await stop();
    throw err;
  }
  return { port, instanceId: options.instanceId, logs: () => output, stop };
}
