export { ADMIN_META_KEY, type AdminEndpoint, adminEndpoint, adminToken } from './admin-endpoint.js';
export {
  type Attempt,
  type AttemptChain,
  type AttemptFields,
  type AttemptHandler,
  type AttemptHeaders,
  type AttemptInterceptor,
  type AttemptObserver,
  type AttemptResult,
  type AttemptStage,
  type AttemptTarget,
  aroundObserver,
  type BreakerStateName,
  chainAttempt,
  composeAttempt,
  MAX_NAMED_IDS,
  namedIds,
  newAttempt,
  noteAttempt,
  type ObserverErrorHandler,
  type OutboundCall,
  originOf,
  refusedInstanceAttributes,
  sendAttempt,
  sendSettled,
  shadowOf,
} from './attempt.js';
export { BodyTooLargeError, readBoundedBody } from './bounded-body.js';
export { readBoundedFile } from './bounded-file.js';
export { type CancelTimer, type Clock, ManualClock, sleep, systemClock, type TimerOptions } from './clock.js';
export {
  attachExtension,
  type Caller,
  type ContextExtension,
  type ContextInit,
  createContext,
  currentContext,
  extensionOf,
  getTag,
  type MeshContext,
  type RequestInfo,
  runWithContext,
  setTag,
  systemTags,
  type TraceHeaders,
  withTags,
} from './context.js';
export { DeadlineExceededError, inboundDeadline, keepInboundDeadline } from './deadline.js';
export { BadTagHeaderError, MeshletError, NoInstanceError, NoMeshError, TooManyDestinationsError, UnknownServiceError } from './errors.js';
export {
  FILE_KV_LOCK_RETRIES,
  FILE_KV_LOCK_RETRY_MS,
  FILE_KV_STALE_LOCK_MS,
  FILE_KV_STALE_LOCK_WATCH_MS,
  FileKvLockedError,
  FileKvStore,
  type FileKvStoreOptions,
} from './file-kv-store.js';
export { grpcMetadataProblem, PRINTABLE_ASCII } from './grpc-metadata.js';
export {
  type Health,
  type Instance,
  instanceAddressProblem,
  instanceOrigin,
  instancePortProblem,
  MetaKey,
  SERVICE_NAME,
  serviceNameProblem,
  urlHost,
} from './instance.js';
export { type InstanceExclusion, noExclusion } from './instance-exclusion.js';
export type { KvEntry, KvStore, KvWrite, PutOptions } from './kv-store.js';
export { callListener, failureReason } from './listener-call.js';
export {
  AdoptableLogger,
  type AdoptsLogger,
  adoptsLogger,
  atLevel,
  consoleLogger,
  LOG_LEVELS,
  type LogFields,
  type Logger,
  type LogLevel,
  MemoryLogger,
  silentLogger,
} from './logger.js';
export { InMemoryKvStore } from './memory-kv-store.js';
export { InMemoryRegistry } from './memory-registry.js';
export {
  type AnyMethod,
  type AsyncMethod,
  type AsyncMethodDecorator,
  BadDecoratorError,
  isAsyncMethod,
  type MethodDecorator,
  methodDecorator,
} from './method-decorator.js';
export { BROKEN_ERROR_CODES, NETWORK_ERROR_CODES, NOT_SENT_ERROR_CODES } from './network-errors.js';
export { NEWEST_LIVE_MAX, NewestLive } from './newest-live.js';
export {
  badOption,
  decimalNumber,
  hasControlCharacter,
  isHeaderName,
  isHeaderValue,
  onlyOptionKeys,
  optionObject,
  shownValue,
  wholeNumber,
  wholeNumberOption,
  withMethods,
} from './option-checks.js';
export {
  type ApiMatch,
  ApiMatcher,
  type ApiTemplate,
  apiKey,
  HTTP_METHODS,
  MAX_TEMPLATE_LENGTH,
  normalizeTemplate,
  PathTemplate,
  PathTemplateError,
  pathTemplateProblem,
  splitPath,
} from './path-template.js';
export { PEM_FILE_MAX_BYTES, readPemFile } from './pem-file.js';
export { type RandomSource, seededRandom } from './random.js';
export type { InstancesListener, Registry, Unsubscribe } from './registry.js';
export { canonicalPath, foldCase, foldPath, pathTagValue, REQUEST_PATH_MAX_LENGTH, requestPath } from './request-path.js';
export * from './rules/index.js';
export { CALLER_HEADER, type DecodedTags, decodeTagPairs, decodeTags, type EncodedTags, encodeTags, TAG_HEADER } from './tag-header.js';
export { checkTag, type DroppedTag, putTag, SystemTag, type SystemTagName, type TagDropReason, TagLimits } from './tags.js';
export {
  DEFAULT_LOG_INTERVAL_MS,
  PER_REQUEST_CODES,
  type ThrottledLogger,
  type ThrottledLoggerOptions,
  throttledLogger,
} from './throttled-logger.js';
export { keptTraceContext, MAX_TRACESTATE_CHARS, validTraceparent } from './trace-headers.js';
