import { readFile } from 'node:fs/promises';
import { RuleConflictError, type RuleHistory, RuleRepository, RuleValidationError, type RuleVersion } from '@meshlet/core';
import { type EmptyGroup, emptyGroups, parseRouteSection } from '@meshlet/route';
import { CliError, NotFoundError } from './cli-error.js';
import {
  type Command,
  type CommandContext,
  integerOption,
  parserKinds,
  printJson,
  STORE_OPTIONS,
  STORE_USAGE,
  stringOption,
} from './command.js';
import { ExitCode } from './exit-code.js';
import { ConsulRegistryView, type InstanceReadings } from './registry-view.js';
import { checkRuleDocument } from './rule-check.js';
import { printable, renderTable } from './table.js';
import { canonicalDocument, unifiedDiff } from './text-diff.js';

const CHECK_USAGE = `  --allow-unknown    store sections no known kind checks (default: refuse them, a typo must not pass)
  --skip-schema      check with the parsers only, not the published JSON Schemas`;

const CHECK_OPTIONS = { 'allow-unknown': { type: 'boolean' }, 'skip-schema': { type: 'boolean' } } as const;

async function readRuleFile(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw new CliError('MESHLET_CLI_READ', `${path}: cannot read (${(err as Error).message})`, ExitCode.failure);
  }
}

async function check(ctx: CommandContext, text: string) {
  return checkRuleDocument(text, await ctx.kinds(), {
    allowUnknown: ctx.values['allow-unknown'] === true,
    schemas: ctx.values['skip-schema'] !== true,
  });
}

async function repository(ctx: CommandContext) {
  const { kv, description } = ctx.store();
  const unknownSections = ctx.values['allow-unknown'] === true ? 'keep' : 'refuse';
  return { repo: new RuleRepository({ kv, kinds: parserKinds(await ctx.kinds()), unknownSections }), description };
}

/** Who a change is recorded as: `--author`, MESHLET_AUTHOR, the login name. */
function author(ctx: CommandContext): string {
  const env = ctx.io.env;
  return stringOption(ctx.values, 'author') ?? env.MESHLET_AUTHOR ?? env.USER ?? env.USERNAME ?? 'unknown';
}

const reason = (ctx: CommandContext): { reason?: string } => {
  const r = stringOption(ctx.values, 'reason');
  return r ? { reason: r } : {};
};

/** Asks before writing when a person is there (or `--confirm`), unless `--yes`. */
async function confirmed(ctx: CommandContext, question: string): Promise<boolean> {
  const ask = ctx.values.confirm === true || (ctx.io.interactive && ctx.values.yes !== true);
  if (!ask) return true;
  const answer = await ctx.io.ask(`${question} [y/N] `);
  return answer !== undefined && /^\s*y(es)?\s*$/i.test(answer);
}

const WRITE_OPTIONS = {
  author: { type: 'string' },
  yes: { type: 'boolean', short: 'y' },
  confirm: { type: 'boolean' },
  'dry-run': { type: 'boolean' },
  reason: { type: 'string' },
} as const;

const WRITE_USAGE = `  --author <name>    recorded in history (default MESHLET_AUTHOR, else USER)
  --reason <text>    why, recorded in history
  --dry-run          show the change, write nothing
  -y, --yes          do not ask (asked only when standard input is a terminal)
  --confirm          ask even when standard input is not a terminal`;

/** The versions of a service's history; the entries core skipped as not versions are named on stderr, a few by key. */
async function readHistory(ctx: CommandContext, repo: RuleRepository, service: string): Promise<readonly RuleVersion[]> {
  const history: RuleHistory = await repo.readHistory(service);
  if (history.skipped > 0) {
    const shown = history.skippedEntries.length < history.skipped ? ` (the first ${history.skippedEntries.length})` : '';
    ctx.io.err(
      `warning: ${service}: ${history.skipped} history ${history.skipped === 1 ? 'entry is' : 'entries are'} not a version, skipped (MESHLET_BAD_RULE_HISTORY)${shown}:\n${history.skippedEntries
        .map((e) => `  ${printable(e.key)}: ${e.reason}\n`)
        .join('')}`,
    );
  }
  return history.versions;
}

