// Starts the Spring Cloud test peer (test/interop/spring-peer, a plain Spring Boot +
// Spring Cloud Consul app, built on Boot 3 and on Boot 4 from the same sources) against a
// test Consul agent, for the interop tests.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

/** Which build of the peer: the same sources on two Spring lines. */
export type SpringBoot = 'boot3' | 'boot4';

export interface SpringLine {
  readonly boot: SpringBoot;
  /** For test names and reports. */
  readonly label: string;
}

/**
 * The Spring lines every interop suite runs against (a matrix): the versions are the
 * peer's poms' (test/interop/spring-peer/pom.xml and pom-boot4.xml).
 */
export const SPRING_LINES: readonly SpringLine[] = [
  { boot: 'boot3', label: 'Boot 3.5.7 / Spring Cloud 2025.0.0' },
  { boot: 'boot4', label: 'Boot 4.0.7 / Spring Cloud 2025.1.4' },
];

/** Where a prepared jar may be given (scripts/test.mjs sets both), by line. */
const JAR_ENV: Record<SpringBoot, string> = { boot3: 'MESHLET_SPRING_PEER_JAR', boot4: 'MESHLET_SPRING_PEER_BOOT4_JAR' };

export interface SpringPeerOptions {
  /** Which build of the peer. Default `boot3`. */
  readonly boot?: SpringBoot;
  /** The Consul agent, `http://127.0.0.1:<port>`. */
  readonly consulAddress: string;
  /** `spring.application.name`: the service name in Consul. */
  readonly name: string;
  /** `spring.cloud.consul.discovery.instance-id`. */
  readonly instanceId: string;
  /** Default: 0, a free port the web server picks (read back from its log). */
  readonly port?: number;
  /** Consul's instance zone (metadata `zone`) and Spring Cloud LoadBalancer's own zone (zone preference). */
  readonly zone?: string;
  /** Trace headers Spring writes (management.tracing.propagation.produce); it reads W3C, B3 single and B3 multi either way. Default `w3c`. */
  readonly propagation?: 'w3c' | 'b3' | 'b3_multi';
  /** Consul HTTP check interval. Default `1s`, so the instance turns passing soon after start (Consul staggers the first check by up to one interval). */
  readonly healthInterval?: string;
  /** Spring Cloud LoadBalancer's instance cache TTL. Default `1s` (Spring's default is 35 s). */
  readonly loadBalancerCacheTtl?: string;
  /**
   * Heartbeat (TTL) mode (`spring.cloud.consul.discovery.heartbeat.enabled`): a TTL check
   * refreshed by Spring instead of Consul's HTTP check. Default false.
   */
  readonly heartbeat?: boolean;
  /** `spring.cloud.consul.discovery.heartbeat.ttl` (a heartbeat every ttl × 2/3). Default Spring's `30s`. */
  readonly heartbeatTtl?: string;
  /** `spring.cloud.consul.discovery.heartbeat.interval-ratio`: a heartbeat every ttl × this. Spring's default 2/3, its least 0.1. */
  readonly heartbeatIntervalRatio?: number;
  /**
   * `spring.cloud.consul.discovery.query-passing`: whether Spring's DiscoveryClient asks Consul
   * for passing instances only. Default true here (many estates set it); Spring's own default is false.
   */
  readonly queryPassing?: boolean;
  /** More `--name=value` arguments for Spring. */
  readonly args?: readonly string[];
  /** Default 180 s: JVM start on a busy 2-core machine is slow. */
  readonly startTimeoutMs?: number;
}

export interface SpringPeer {
  readonly port: number;
  /** `http://127.0.0.1:<port>` */
  readonly url: string;
  readonly instanceId: string;
  /** The JVM's java.io.tmpdir (Tomcat's base dir is made there); removed once the JVM has exited. */
  readonly tempDir: string;
  /** Everything the app logged so far (stdout and stderr). */
  logs(): string;
  /** SIGTERM: Spring deregisters from Consul and shuts down gracefully. */
  stop(): Promise<void>;
  /** SIGKILL: a crash; the instance stays registered until its Consul check fails. */
  kill(): Promise<void>;
}

