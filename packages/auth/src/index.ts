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
} from '@meshlet/core';
export {
  type ApiCatalog,
  type ApiEntry,
  catalogHash,
  createCatalog,
  declaredRoutes,
  declareRoutes,
  MAX_CATALOG_APIS,
  type RouteDeclaration,
  routesFromOpenApi,
} from './api-catalog.js';
export {
  AUTH_ACTIONS,
  type AuthAction,
  type AuthRule,
  type AuthSection,
  authRule,
  authRuleKind,
  IDENTITY_FILTERS,
  type IdentityFilter,
  MAX_AUTH_RULES,
  parseApi,
  parseAuthRule,
  parseAuthSection,
} from './auth-rule.js';
export { Authorize, type CallerSpec, Deny } from './authorize-decorator.js';
export { type AuthDecision, Authorizer, type AuthorizerOptions, type AuthRequest, type AuthStats } from './authorizer.js';
export { CATALOG_PATH, type CatalogAnswer, type CatalogHandlerOptions, catalogAnswers, catalogHandler } from './catalog-handler.js';
export {
  CATALOG_META_KEY,
  CATALOG_PREFIX,
  listCatalogs,
  MAX_CATALOG_VALUE,
  type PublishedCatalog,
  publishCatalog,
  readCatalog,
} from './catalog-store.js';
export { AuthDeniedError, type Forbidden, type ForbiddenBody, forbidden } from './forbidden.js';
export {
  BadMeshKeyError,
  type CallerIdentity,
  checkIdentity,
  DEFAULT_IDENTITY_TTL_MS,
  DEFAULT_MAX_LIFETIME_MS,
  DEFAULT_MAX_SKEW_MS,
  IDENTITY_HEADER,
  IDENTITY_REFUSALS,
  type IdentityCheck,
  type IdentityCounters,
  type IdentityRefusal,
  MAX_IDENTITY_HEADER,
  type MeshKey,
  MIN_KEY_BYTES,
  meshKey,
  meshKeyCheck,
  newIdentityCounters,
  type SignOptions,
  signIdentity,
  type VerifiedIdentity,
  type VerifyOptions,
  verifyIdentity,
} from './identity.js';
export { IdentitySigner, type IdentitySignerOptions } from './identity-signer.js';
export { IdentityVerifier, type IdentityVerifierOptions } from './identity-verifier.js';
export { type LoadCatalogOptions, loadCatalog, OPENAPI_FILE_BOUNDS, openApiFromJsdoc, type SwaggerJsdoc } from './load-catalog.js';
export { bindVerifiedCaller, verifiedCaller } from './verified-caller.js';
