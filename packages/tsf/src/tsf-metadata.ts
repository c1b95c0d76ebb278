import { MeshletError } from '@meshlet/core';

/**
 * Consul `Meta` keys TSF's SDKs write when they register (polaris-java
 * TsfMetadataConstants, spring-cloud-tencent TsfMetadataPolarisRegistrationCustomizer,
 * tsf-go Metadata()). `TSF_INSTNACE_ID` is misspelt in TSF itself; the spelling is the key.
 */
export const TsfMetaKey = {
  applicationId: 'TSF_APPLICATION_ID',
  progVersion: 'TSF_PROG_VERSION',
  groupId: 'TSF_GROUP_ID',
  namespaceId: 'TSF_NAMESPACE_ID',
  instanceId: 'TSF_INSTNACE_ID',
  region: 'TSF_REGION',
  zone: 'TSF_ZONE',
  sdkVersion: 'TSF_SDK_VERSION',
  /** The endpoint scheme; tsf-go reads `http` when it is absent (naming.Instance.ToKratosInstance). */
  protocol: 'protocol',
} as const;

/** What TSF knows about a deployed instance: its application, deployment group and namespace. */
export interface TsfRegistration {
  readonly applicationId: string;
  readonly groupId: string;
  readonly namespaceId: string;
  /** TSF's program (package) version; route destinations select on it with `TSF_PROG_VERSION`. */
  readonly progVersion?: string;
  readonly instanceId?: string;
  readonly region?: string;
  readonly zone?: string;
  /** Default `http`. */
  readonly protocol?: string;
  /** Written as `TSF_SDK_VERSION`. Default `meshlet`. */
  readonly sdkVersion?: string;
}

/** The SDK version this package reports in `TSF_SDK_VERSION`. */
export const MESHLET_TSF_SDK_VERSION = 'meshlet-0.1.0';

/**
 * Instance metadata that makes a Node instance look like a TSF-registered one, so TSF
 * route destinations (`destItemField: TSF_GROUP_ID`, `TSF_PROG_VERSION`…) select it:
 * `createMesh({ metadata: tsfMetadata({...}) })`. Every TSF key is written, empty when
 * unknown, as TSF's SDKs do; Meshlet's own `zone`/`region` are set beside them so nearby
 * routing reads the same location.
 */
export function tsfMetadata(reg: TsfRegistration): Record<string, string> {
  for (const [name, value] of Object.entries({ applicationId: reg.applicationId, groupId: reg.groupId, namespaceId: reg.namespaceId })) {
    if (typeof value !== 'string' || value.length === 0) {
      throw new MeshletError('MESHLET_BAD_OPTION', `tsfMetadata: ${name} must be the TSF id (e.g. "group-xxxx"), not empty`);
    }
  }
  return {
    [TsfMetaKey.applicationId]: reg.applicationId,
    [TsfMetaKey.progVersion]: reg.progVersion ?? '',
    [TsfMetaKey.groupId]: reg.groupId,
    [TsfMetaKey.namespaceId]: reg.namespaceId,
    [TsfMetaKey.instanceId]: reg.instanceId ?? '',
    [TsfMetaKey.region]: reg.region ?? '',
    [TsfMetaKey.zone]: reg.zone ?? '',
    [TsfMetaKey.sdkVersion]: reg.sdkVersion ?? MESHLET_TSF_SDK_VERSION,
    [TsfMetaKey.protocol]: reg.protocol ?? 'http',
    ...(reg.zone ? { zone: reg.zone } : {}),
    ...(reg.region ? { region: reg.region } : {}),
  };
}
