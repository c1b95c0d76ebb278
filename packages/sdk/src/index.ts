export {
  BadTagHeaderError,
  type Caller,
  currentContext,
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
  UnknownServiceError,
  withTags,
} from '@meshlet/core';
export type { Fetch } from './governed-fetch.js';
export type { HeaderTag } from './inbound.js';
export { createMesh, defaultRegistry, type FastifyHookHost, type FastifyPlugin, fetch, type Mesh, type MeshOptions } from './mesh.js';
export { userAgentFamily } from './user-agent.js';
