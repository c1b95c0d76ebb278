import type { Health, Instance } from './instance.js';
import type { InstancesListener, Registry, Unsubscribe } from './registry.js';

/**
 * The embedded registry: every mesh in the process that shares one instance sees the
 * same services. Listeners are called synchronously, so tests observe changes at once,
 * with the passing instances and the registered ones that are not (see InstancesListener).
 */
export class InMemoryRegistry implements Registry {
  readonly #instances = new Map<string, Instance>();
  readonly #watchers = new Map<string, Set<InstancesListener>>();
  readonly #serviceWatchers = new Set<(services: readonly string[]) => void>();

  async register(instance: Instance): Promise<void> {
    const before = this.#serviceNames();
    this.#instances.set(instance.id, instance);
    this.#changed(instance.service, before);
  }

  async deregister(instanceId: string): Promise<void> {
    const instance = this.#instances.get(instanceId);
    if (!instance) return;
    const before = this.#serviceNames();
    this.#instances.delete(instanceId);
    this.#changed(instance.service, before);
  }

  /** Changes the health of a registered instance, as a failing health check would. */
  setHealth(instanceId: string, health: Health): void {
    const instance = this.#instances.get(instanceId);
    if (!instance || instance.health === health) return;
    this.#instances.set(instanceId, { ...instance, health });
    this.#changed(instance.service, undefined);
  }

  async healthyInstances(service: string): Promise<readonly Instance[]> {
    return this.#healthy(service);
  }

  async services(): Promise<readonly string[]> {
    return this.#serviceNames();
  }

  watch(service: string, listener: InstancesListener): Unsubscribe {
    const set = this.#watchers.get(service) ?? new Set();
    this.#watchers.set(service, set);
    set.add(listener);
    listener(this.#healthy(service), this.#unhealthy(service));
    return () => set.delete(listener);
  }

  watchServices(listener: (services: readonly string[]) => void): Unsubscribe {
    this.#serviceWatchers.add(listener);
    listener(this.#serviceNames());
    return () => this.#serviceWatchers.delete(listener);
  }

  #healthy(service: string): readonly Instance[] {
    const out: Instance[] = [];
    for (const i of this.#instances.values()) if (i.service === service && i.health === 'passing') out.push(i);
    return Object.freeze(out);
  }

  #unhealthy(service: string): readonly Instance[] {
    const out: Instance[] = [];
    for (const i of this.#instances.values()) if (i.service === service && i.health !== 'passing') out.push(i);
    return Object.freeze(out);
  }

  #serviceNames(): readonly string[] {
    return Object.freeze([...new Set([...this.#instances.values()].map((i) => i.service))].sort());
  }

  #changed(service: string, servicesBefore: readonly string[] | undefined): void {
    const watchers = this.#watchers.get(service);
    if (watchers) {
      const healthy = this.#healthy(service);
      const unhealthy = this.#unhealthy(service);
      for (const w of [...watchers]) w(healthy, unhealthy);
    }
    if (servicesBefore) {
      const after = this.#serviceNames();
      if (after.join('\n') !== servicesBefore.join('\n')) for (const w of [...this.#serviceWatchers]) w(after);
    }
  }
}
