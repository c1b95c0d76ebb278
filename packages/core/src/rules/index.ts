export {
  type Condition,
  checkRegex,
  comparedValue,
  compileConditions,
  compiledRegex,
  conditionRegex,
  type LinearRegex,
  type Matcher,
  OPERATORS,
  type Operator,
  parseCondition,
  REGEX_MAX_LENGTH,
  REGEX_MAX_PROGRAM,
  regexCost,
  type TagLookup,
} from './condition.js';
export {
  checkRuleDocumentBounds,
  MAX_RULE_DOCUMENT,
  type ParseRuleDocumentOptions,
  parseRuleDocument,
  RULE_DOCUMENT_LIMITS,
  type RuleDocument,
  type RuleKind,
  type RuleKindEntry,
  type RuleKindSchema,
  shippedSchema,
} from './rule-document.js';
export { field, MAX_RULE_REASON_LENGTH, RuleValidationError } from './rule-error.js';
export {
  MAX_AUTHOR_LENGTH,
  MAX_REASON_LENGTH,
  MAX_REPORTED_HISTORY_ENTRIES,
  MAX_RULE_VERSION,
  RULES_HISTORY_PREFIX,
  RuleConflictError,
  type RuleHistory,
  RuleRepository,
  type RuleVersion,
  type SkippedRuleVersion,
} from './rule-repository.js';
export { RULES_PREFIX, type RuleFeed, RuleWatcher, type RuleWatcherStatus } from './rule-watcher.js';