const here = dirname(fileURLToPath(import.meta.url));
/** The repository root, from test/interop (sources) or test/dist/interop (compiled). */
const repoRoot = [resolve(here, '../..'), resolve(here, '../../..')].find((d) => existsSync(resolve(d, 'scripts/spring-peer.sh')));

const jarPaths = new Map<SpringBoot, Promise<string>>();

/**
 * The peer's jar for a Spring line: MESHLET_SPRING_PEER_JAR (Boot 3) or
 * MESHLET_SPRING_PEER_BOOT4_JAR (Boot 4), else built (or taken from the cache) by
 * `scripts/spring-peer.sh <boot>`. Fails loudly when Java, Maven or the jar is missing: the
 * interop tests never skip.
 */
export function springPeerJar(boot: SpringBoot = 'boot3'): Promise<string> {
  let jarPath = jarPaths.get(boot);
  if (jarPath) return jarPath;
  jarPath = (async () => {
    const variable = JAR_ENV[boot];
    const given = process.env[variable];
    if (given) {
      if (!existsSync(given)) throw new Error(`${variable}=${given} does not exist: build it with scripts/spring-peer.sh ${boot}`);
      return given;
    }
    if (!repoRoot) throw new Error(`scripts/spring-peer.sh not found: set ${variable} to the spring-peer jar`);
    try {
      // The first build downloads Spring from Maven Central: minutes, not seconds.
      const { stdout } = await promisify(execFile)(resolve(repoRoot, 'scripts/spring-peer.sh'), [boot], {
        cwd: repoRoot,
        timeout: 20 * 60_000,
        maxBuffer: 16 * 1024 * 1024,
      });
      const jar = stdout.trim().split('\n').at(-1) ?? '';
      if (!existsSync(jar)) throw new Error(`scripts/spring-peer.sh ${boot} printed "${jar}", which is not a file`);
      return jar;
    } catch (err) {
      const e = err as Error & { stderr?: string };
      throw new Error(`could not build the Spring peer with scripts/spring-peer.sh ${boot}: ${e.message}\n${e.stderr ?? ''}`);
    }
  })();
  jarPaths.set(boot, jarPath);
  return jarPath;
}

/** Starts the peer and resolves once /actuator/health is UP and Consul reports the instance passing. */
export async function startSpringPeer(options: SpringPeerOptions): Promise<SpringPeer> {
  const jar = await springPeerJar(options.boot);
  const consul = new URL(options.consulAddress);
  // Port 0 by default: Tomcat binds a free port itself and logs it (a port chosen here
  // could be taken by someone else in the seconds the JVM takes to start).
  let port = options.port ?? 0;
  // The JVM's temp dir, removed when it exits: Tomcat makes its base dir and docbase
  // (tomcat.<port>.*, tomcat-docbase.*) there, and left them in /tmp by the thousand.
  const javaTmp = mkdtempSync(join(tmpdir(), 'meshlet-spring-peer-'));
  const args = [
    `-Djava.io.tmpdir=${javaTmp}`,
    // Start-up time over peak speed: the peer serves a handful of test requests.
    '-XX:TieredStopAtLevel=1',
    '-XX:+UseSerialGC',
    '-Xshare:auto',
    '-jar',
    jar,
    `--server.port=${port}`,
    `--peer.name=${options.name}`,
    `--peer.instance-id=${options.instanceId}`,
    `--peer.consul-host=${consul.hostname}`,
    `--peer.consul-port=${consul.port}`,
    `--peer.zone=${options.zone ?? ''}`,
    `--peer.propagation=${options.propagation ?? 'w3c'}`,
    `--peer.health-interval=${options.healthInterval ?? '1s'}`,
    `--peer.lb-cache-ttl=${options.loadBalancerCacheTtl ?? '1s'}`,
    `--peer.heartbeat=${options.heartbeat ?? false}`,
    ...(options.heartbeatTtl ? [`--peer.heartbeat-ttl=${options.heartbeatTtl}`] : []),
    ...(options.heartbeatIntervalRatio === undefined
      ? []
      : [`--spring.cloud.consul.discovery.heartbeat.interval-ratio=${options.heartbeatIntervalRatio}`]),
    `--peer.query-passing=${options.queryPassing ?? true}`,
    ...(options.args ?? []),
  ];
  let child: ChildProcess;
  try {
    child = spawn('java', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    rmSync(javaTmp, { recursive: true, force: true });
    throw new Error(`could not run java: ${(err as Error).message}. Install a JDK 17+ (Debian: openjdk-17-jdk-headless).`);
  }
  // On every way out (stop, kill, a crash, a failed start); 'close' also comes after a
  // spawn that failed ('error' without 'exit'). stop() and kill() wait for it.
  const tmpRemoved = new Promise<void>((done) =>
    child.once('close', () => {
      rmSync(javaTmp, { recursive: true, force: true });
      done();
    }),
  );
  let output = '';
  const keep = (d: Buffer) => {
    output += d.toString();
    // Bounded: a long test keeps the last 4 MB.
    if (output.length > 4 * 1024 * 1024) output = output.slice(-2 * 1024 * 1024);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<never>((_, reject) => {
    child.once('error', (err) =>
      reject(new Error(`could not run java: ${err.message}. Install a JDK 17+ (Debian: openjdk-17-jdk-headless).`)),
    );
    child.once('exit', (code, signal) =>
      reject(new Error(`spring peer ${options.instanceId} exited (${code ?? signal}) before it was ready:\n${output.slice(-4000)}`)),
    );
  });
  exited.catch(() => {});

  const listening = (): string | undefined => {
    if (port === 0) {
      const started = / started on port (\d+)/.exec(output);
      if (started) port = Number(started[1]);
    }
    return port === 0 ? undefined : `http://127.0.0.1:${port}`;
  };
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const done = once(child, 'exit');
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      await done;
      clearTimeout(timer);
    }
    await tmpRemoved;
  };
  const timeoutMs = options.startTimeoutMs ?? 180_000;
  try {
    await Promise.race([waitUntilReady(listening, options, timeoutMs, () => output), exited]);
  } catch (err) {
    await stop();
    throw err;
  }
  const kill = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const done = once(child, 'exit');
      child.kill('SIGKILL');
      await done;
    }
    await tmpRemoved;
  };
  return { port, url: `http://127.0.0.1:${port}`, instanceId: options.instanceId, tempDir: javaTmp, logs: () => output, stop, kill };
}

