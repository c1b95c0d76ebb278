import type { Instance } from './instance.js';

export type Unsubscribe = () => void;

/**
 * Service discovery as a port. The embedded default is InMemoryRegistry; @meshlet/registry
 * provides Consul. Watches deliver whole snapshots (never diffs), so a listener that misses
 * one change still ends up right.
 */
export interface Registry {
  register(instance: Instance): Promise<void>;
  deregister(instanceId: string): Promise<void>;
  /** Instances of `service` whose health is passing. */
  healthyInstances(service: string): Promise<readonly Instance[]>;
  /** Names of all services with at least one registered instance. */
  services(): Promise<readonly string[]>;
  /** Calls `listener` with the healthy instances of `service` now and on every change. */
  watch(service: string, listener: (instances: readonly Instance[]) => void): Unsubscribe;
  /** Calls `listener` with the service names now and on every change. */
  watchServices(listener: (services: readonly string[]) => void): Unsubscribe;
}
