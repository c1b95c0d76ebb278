import { MeshletError, RuleConflictError, RuleValidationError } from '@meshlet/core';
import { CliError, UsageError } from './cli-error.js';
import type { CliIo } from './cli-io.js';
import { type Command, parseCommand, printJson, stringOption } from './command.js';
import { consoleCommand } from './console-command.js';
import { ExitCode } from './exit-code.js';
import { explain } from './explain-command.js';
import { kvTarget } from './kv-target.js';
import { REGISTRY_COMMANDS } from './registry-commands.js';
import { type RuleKindsSource, ruleKindsLoader } from './rule-kinds.js';
import { RULES_COMMANDS } from './rules-commands.js';

export interface RunCliOptions {
  /**
   * The rule kinds `rules validate|apply` and the console check, or a function that loads
   * them on first use: the `meshlet` bin passes the mesh's one list (`meshlet/rule-kinds`);
   * add your own kinds to it to check their sections. Without it, the commands that check
   * rules fail with MESHLET_CLI_NO_RULE_KINDS; the others run.
   */
  readonly kinds?: RuleKindsSource;
  /** What `meshlet --version` prints: the version of the package whose bin ran (meshlet). */
  readonly version?: string;
}

export const COMMANDS: readonly Command[] = [...RULES_COMMANDS, ...REGISTRY_COMMANDS, explain, consoleCommand];

const EXIT_CODES = `exit codes:
  0 ok   1 failure (unreachable, unreadable)   2 usage   3 conflict (rules changed since read)
  4 invalid rules (nothing written)   5 not found   6 not confirmed (nothing written)`;

function commandLines(commands: readonly Command[]): string {
  const width = Math.max(...commands.map((c) => c.words.join(' ').length));
  return commands.map((c) => `  ${c.words.join(' ').padEnd(width)}  ${c.summary}`).join('\n');
}

/** The usage of a group of commands (`meshlet rules`): its commands, each with its summary. */
function groupUsage(group: string, commands: readonly Command[]): string {
  return `usage: meshlet ${group} <command> [options]   (meshlet ${group} <command> --help for its options)

commands:
${commandLines(commands)}
${EXIT_CODES}
`;
}

function mainUsage(): string {
  return `usage: meshlet <command> [options]   (meshlet <command> --help for its options)

commands:
${commandLines(COMMANDS)}

every command takes --json (output for scripts) and --help; meshlet --version prints the version.
${EXIT_CODES}
`;
}

const commandUsage = (c: Command) => `usage: meshlet ${c.usage}
  --json             output for scripts
  -h, --help         this help
${EXIT_CODES}
`;

/** Finds the command whose words start argv (longest first). */
function findCommand(argv: readonly string[]): { command: Command; rest: readonly string[] } | undefined {
  const sorted = [...COMMANDS].sort((a, b) => b.words.length - a.words.length);
  for (const c of sorted) {
    if (c.words.every((w, i) => argv[i] === w)) return { command: c, rest: argv.slice(c.words.length) };
  }
  return undefined;
}

/**
 * The `meshlet` command as a function: returns the exit code (see ExitCode). Everything
 * it prints goes through `io`, so it runs the same in a test as in a terminal.
 */
export async function runCli(argv: readonly string[], io: CliIo, options: RunCliOptions = {}): Promise<number> {
  const first = argv[0];
  if (first === undefined || first === 'help' || first === '--help' || first === '-h') {
    io.out(mainUsage());
    return first === undefined ? ExitCode.usage : ExitCode.ok;
  }
  if (first === '--version' || first === '-v' || first === 'version') {
    io.out(`${options.version ?? 'unknown'}\n`);
    return ExitCode.ok;
  }
  const found = findCommand(argv);
  if (!found) {
    // A group's word alone (`meshlet rules`, `meshlet rules --help`): the group's commands.
    const group = COMMANDS.filter((c) => c.words.length > 1 && c.words[0] === first);
    const next = argv[1];
    if (group.length > 0 && (next === undefined || next === '--help' || next === '-h')) {
      io.out(groupUsage(first, group));
      return next === undefined ? ExitCode.usage : ExitCode.ok;
    }
    const usage = group.length > 0 ? groupUsage(first, group) : mainUsage();
    io.err(`meshlet: unknown command "${argv.slice(0, 2).join(' ')}"\n\n${usage}`);
    return ExitCode.usage;
  }
  const { command, rest } = found;
  const json = rest.includes('--json');
  try {
    const { values, positionals } = parseCommand(command, rest);
    if (values.help) {
      io.out(commandUsage(command));
      return ExitCode.ok;
    }
    return await command.run({
      io,
      values,
      positionals,
      kinds: ruleKindsLoader(options.kinds),
      store: () =>
        kvTarget(
          { dir: stringOption(values, 'dir'), consul: stringOption(values, 'consul'), token: stringOption(values, 'token') },
          io.env,
        ),
    });
  } catch (err) {
    const code = exitCodeOf(err);
    const message = err instanceof Error ? err.message : String(err);
    if (json) {
      const e = err as { code?: unknown; path?: unknown };
      printJson(io, {
        error: {
          code: typeof e.code === 'string' ? e.code : 'MESHLET_CLI_FAILURE',
          message,
          ...(typeof e.path === 'string' ? { path: e.path } : {}),
        },
      });
    }
    const prefix = err instanceof RuleValidationError ? 'invalid rules: ' : '';
    io.err(`meshlet ${command.words.join(' ')}: ${prefix}${message}\n`);
    if (code === ExitCode.usage) io.err(`\n${commandUsage(command)}`);
    return code;
  }
}

function exitCodeOf(err: unknown): number {
  if (err instanceof CliError) return err.exitCode;
  if (err instanceof UsageError) return ExitCode.usage;
  if (err instanceof RuleValidationError) return ExitCode.invalidRules;
  if (err instanceof RuleConflictError) return ExitCode.conflict;
  if (err instanceof MeshletError && err.code === 'MESHLET_NO_RULE_VERSION') return ExitCode.notFound;
  return ExitCode.failure;
}
