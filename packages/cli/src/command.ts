import { type ParseArgsOptionsConfig, parseArgs } from 'node:util';
import type { KvStore, RuleKind } from '@meshlet/core';
import { UsageError } from './cli-error.js';
import type { CliIo } from './cli-io.js';
import type { CheckedRuleKind } from './rule-kinds.js';

/** Option values as parseArgs gives them. */
export type OptionValues = Record<string, string | boolean | undefined>;

/** What every command runs with. */
export interface CommandContext {
  readonly io: CliIo;
  readonly values: OptionValues;
  readonly positionals: readonly string[];
  /** The rule kinds to check (loaded on first call). */
  readonly kinds: () => Promise<readonly CheckedRuleKind[]>;
  /** Opens the rule store the flags name (only commands that need one call it). */
  readonly store: () => { kv: KvStore; description: string };
}

/** One `meshlet` command: its words, help text, options and what it does. */
export interface Command {
  readonly words: readonly string[];
  readonly summary: string;
  /** The usage lines after `meshlet <words>`, and the description of its options. */
  readonly usage: string;
  readonly options: ParseArgsOptionsConfig;
  /** How many positionals it takes: [min, max]. */
  readonly positionals: readonly [number, number];
  run(ctx: CommandContext): Promise<number>;
}

/** Options every command takes. */
export const COMMON_OPTIONS: ParseArgsOptionsConfig = {
  help: { type: 'boolean', short: 'h' },
  json: { type: 'boolean' },
};

/** Options of commands that read or write the rule store. */
export const STORE_OPTIONS: ParseArgsOptionsConfig = {
  consul: { type: 'string' },
  token: { type: 'string' },
  dir: { type: 'string' },
};

export const STORE_USAGE = `store:
  --consul <url>     Consul agent (default CONSUL_HTTP_ADDR, else http://127.0.0.1:8500)
  --token <token>    Consul ACL token (default CONSUL_HTTP_TOKEN)
  --dir <path>       a local rule directory (core's FileKvStore) instead of Consul`;

export function parseCommand(command: Command, argv: readonly string[]): { values: OptionValues; positionals: string[] } {
  let parsed: { values: OptionValues; positionals: string[] };
  try {
    parsed = parseArgs({ args: [...argv], options: { ...COMMON_OPTIONS, ...command.options }, allowPositionals: true, strict: true }) as {
      values: OptionValues;
      positionals: string[];
    };
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (parsed.values.help) return parsed;
  const [min, max] = command.positionals;
  if (parsed.positionals.length < min) throw new UsageError(`missing argument`);
  if (parsed.positionals.length > max) throw new UsageError(`unexpected argument "${parsed.positionals[max]}"`);
  return parsed;
}

/** A whole number option, or undefined when absent. */
export function integerOption(values: OptionValues, name: string): number | undefined {
  const v = values[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || !/^\d+$/.test(v)) throw new UsageError(`--${name} must be a whole number (got ${JSON.stringify(v)})`);
  return Number(v);
}

export const stringOption = (values: OptionValues, name: string): string | undefined => {
  const v = values[name];
  return typeof v === 'string' ? v : undefined;
};

export function printJson(io: CliIo, value: unknown): void {
  io.out(`${JSON.stringify(value, null, 2)}\n`);
}

export const parserKinds = (kinds: readonly CheckedRuleKind[]): RuleKind<unknown>[] => kinds.map((k) => k.kind);
