export { runConsoleCommand } from './console-command.js';
export {
  type ConsoleOptions,
  HISTORY_PAGE,
  MAX_ANSWER_ENTRIES,
  MAX_BODY_BYTES,
  MAX_INSTANCE_ENTRIES,
  MAX_INSTANCES_POLLED,
  MAX_SERVICES_LISTED,
  MAX_TOPOLOGY_SERVICES,
  type RunningConsole,
  SHADOW_KINDS,
  STORE_READS_AT_ONCE,
  shadowCounts,
  startConsole,
} from './console-server.js';
export { ConsoleError, CSRF_HEADER, MIN_CONSOLE_TOKEN_LENGTH, SESSION_COOKIE } from './security.js';
export { type LiveSplit, type RuleSplit, ruleSplit, servedRequests, TrafficSplits } from './traffic.js';
