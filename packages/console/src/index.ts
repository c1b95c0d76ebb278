export { runConsoleCommand } from './console-command.js';
export {
  type ConsoleOptions,
  MAX_BODY_BYTES,
  MAX_INSTANCES_POLLED,
  type RunningConsole,
  SHADOW_KINDS,
  shadowCounts,
  startConsole,
} from './console-server.js';
export { ConsoleError, CSRF_HEADER, MIN_CONSOLE_TOKEN_LENGTH, SESSION_COOKIE } from './security.js';
export { type LiveSplit, type RuleSplit, ruleSplit, servedRequests, TrafficSplits } from './traffic.js';
