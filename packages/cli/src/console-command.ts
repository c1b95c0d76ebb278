import { CliError } from './cli-error.js';
import { type Command, type CommandContext, STORE_OPTIONS, STORE_USAGE } from './command.js';
import { ExitCode } from './exit-code.js';

/** What `meshlet console` loads from @meshlet/console (a separate package: the CLI stays small). */
interface ConsoleModule {
  runConsoleCommand(ctx: CommandContext): Promise<number>;
}

// A variable, not a literal: @meshlet/console depends on this package, so it is resolved
// at run time, and only by this command.
const CONSOLE_PACKAGE = '@meshlet/console';

export const consoleCommand: Command = {
  words: ['console'],
  summary: 'operations in a browser: services, instances, rules with history and rollback, gray release',
  usage: `console [--port N] [--host H] [--allowed-host H] [--public-origin URL] [--console-token T] [--admin-token T] [--snapshot file] [store]
  Serves the console on http://127.0.0.1:7070/ (needs @meshlet/console installed) and prints
  the login token. Instances come from Consul (the store's agent), or --snapshot with --dir.
  --port <N>            default 7070 (0: any free port)
  --host <addr>         default 127.0.0.1; anything else is reachable beyond this machine, and
                        needs --allowed-host or --public-origin
  --allowed-host <h[:port]>  a name the console answers to (the Host header: this machine's name
                        or address as browsers reach it, a proxy's name); repeat for more
  --public-origin <url> the origin a TLS proxy serves the console at (https://console.example.com):
                        logins and changes are accepted from it; repeat for more
  --console-token <t>   the login token (default MESHLET_CONSOLE_TOKEN, else a random one)
  --admin-token <t>     the admin secret the instances were given (default MESHLET_ADMIN_TOKEN;
                        each instance is sent its own token derived from it, never the secret)
  --snapshot <file>     a registry snapshot file to list instances from
  --allow-unknown       store sections no known kind checks
  --trace-log <file>    a trace log for the Explain page (repeat for more)
${STORE_USAGE}`,
  options: {
    ...STORE_OPTIONS,
    port: { type: 'string' },
    host: { type: 'string' },
    'allowed-host': { type: 'string', multiple: true },
    'public-origin': { type: 'string', multiple: true },
    'console-token': { type: 'string' },
    'admin-token': { type: 'string' },
    snapshot: { type: 'string' },
    'allow-unknown': { type: 'boolean' },
    'trace-log': { type: 'string', multiple: true },
  },
  positionals: [0, 0],
  async run(ctx) {
    let mod: ConsoleModule;
    try {
      mod = (await import(CONSOLE_PACKAGE)) as ConsoleModule;
    } catch (err) {
      throw new CliError(
        'MESHLET_CLI_NO_CONSOLE',
        `the console is a separate package: npm install @meshlet/console (${(err as Error).message})`,
        ExitCode.failure,
      );
    }
    return mod.runConsoleCommand(ctx);
  },
};
