export {
  type Condition,
  checkRegex,
  compileConditions,
  type Matcher,
  OPERATORS,
  type Operator,
  parseCondition,
  REGEX_MAX_LENGTH,
  type TagLookup,
} from './condition.js';
export { MAX_RULE_DOCUMENT, parseRuleDocument, type RuleDocument, type RuleKind } from './rule-document.js';
export { field, RuleValidationError } from './rule-error.js';
export { RULES_HISTORY_PREFIX, RuleConflictError, RuleRepository, type RuleVersion } from './rule-repository.js';
export { RULES_PREFIX, RuleWatcher, type RuleWatcherStatus } from './rule-watcher.js';
