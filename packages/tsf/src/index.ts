export { convertTsfAffinity } from './tsf-affinity.js';
export { convertTsfAuthority, TSF_AUTH_RULE_DISABLED, TsfAuthType } from './tsf-authority.js';
export {
  convertTsfBreaker,
  TSF_BREAKER_FAILURE_STATUSES,
  TSF_BREAKER_PROBES,
  TsfBreakerBounds,
  TsfBreakerDefaults,
} from './tsf-breaker.js';
export { convertTsfFault, TsfFaultBounds } from './tsf-fault.js';
export type { NoticeSink } from './tsf-fields.js';
export { tsfRuleKey } from './tsf-keys.js';
export {
  convertTsfLaneInfo,
  convertTsfLaneRule,
  TSF_LANE_GROUP_DELETED,
  type TsfLane,
  type TsfLaneGroup,
  type TsfLaneKeyStatus,
  TsfLaneLimits,
  type TsfLaneRule,
  TsfLanes,
  tsfLaneMetadata,
} from './tsf-lanes.js';
export { type TsfMeshOptions, type TsfMeshSetup, tsfMeshOptions } from './tsf-mesh-options.js';
export { MESHLET_TSF_SDK_VERSION, TsfMetaKey, type TsfRegistration, tsfMetadata } from './tsf-metadata.js';
export { convertTsfRateLimit, TSF_DEFAULT_CONDITION_MODEL, TSF_DEFAULT_LIMIT_MODE } from './tsf-ratelimit.js';
export { convertTsfRoute, TSF_ROUTE_WEIGHT_TOTAL } from './tsf-route.js';
export { TsfFieldError, type TsfNotice, TsfRuleError } from './tsf-rule-error.js';
export { type TsfKeyStatus, TsfReadOnlyError, TsfRuleStore, type TsfRuleStoreOptions } from './tsf-rule-store.js';
export {
  type ConvertedTags,
  convertTagList,
  coreCondition,
  type RuleSide,
  TSF_OPERATORS,
  TSF_TAG_TYPES,
  TsfCallTag,
  type TsfLocalIdentity,
  type TsfOperator,
  TsfSystemField,
} from './tsf-tag-condition.js';
export { convertTsfWarmup, readTsfWarmup, TSF_WARMUP_MAX_SECONDS, TsfWarmupCurvature, type TsfWarmupOptions } from './tsf-warmup.js';