const versionLabel = (v: RuleVersion) =>
  v.action === 'rollback' ? `rollback to v${v.restored}` : v.action === 'delete' ? 'delete' : 'apply';

/** Which sections a version changed against the one before it: `+route ~breaker -ratelimit`. */
export function changeSummary(before: string | null | undefined, after: string | null): string {
  if (after === null) return 'deleted';
  const a = sections(before);
  const b = sections(after);
  if (b === undefined) return 'changed';
  if (a === undefined) return `created: ${Object.keys(b).join(', ') || '(no sections)'}`;
  const names = [...new Set([...Object.keys(a), ...Object.keys(b)])];
  const parts = names.flatMap((n) => {
    if (!(n in a)) return [`+${n}`];
    if (!(n in b)) return [`-${n}`];
    return JSON.stringify(a[n]) === JSON.stringify(b[n]) ? [] : [`~${n}`];
  });
  return parts.join(' ') || 'no change';
}

function sections(text: string | null | undefined): Record<string, unknown> | undefined {
  if (text === null || text === undefined) return undefined;
  try {
    const { service: _s, ...rest } = JSON.parse(text) as Record<string, unknown>;
    return rest;
  } catch {
    return undefined;
  }
}

export const rulesGet: Command = {
  words: ['rules', 'get'],
  summary: 'print the rule document of a service',
  usage: `rules get <service> [--version N] [--json] [store]
  --version <N>      print version N from the history instead of the one in force
${STORE_USAGE}`,
  options: { ...STORE_OPTIONS, version: { type: 'string' } },
  positionals: [1, 1],
  async run(ctx) {
    const service = ctx.positionals[0] as string;
    const { repo, description } = await repository(ctx);
    const wanted = integerOption(ctx.values, 'version');
    if (wanted !== undefined) {
      const v = (await readHistory(ctx, repo, service)).find((h) => h.version === wanted);
      if (!v) throw new NotFoundError(`${service}: no version ${wanted} in the history (see \`meshlet rules history ${service}\`)`);
      if (ctx.values.json) printJson(ctx.io, v);
      else ctx.io.out(v.document === null ? `(version ${wanted} deleted the rules)\n` : canonicalDocument(v.document));
      return ExitCode.ok;
    }
    const { text, revision } = await repo.current(service);
    if (text === undefined) throw new NotFoundError(`${service}: no rules in ${description}`);
    if (ctx.values.json) printJson(ctx.io, { service, revision, document: parseOrText(text) });
    else ctx.io.out(text.endsWith('\n') ? text : `${text}\n`);
    return ExitCode.ok;
  },
};

const parseOrText = (text: string): unknown => {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
};

export const rulesValidate: Command = {
  words: ['rules', 'validate'],
  summary: 'check rule files offline, as the services would',
  usage: `rules validate <file>... [--json]
  Checks each file with the rule parsers and the JSON Schemas; needs no store.
${CHECK_USAGE}`,
  options: CHECK_OPTIONS,
  positionals: [1, 100],
  async run(ctx) {
    const results: { file: string; ok: boolean; service?: string; sections?: string[]; code?: string; path?: string; error?: string }[] =
      [];
    for (const file of ctx.positionals) {
      try {
        const { document, unchecked } = await check(ctx, await readRuleFile(file));
        results.push({ file, ok: true, service: document.service, sections: [...document.sections.keys()] });
        if (!ctx.values.json) {
          const note = unchecked.length ? ` (unchecked: ${unchecked.join(', ')})` : '';
          ctx.io.out(`ok: ${file}: ${document.service} [${[...document.sections.keys()].join(', ')}]${note}\n`);
        }
      } catch (err) {
        if (!(err instanceof RuleValidationError)) throw err;
        results.push({ file, ok: false, code: err.code, path: err.path, error: err.message });
        if (!ctx.values.json) ctx.io.err(`invalid: ${file}: ${err.message} (${err.code})\n`);
      }
    }
    if (ctx.values.json) printJson(ctx.io, results);
    return results.every((r) => r.ok) ? ExitCode.ok : ExitCode.invalidRules;
  },
};

