export { formDecode, formEncode } from './form-encoding.js';
export { meshletDialect, ONCE_TAG_HEADER } from './meshlet-dialect.js';
export {
  POLARIS_LANE_KEY,
  POLARIS_TRANSITIVE_PREFIX,
  type PolarisDialectOptions,
  polarisDialect,
  SCT_TRANSITIVE_PREFIX,
} from './polaris-dialect.js';
export { checkPropagationOptions, DIALECT_NAMES, PROPAGATION_BOUNDS } from './propagation-options.js';
export { attachRequestTags, type RequestTags, requestTagsOf, setScopedTag } from './request-tags.js';
export { SCT_DISPOSABLE_HEADER, SCT_METADATA_HEADER, sctDialect } from './sct-dialect.js';
export type {
  DialectDroppedTag,
  DialectDropReason,
  DialectEmit,
  DialectExtract,
  DialectName,
  HeaderBag,
  HeaderWarning,
  ScopeLookup,
  TagDialect,
} from './tag-dialect.js';
export {
  DEFAULT_ACCEPT,
  type InboundTags,
  type OutboundHeaders,
  TagPropagation,
  type TagPropagationOptions,
} from './tag-propagation.js';
export { TAG_SCOPES, type TagScope, TagScopes } from './tag-scope.js';
export {
  TSF_METADATA_HEADER,
  TSF_TAGS_HEADER,
  TSF_TRANSITIVE_FLAG,
  type TsfDialectOptions,
  type TsfIdentity,
  TsfSystemTag,
  tsfDialect,
  verifiedSourceTags,
} from './tsf-dialect.js';
