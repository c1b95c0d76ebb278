import type { KvStore, Logger, RuleKind } from '@meshlet/core';
import { type TsfRegistration, tsfMetadata } from './tsf-metadata.js';
import { TsfRuleStore } from './tsf-rule-store.js';

/** A Node service as TSF knows it: the one description `tsfMeshOptions` spreads to every place that needs it. */
export interface TsfMeshSetup extends TsfRegistration {
  /** The service name, as registered and as TSF's rules name it. */
  readonly serviceName: string;
  /** Where TSF's console writes its rules: Consul KV (`ConsulKvStore`). */
  readonly kv: KvStore;
  /** Meshlet's rule kinds (`ruleKinds` from `meshlet`), so each converted section is checked on its own. */
  readonly kinds?: readonly RuleKind<unknown>[];
  /** The TSF namespace of a service this process calls. Default: its own. */
  readonly namespaceOf?: (service: string) => string;
  readonly localIp?: string;
  readonly logger?: Logger;
}

/** The `createMesh` options TSF mode sets; spread them and add the rest. */
export interface TsfMeshOptions {
  readonly service: string;
  /** TSF's namespace id: the mesh's namespace, so a signed identity names the same namespace as `tsf-metadata`. */
  readonly namespace: string;
  /** TSF's rules, converted and hot, as the mesh's rule store. */
  readonly rules: TsfRuleStore;
  /** TSF's `TSF_*` registration metadata (plus `zone`/`region`), so TSF route destinations select this instance. */
  readonly metadata: Record<string, string>;
  /** Nearby routing off unless TSF's `affinity/<ns>/data` turns it on, as TSF routes. */
  readonly route: { readonly nearby: { readonly enabled: false } };
  /** Every dialect read; Meshlet's and TSF's written, with `tsf-metadata` naming this instance on every call. */
  readonly dialects: {
    readonly emit: readonly ['meshlet', 'tsf'];
    readonly tsf: {
      readonly identity: {
        readonly serviceName: string;
        readonly namespaceId: string;
        readonly groupId: string;
        readonly applicationId: string;
        readonly applicationVersion?: string;
        readonly instanceId?: string;
        readonly localIp?: string;
      };
    };
  };
}

/**
 * TSF mode in one call: `createMesh({ ...tsfMeshOptions(setup), logger })`. The same
 * identity names the rule keys (`TsfRuleStore`), the registration (`tsfMetadata`) and the
 * `tsf-metadata` header callers' authority and route rules match on, so they cannot
 * disagree. Throws `MESHLET_BAD_OPTION` (as `tsfMetadata` does) for an empty TSF id.
 */
export function tsfMeshOptions(setup: TsfMeshSetup): TsfMeshOptions {
  const metadata = tsfMetadata(setup);
  const identity = {
    serviceName: setup.serviceName,
    namespaceId: setup.namespaceId,
    groupId: setup.groupId,
    applicationId: setup.applicationId,
    ...(setup.progVersion ? { applicationVersion: setup.progVersion } : {}),
    ...(setup.instanceId ? { instanceId: setup.instanceId } : {}),
    ...(setup.localIp ? { localIp: setup.localIp } : {}),
  };
  const rules = new TsfRuleStore({
    kv: setup.kv,
    identity,
    ...(setup.kinds ? { kinds: setup.kinds } : {}),
    ...(setup.namespaceOf ? { namespaceOf: setup.namespaceOf } : {}),
    ...(setup.logger ? { logger: setup.logger } : {}),
  });
  return {
    service: setup.serviceName,
    namespace: setup.namespaceId,
    rules,
    metadata,
    route: { nearby: { enabled: false } },
    dialects: { emit: ['meshlet', 'tsf'], tsf: { identity } },
  };
}