export const rulesDiff: Command = {
  words: ['rules', 'diff'],
  summary: 'show how a rule file differs from the rules in force',
  usage: `rules diff <file> [--json] [store]
${STORE_USAGE}`,
  options: { ...STORE_OPTIONS, ...CHECK_OPTIONS },
  positionals: [1, 1],
  async run(ctx) {
    const file = ctx.positionals[0] as string;
    const text = await readRuleFile(file);
    const { document } = await check(ctx, text);
    const { repo, description } = await repository(ctx);
    const current = await repo.current(document.service);
    const diff = unifiedDiff(canonicalDocument(current.text), canonicalDocument(text), {
      from: `${document.service} (${description}, revision ${current.revision})`,
      to: file,
    });
    if (ctx.values.json) printJson(ctx.io, { service: document.service, revision: current.revision, changed: diff !== '', diff });
    else ctx.io.out(diff || `no change: ${file} matches the rules of ${document.service}\n`);
    return ExitCode.ok;
  },
};

/** Code of `rules apply`'s warning: a route rule sends traffic to a group no instance serves now. */
export const EMPTY_ROUTE_GROUP_CODE = 'MESHLET_ROUTE_GROUP_EMPTY';

/**
 * Warnings for the groups the document's `route` section (enforced) sends traffic to that no passing
 * instance of its service serves now, read from the registry of the Consul the rules go
 * to. Not a refusal: instances may register after the rules. None when the rules go to a
 * directory (no registry is known) or the registry cannot be read (unreachable, an ACL
 * refusing the query or filtering its answer): the check is a courtesy, never a reason for
 * an apply to fail.
 */
async function emptyGroupWarnings(ctx: CommandContext, service: string, text: string): Promise<string[]> {
  if (stringOption(ctx.values, 'dir') !== undefined) return [];
  let section: ReturnType<typeof parseRouteSection>;
  try {
    const raw = (JSON.parse(text) as { route?: unknown }).route;
    if (raw === undefined) return [];
    section = parseRouteSection(raw);
  } catch {
    return [];
  }
  // A section in shadow mode routes nothing.
  if (section.mode === 'shadow') return [];
  const view = new ConsulRegistryView({
    address: stringOption(ctx.values, 'consul') ?? ctx.io.env.CONSUL_HTTP_ADDR ?? 'http://127.0.0.1:8500',
    token: stringOption(ctx.values, 'token') ?? ctx.io.env.CONSUL_HTTP_TOKEN,
  });
  let readings: InstanceReadings;
  try {
    readings = await view.readings(service);
  } catch {
    return [];
  }
  // What the token sees is not the registry: an empty answer says nothing of the groups.
  if (readings.filteredByAcls) return [];
  // Whether the estate keeps metadata in tags (metadataInTags) is the meshes' setting, not
  // known here: a group is empty only if empty under both readings.
  const key = (g: EmptyGroup) => JSON.stringify([g.rule, g.list, g.group]);
  const emptyWithTags = new Map(emptyGroups(section, readings.metaAndTags).map((g) => [key(g), g]));
  const empty = emptyGroups(section, readings.meta).flatMap((g) => {
    const withTags = emptyWithTags.get(key(g));
    return withTags === undefined ? [] : [{ ...g, registered: Math.max(g.registered, withTags.registered) }];
  });
  return empty.map((g) => {
    const where = g.rule === undefined ? 'the default route' : `route rule "${g.rule}"${g.list === 'fallback' ? ' (its fallback)' : ''}`;
    const now = g.registered === 0 ? 'no instance' : `${g.registered} registered, none passing`;
    return printable(
      `${where} sends traffic to group ${JSON.stringify(g.group)}, which has ${now} of ${service} in ${view.description} now (${EMPTY_ROUTE_GROUP_CODE})`,
    );
  });
}

