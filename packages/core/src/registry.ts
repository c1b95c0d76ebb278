import type { Instance } from './instance.js';

export type Unsubscribe = () => void;

/**
 * What a registry's `watch` calls: the instances of the service whose health is passing,
 * and, from a registry that knows them, the instances it has registered that are not
 * passing (a check warning or critical). With the second list a listener can tell an
 * instance that left the registry (deregistered: gone on purpose) from one that is still
 * registered but failing its check (perhaps only for now: a Consul server that restarts
 * reports most checks critical for a few seconds). A registry that does not give it leaves
 * the two alike; the router then treats every instance that stops passing as failing.
 */
export type InstancesListener = (instances: readonly Instance[], unhealthy?: readonly Instance[]) => void;

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
  /**
   * Calls `listener` with the healthy instances of `service` now and on every change, and
   * with its registered instances that are not passing when the registry knows them
   * (InMemoryRegistry and ConsulRegistry do): see InstancesListener.
   */
  watch(service: string, listener: InstancesListener): Unsubscribe;
  /** Calls `listener` with the service names now and on every change. */
  watchServices(listener: (services: readonly string[]) => void): Unsubscribe;
}
