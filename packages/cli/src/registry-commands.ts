import { type Instance, MetaKey } from '@meshlet/core';
import { AdminClient, type AdminResult, type InstanceStatus } from './admin-client.js';
import { NotFoundError, UsageError } from './cli-error.js';
import { type Command, type CommandContext, integerOption, printJson, stringOption } from './command.js';
import { ExitCode } from './exit-code.js';
import { ConsulRegistryView, type RegistryView, SnapshotRegistryView } from './registry-view.js';
import { renderTable } from './table.js';

const REGISTRY_OPTIONS = {
  consul: { type: 'string' },
  token: { type: 'string' },
  snapshot: { type: 'string' },
} as const;

const REGISTRY_USAGE = `registry:
  --consul <url>     Consul agent (default CONSUL_HTTP_ADDR, else http://127.0.0.1:8500)
  --token <token>    Consul ACL token (default CONSUL_HTTP_TOKEN)
  --snapshot <file>  a registry snapshot file (ConsulRegistry's snapshotFile) instead of Consul`;

/** The registry a command reads; entries routing cannot call are left out, and said so on standard error. */
function registryView(ctx: CommandContext): RegistryView {
  const { values, io } = ctx;
  const leftOut = (line: string) => io.err(`meshlet: ${line}\n`);
  const snapshot = stringOption(values, 'snapshot');
  if (snapshot !== undefined) return new SnapshotRegistryView(snapshot, { leftOut });
  return new ConsulRegistryView({
    address: stringOption(values, 'consul') ?? io.env.CONSUL_HTTP_ADDR ?? 'http://127.0.0.1:8500',
    token: stringOption(values, 'token') ?? io.env.CONSUL_HTTP_TOKEN,
    leftOut,
  });
}

export const services: Command = {
  words: ['services'],
  summary: 'list the services in the registry',
  usage: `services [--json] [registry]
${REGISTRY_USAGE}`,
  options: REGISTRY_OPTIONS,
  positionals: [0, 0],
  async run(ctx) {
    const view = registryView(ctx);
    const names = await view.services();
    const rows = await Promise.all(
      names.map(async (name) => {
        const all = await view.instances(name);
        const versions = [...new Set(all.map((i) => i.metadata[MetaKey.version] ?? '-'))].sort();
        return { service: name, instances: all.length, passing: all.filter((i) => i.health === 'passing').length, versions };
      }),
    );
    if (ctx.values.json) printJson(ctx.io, rows);
    else
      ctx.io.out(
        renderTable(
          ['service', 'instances', 'passing', 'versions'],
          rows.map((r) => [r.service, String(r.instances), String(r.passing), r.versions.join(', ')]),
        ),
      );
    return ExitCode.ok;
  },
};

export const instances: Command = {
  words: ['instances'],
  summary: 'list the instances of a service, with breaker, limiter and rules state from their admin endpoints',
  usage: `instances <service> [--admin-token T] [--json] [registry]
  Each instance's admin endpoint (metadata "meshlet-admin") is asked for its status, 16 at a
  time, with its own token derived from the admin secret (the secret is never sent).
  --admin-token <t>  the admin secret the instances were given (default MESHLET_ADMIN_TOKEN)
  --admin-path <p>   admin path for instances that do not advertise one
  --admin-timeout <ms>  per instance (default 2000)
${REGISTRY_USAGE}`,
  options: {
    ...REGISTRY_OPTIONS,
    'admin-token': { type: 'string' },
    'admin-path': { type: 'string' },
    'admin-timeout': { type: 'string' },
  },
  positionals: [1, 1],
  async run(ctx) {
    const service = ctx.positionals[0] as string;
    // The options first: a bad one is a usage error before any registry is asked.
    const timeoutMs = integerOption(ctx.values, 'admin-timeout') ?? 2000;
    if (timeoutMs < 1 || timeoutMs > 2_147_483_647) throw new UsageError('--admin-timeout must be from 1 to 2147483647 ms');
    const client = new AdminClient({
      token: stringOption(ctx.values, 'admin-token') ?? ctx.io.env.MESHLET_ADMIN_TOKEN,
      defaultPath: stringOption(ctx.values, 'admin-path'),
      timeoutMs,
    });
    const view = registryView(ctx);
    const list = await view.instances(service);
    if (list.length === 0) throw new NotFoundError(`${service}: no instances in ${view.description}`);
    const admin = await Promise.all(list.map((i) => client.status(i)));
    if (ctx.values.json) {
      printJson(
        ctx.io,
        list.map((instance, k) => ({ instance, admin: admin[k] })),
      );
      return ExitCode.ok;
    }
    // The outbound column only when an instance has per-destination adaptive limits on.
    const outbound = admin.some((a) => a.ok && Array.isArray(a.status.outboundAdaptive) && a.status.outboundAdaptive.length > 0);
    ctx.io.out(
      renderTable(
        [
          'id',
          'address',
          'zone',
          'version',
          'lane',
          'health',
          'admin',
          'rules',
          'breakers',
          'limiter',
          ...(outbound ? ['outbound limits'] : []),
        ],
        list.map((i, k) => {
          const a = admin[k] as AdminResult;
          const row = instanceRow(i, a);
          return outbound ? [...row, a.ok ? outboundCell(a.status) : '-'] : row;
        }),
      ),
    );
    return ExitCode.ok;
  },
};

