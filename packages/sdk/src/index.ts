// One import: the decorators and the errors an app catches, from the packages that own them.
export { AuthDeniedError, Authorize, BadMeshKeyError, type CallerSpec, Deny, type MeshKey, meshKey } from '@meshlet/auth';
export {
  type AsyncMethodDecorator,
  CircuitBreaker,
  type CircuitBreakerOptions,
  CircuitOpenError,
  Retry,
  type RetryOptions,
  Timeout,
  TimeoutError,
  type TimeoutOptions,
} from '@meshlet/breaker';
export {
  adminEndpoint,
  adminToken,
  BadDecoratorError,
  BadTagHeaderError,
  type Caller,
  currentContext,
  DeadlineExceededError,
  getTag,
  InMemoryKvStore,
  InMemoryRegistry,
  type Instance,
  type KvStore,
  type Logger,
  type MeshContext,
  MeshletError,
  MetaKey,
  NoInstanceError,
  NoMeshError,
  type Registry,
  SystemTag,
  setTag,
  TAG_HEADER,
  TooManyDestinationsError,
  UnknownServiceError,
  withTags,
} from '@meshlet/core';
export { setScopedTag, type TagScope } from '@meshlet/propagation';
export { BulkheadFullError, OutboundLimitError, RateLimit, RateLimitedError, type RateLimitOptions } from '@meshlet/ratelimit';
export { Traced, type TracedOptions } from '@meshlet/trace';
export {
  ADMIN_META_KEY,
  type AdminHandler,
  type AdminHandlerOptions,
  type AdminStatus,
  AdminTokenError,
  createAdminHandler,
  publicStatus,
} from './admin-handler.js';
export { DEFAULT_DESTINATION_IDLE_MS, DEFAULT_MAX_DESTINATIONS } from './destinations.js';
export { type GotHooks, type GotRequestOptions, type GotResponseLike, gotHooks } from './got.js';
export { type GovernedAnswer, governedErrorAnswer } from './governed-error.js';
export { type Fetch, HELD_BODY_BYTES } from './governed-fetch.js';
export type { MeshRequest, RequestOptions, ResponseData } from './governed-request.js';
export type { GrpcClientConstructor, MeshGrpc } from './grpc.js';
export { followIdentityKeys, IDENTITY_KEYS_PREFIX, type KeyConfig, meshKeysFromConfig } from './identity-keys.js';
export type { HeaderTag, TagHeaderTrust } from './inbound.js';
export { type KoaContextLike, type KoaMiddleware, koaMiddleware } from './koa.js';
export type { ServeOptions } from './lifecycle.js';
export { createMesh, defaultRegistry, defaultRuleStore, fetch, ruleKinds } from './mesh.js';
export { type ConfiguredMesh, createMeshFromConfig, type MeshFromConfigOptions, meshOptionsOf } from './mesh-from-config.js';
export type { FastifyHookHost, FastifyPlugin, FastifyReplyLike, Mesh, MeshOptions, RequestHead } from './mesh-options.js';
export { MAX_REDIRECTS, RedirectRefusedError } from './redirects.js';
export { userAgentFamily } from './user-agent.js';
