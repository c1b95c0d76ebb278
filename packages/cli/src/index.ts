export {
  ADMIN_ANSWER_MAX_BYTES,
  ADMIN_CONCURRENCY,
  ADMIN_META_KEY,
  AdminClient,
  type AdminClientOptions,
  type AdminResult,
  adminStatusUrl,
  type InstanceStatus,
} from './admin-client.js';
export { COMMANDS, type RunCliOptions, runCli } from './cli.js';
export { CliError, NotFoundError, UsageError } from './cli-error.js';
export { type CliIo, processIo } from './cli-io.js';
export type { Command, CommandContext } from './command.js';
export { ExitCode, type ExitCodeValue } from './exit-code.js';
export { type ExplainedHop, explainFromLogs, explainTrace } from './explain-command.js';
export { type KvTarget, type KvTargetOptions, kvTarget } from './kv-target.js';
export { ConsulRegistryView, type InstanceReadings, type LeftOut, type RegistryView, SnapshotRegistryView } from './registry-view.js';
export { type CheckedDocument, type CheckOptions, checkRuleDocument, SCHEMA_UNAVAILABLE } from './rule-check.js';
export { type CheckedRuleKind, NO_RULE_KINDS, type RuleKindsSource } from './rule-kinds.js';
export { Slots } from './slots.js';
export { printable, renderTable } from './table.js';
export { canonicalDocument, type DiffLine, diffLines, unifiedDiff } from './text-diff.js';
