import { type CommandContext, ConsulRegistryView, type RegistryView, SnapshotRegistryView, UsageError } from '@meshlet/cli';
import { consoleLogger } from '@meshlet/core';
import { startConsole } from './console-server.js';

const str = (ctx: CommandContext, name: string): string | undefined => {
  const v = ctx.values[name];
  return typeof v === 'string' ? v : undefined;
};

/** A repeatable option's values. */
const all = (ctx: CommandContext, name: string): string[] => {
  const v = (ctx.values as Record<string, unknown>)[name];
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
};

/**
 * `meshlet console`: the CLI parses the options and opens the store (its `--dir` /
 * `--consul` / `--token` target); this starts the console on them, prints where it is
 * and the login token, and runs until SIGINT or SIGTERM.
 */
export async function runConsoleCommand(ctx: CommandContext, signal?: AbortSignal): Promise<number> {
  const { kv, description } = ctx.store();
  const env = ctx.io.env;
  const snapshot = str(ctx, 'snapshot');
  const consul = str(ctx, 'consul');
  let registry: RegistryView | undefined;
  if (snapshot !== undefined) registry = new SnapshotRegistryView(snapshot);
  else if (str(ctx, 'dir') === undefined || consul !== undefined) {
    registry = new ConsulRegistryView({
      address: consul ?? env.CONSUL_HTTP_ADDR ?? 'http://127.0.0.1:8500',
      token: str(ctx, 'token') ?? env.CONSUL_HTTP_TOKEN,
    });
  }
  const portText = str(ctx, 'port') ?? '7070';
  if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) throw new UsageError(`--port must be 0-65535 (got ${portText})`);
  const host = str(ctx, 'host') ?? '127.0.0.1';
  const publicOrigins = all(ctx, 'public-origin');
  const running = await startConsole({
    kv,
    storeDescription: description,
    kinds: await ctx.kinds(),
    registry,
    adminToken: str(ctx, 'admin-token') ?? env.MESHLET_ADMIN_TOKEN,
    token: str(ctx, 'console-token') ?? env.MESHLET_CONSOLE_TOKEN,
    host,
    allowedHosts: all(ctx, 'allowed-host'),
    publicOrigins,
    port: Number(portText),
    allowUnknown: ctx.values['allow-unknown'] === true,
    traceLogs: all(ctx, 'trace-log'),
    logger: consoleLogger('info', 'meshlet-console'),
  }).catch((err: unknown) => {
    // A bad --host, --allowed-host, --public-origin or --console-token: the command line is wrong.
    const code = (err as { code?: unknown }).code;
    if (code === 'MESHLET_BAD_OPTION' || code === 'MESHLET_CONSOLE_TOKEN') throw new UsageError((err as Error).message);
    throw err;
  });
  ctx.io.out(`meshlet console: ${running.url}  (rules: ${description}; instances: ${registry?.description ?? 'none'})\n`);
  ctx.io.out(`token: ${running.token}\n`);
  if (host !== '127.0.0.1' && host !== '::1' && host !== 'localhost' && !publicOrigins.some((o) => o.startsWith('https:'))) {
    ctx.io.err('warning: the console listens beyond this machine; put it behind TLS (a reverse proxy) and keep the token secret\n');
  }
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    signal?.addEventListener('abort', stop, { once: true });
  });
  await running.close();
  return 0;
}