export const rulesApply: Command = {
  words: ['rules', 'apply'],
  summary: 'check a rule file, show the change, write it with compare-and-set',
  usage: `rules apply <file> [--if-revision N] [--author name] [--dry-run] [--yes] [--json] [store]
  Refuses (exit 3) if the rules change between the read and the write.
  --if-revision <N>  also refuse unless the rules in force are at revision N (as \`rules get --json\` showed)
${WRITE_USAGE}
${CHECK_USAGE}
${STORE_USAGE}`,
  options: { ...STORE_OPTIONS, ...CHECK_OPTIONS, ...WRITE_OPTIONS, 'if-revision': { type: 'string' } },
  positionals: [1, 1],
  async run(ctx) {
    const file = ctx.positionals[0] as string;
    const text = await readRuleFile(file);
    const { document } = await check(ctx, text);
    const service = document.service;
    const { repo, description } = await repository(ctx);
    const current = await repo.current(service);
    const expected = integerOption(ctx.values, 'if-revision');
    if (expected !== undefined && expected !== current.revision) throw new RuleConflictError(service);
    const diff = unifiedDiff(canonicalDocument(current.text), canonicalDocument(text), {
      from: `${service} (${description}, revision ${current.revision})`,
      to: file,
    });
    const json = ctx.values.json === true;
    if (diff === '') {
      if (json) printJson(ctx.io, { service, changed: false, revision: current.revision });
      else ctx.io.out(`no change: ${file} matches the rules of ${service}; nothing written\n`);
      return ExitCode.ok;
    }
    if (!json) ctx.io.out(diff);
    // Told before the question, so whoever confirms has read them.
    const warnings = await emptyGroupWarnings(ctx, service, text);
    for (const w of warnings) ctx.io.err(`warning: ${w}\n`);
    const warned = warnings.length > 0 ? { warnings } : {};
    if (ctx.values['dry-run']) {
      if (json) printJson(ctx.io, { service, changed: true, written: false, diff, ...warned });
      else ctx.io.out('dry run: nothing written\n');
      return ExitCode.ok;
    }
    if (!(await confirmed(ctx, `apply to ${service} in ${description}?`))) {
      ctx.io.err('not applied\n');
      return ExitCode.declined;
    }
    const version = await repo.apply(text, { author: author(ctx), ifRevision: current.revision, ...reason(ctx) });
    const after = await repo.current(service);
    if (json)
      printJson(ctx.io, { service, changed: true, written: true, version: version.version, revision: after.revision, diff, ...warned });
    else ctx.io.out(`applied: ${service} version ${version.version} (revision ${after.revision}) by ${version.author}\n`);
    return ExitCode.ok;
  },
};

export const rulesHistory: Command = {
  words: ['rules', 'history'],
  summary: 'list every accepted change of a service’s rules',
  usage: `rules history <service> [--json] [store]
  The newest version is the one in force. \`rules get <service> --version N\` prints one.
${STORE_USAGE}`,
  options: STORE_OPTIONS,
  positionals: [1, 1],
  async run(ctx) {
    const service = ctx.positionals[0] as string;
    const { repo } = await repository(ctx);
    const [history, current] = await Promise.all([readHistory(ctx, repo, service), repo.current(service)]);
    if (history.length === 0) throw new NotFoundError(`${service}: no rule history`);
    const latest = history.at(-1);
    // Someone wrote the key without the repository (consul kv put, an editor): say so.
    const drifted = latest !== undefined && canonicalDocument(latest.document) !== canonicalDocument(current.text);
    if (ctx.values.json) {
      printJson(ctx.io, {
        service,
        revision: current.revision,
        drifted,
        versions: history.map((v, i) => ({ ...v, change: changeSummary(history[i - 1]?.document, v.document) })),
      });
      return ExitCode.ok;
    }
    const rows = history.map((v, i) => [
      `${v.version}${i === history.length - 1 && !drifted ? '*' : ''}`,
      new Date(v.at)
        .toISOString()
        .replace('T', ' ')
        .replace(/\.\d+Z$/, 'Z'),
      v.author,
      versionLabel(v),
      changeSummary(history[i - 1]?.document, v.document),
    ]);
    ctx.io.out(renderTable(['version', 'when', 'author', 'action', 'change'], rows));
    if (drifted) ctx.io.err(`warning: the rules in force were written outside meshlet and match no version in this history\n`);
    return ExitCode.ok;
  },
};