/**
 * Starts several peers side by side. If any fails to start, the others are stopped before
 * the error is thrown: a JVM left running would keep the test process alive.
 */
export async function startSpringPeers(options: readonly SpringPeerOptions[]): Promise<SpringPeer[]> {
  return settleAll(options.map((o) => startSpringPeer(o)));
}

/**
 * Waits for every start; if one failed, stops the peers that did start and throws the
 * first error.
 */
export async function settleAll<T extends { stop(): Promise<void> }>(starts: readonly Promise<T>[]): Promise<T[]> {
  const settled = await Promise.allSettled(starts);
  const failed = settled.find((r) => r.status === 'rejected');
  if (failed) {
    await Promise.all(settled.map((r) => (r.status === 'fulfilled' ? r.value.stop() : undefined)));
    throw failed.reason;
  }
  return settled.map((r) => (r as PromiseFulfilledResult<T>).value);
}

async function waitUntilReady(
  listening: () => string | undefined,
  options: SpringPeerOptions,
  timeoutMs: number,
  logs: () => string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer yet';
  while (Date.now() < deadline) {
    const url = listening();
    if (url === undefined) {
      last = 'the web server has not logged its port yet';
      await new Promise((r) => setTimeout(r, 250));
      continue;
    }
    try {
      const health = await fetch(`${url}/actuator/health`, { signal: AbortSignal.timeout(2000) });
      const status = ((await health.json()) as { status?: string }).status;
      if (status !== 'UP') last = `/actuator/health is ${status}`;
      else {
        const res = await fetch(`${options.consulAddress}/v1/health/service/${encodeURIComponent(options.name)}?passing=true`, {
          signal: AbortSignal.timeout(2000),
        });
        const entries = (await res.json()) as { Service: { ID: string } }[];
        if (entries.some((e) => e.Service.ID === options.instanceId)) return;
        last = `UP, but ${options.instanceId} is not passing in Consul yet`;
      }
    } catch (err) {
      last = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`spring peer ${options.instanceId} not ready within ${timeoutMs} ms (${last}):\n${logs().slice(-4000)}`);
}
