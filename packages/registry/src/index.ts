export { BlockingWatch, type BlockingWatchOptions } from './blocking-watch.js';
export {
  CONSUL_MAX_BODY_BYTES,
  type ConsulAnswerShape,
  ConsulAnswerTooLargeError,
  ConsulBadAnswerError,
  ConsulClient,
  type ConsulClientOptions,
  ConsulError,
  type ConsulResponse,
  type ConsulTlsOptions,
} from './consul-client.js';
export { ConsulKvStore, type ConsulKvStoreOptions } from './consul-kv-store.js';
export { ConsulMetaLimits, checkConsulMeta, InvalidMetadataError } from './consul-meta.js';
export {
  ConsulRegistry,
  type ConsulRegistryOptions,
  type ConsulRegistryStatus,
  callableInstances,
  type HealthCheck,
  type HealthEntry,
  instanceFromHealthEntry,
  instanceProblem,
  parseDuration,
  REGISTRY_SNAPSHOT_MAX_BYTES,
  readSnapshotFile,
  type SnapshotContent,
  type SnapshotRead,
  snapshotServices,
} from './consul-registry.js';