function instanceRow(i: Instance, admin: AdminResult): string[] {
  const m = i.metadata;
  const base = [i.id, `${i.address}:${i.port}`, m[MetaKey.zone] ?? '-', m[MetaKey.version] ?? '-', m[MetaKey.lane] ?? '-', i.health];
  if (!admin.ok) return [...base, admin.reason, '-', '-', '-'];
  return [...base, degradedCell(admin.status), rulesCell(admin.status), breakersCell(admin.status), limiterCell(admin.status)];
}

function degradedCell(s: InstanceStatus): string {
  const flags = Object.entries(s.degraded ?? {})
    .filter(([, on]) => on)
    .map(([k]) => k);
  return flags.length ? `degraded: ${flags.join(',')}` : 'ok';
}

function rulesCell(s: InstanceStatus): string {
  const rules = s.rules ?? [];
  if (rules.length === 0) return '-';
  return rules.map((r) => `${r.service}@${r.revision}${r.lastError ? ` (rejected: ${r.lastError.path})` : ''}`).join(' ');
}

/** Breakers not closed, by name; all closed shows how many there are. */
export function breakersCell(s: InstanceStatus): string {
  const breakers = s.breakers ?? [];
  if (breakers.length === 0) return '-';
  const notClosed = breakers.filter((b) => b.state !== 'closed');
  if (notClosed.length === 0) return `closed (${breakers.length})`;
  return notClosed
    .map((b) => {
      const id = b.breaker;
      const name = id.level === 'instance' ? `${id.service}[${id.instance}]` : id.level === 'api' ? `${id.service} ${id.api}` : id.service;
      return `${name} ${b.state}`;
    })
    .join(', ');
}

function limiterCell(s: InstanceStatus): string {
  const l = s.limiter;
  if (!l) return '-';
  const a = l.adaptive;
  const adaptive = a ? `, adaptive limit ${a.limit}${a.mode === 'probe' ? ' (probing)' : ''}, ${a.inFlight} in flight` : '';
  return `${l.allowed} allowed, ${l.refused} refused${l.degraded ? ', degraded' : ''}${adaptive}`;
}

/** Each destination's adaptive limit: `orders limit 12, 3 in flight, 40 refused`. */
export function outboundCell(s: InstanceStatus): string {
  const list = Array.isArray(s.outboundAdaptive) ? s.outboundAdaptive : [];
  if (list.length === 0) return '-';
  return list
    .map((o) => `${o.service} limit ${o.limit}${o.mode === 'probe' ? ' (probing)' : ''}, ${o.inFlight} in flight, ${o.refused} refused`)
    .join('; ');
}

export const topology: Command = {
  words: ['topology'],
  summary: 'the service dependency graph of trace logs (from @meshlet/trace)',
  usage: `topology <trace-log>... [--format table|mermaid|svg] [--out <file>]
  Reads OTLP JSON Lines trace logs and prints calls, errors, p50 and p99 per edge.`,
  options: { format: { type: 'string', short: 'f' }, out: { type: 'string', short: 'o' } },
  positionals: [1, 1000],
  run: async (ctx: CommandContext) => {
    const argv = [...ctx.positionals];
    for (const name of ['format', 'out'] as const) {
      const v = stringOption(ctx.values, name);
      if (v !== undefined) argv.push(`--${name}`, v);
    }
    // Loaded here: tracing brings OpenTelemetry, which the other commands need not load.
    const { topologyCommand } = await import('@meshlet/trace');
    return topologyCommand(argv, ctx.io.out);
  },
};

export const REGISTRY_COMMANDS: readonly Command[] = [services, instances, topology];