export const rulesRollback: Command = {
  words: ['rules', 'rollback'],
  summary: 'restore a previous version of a service’s rules (recorded as a new version)',
  usage: `rules rollback <service> [--to N] [--if-revision N] [--author name] [--dry-run] [--yes] [--json] [store]
  Checks the version as \`rules apply\` checks a file (a dry run too), shows the change, and
  refuses (exit 3) if the rules change between the read and the write.
  --to <N>           the version to restore (default: the one before the newest; 0, the
                     default when there is one version: no rules, as before version 1)
  --if-revision <N>  also refuse unless the rules in force are at revision N (as \`rules get --json\` showed)
${WRITE_USAGE}
${CHECK_USAGE}
${STORE_USAGE}`,
  options: { ...STORE_OPTIONS, ...CHECK_OPTIONS, ...WRITE_OPTIONS, to: { type: 'string' }, 'if-revision': { type: 'string' } },
  positionals: [1, 1],
  async run(ctx) {
    const service = ctx.positionals[0] as string;
    const { repo, description } = await repository(ctx);
    // The same choice of version as the repository makes (MESHLET_NO_RULE_VERSION: exit 5).
    const target = repo.rollbackTarget(service, await readHistory(ctx, repo, service), integerOption(ctx.values, 'to'));
    const current = await repo.current(service);
    const expected = integerOption(ctx.values, 'if-revision');
    if (expected !== undefined && expected !== current.revision) throw new RuleConflictError(service);
    // Checked as an apply checks a file, before the dry run: a version the parsers refuse
    // now (an older release's) is refused here (exit 4), not reported as a dry run.
    if (target.document !== null) {
      await check(ctx, target.document);
      repo.validate(target.document, service);
    }
    const restored = target.version === 0 ? 'no rules (version 0, before version 1)' : `version ${target.version}`;
    const diff = unifiedDiff(canonicalDocument(current.text), canonicalDocument(target.document), {
      from: `${service} (${description}, revision ${current.revision})`,
      to: `${service} ${restored}`,
    });
    const json = ctx.values.json === true;
    if (!json) ctx.io.out(diff || `the rules in force already match ${restored}; recording the rollback anyway\n`);
    if (ctx.values['dry-run']) {
      if (json) printJson(ctx.io, { service, to: target.version, written: false, diff });
      else ctx.io.out('dry run: nothing written\n');
      return ExitCode.ok;
    }
    if (!(await confirmed(ctx, `roll ${service} back to ${restored} in ${description}?`))) {
      ctx.io.err('not rolled back\n');
      return ExitCode.declined;
    }
    // Compare-and-set on the revision the diff was shown against: a change made meanwhile
    // (another operator's apply) is refused (exit 3), not silently replaced.
    const version = await repo.rollback(service, {
      author: author(ctx),
      to: target.version,
      ifRevision: current.revision,
      ...reason(ctx),
    });
    if (json) printJson(ctx.io, { service, to: target.version, written: true, version: version.version, diff });
    else ctx.io.out(`rolled back: ${service} version ${version.version} restores ${restored}, by ${version.author}\n`);
    return ExitCode.ok;
  },
};

export const RULES_COMMANDS: readonly Command[] = [rulesGet, rulesValidate, rulesDiff, rulesApply, rulesHistory, rulesRollback];
