import type { KvStore } from '@meshlet/core';
import { parse as parseYaml } from 'yaml';
import { type NoticeSink, tsfField } from './tsf-fields.js';
import { tsfRuleKey } from './tsf-keys.js';
import { TsfFieldError, type TsfNotice, TsfRuleError } from './tsf-rule-error.js';

// polaris-java connector-consul lossless/entity/WarmupSetting.
const WARMUP_KEYS = ['enabled', 'warmupTime', 'curvature', 'enabledProtection'];

/** TSF console bounds of `curvature` (WarmupSetting: "1~5"). */
export const TsfWarmupCurvature = { min: 1, max: 5 } as const;
/** Longest `warmupTime` accepted, in seconds: a day. */
export const TSF_WARMUP_MAX_SECONDS = 86_400;

/**
 * The warm-up a TSF deployment group asks for, in the shape of Meshlet's `WarmupOptions`
 * (route's warmup.ts) so it can be passed as `createMesh({ warmup })`.
 */
export interface TsfWarmupOptions {
  /** `warmupTime` s in ms; 0 when `enabled` is false. */
  readonly windowMs: number;
  /** 0: the weight grows as TSF's (uptime / warmupTime)^curvature, from nothing (never below 1). */
  readonly floor: number;
  readonly curvature: number;
}

/**
 * Converts one `WarmupSetting` document. `enabledProtection` (TSF stops warming once half
 * of the instances are warming) has no Meshlet counterpart and is reported when on.
 */
export function convertTsfWarmup(doc: unknown, notice: NoticeSink): TsfWarmupOptions {
  const obj = tsfField.object(doc, '');
  tsfField.reportUnknown(obj, '', WARMUP_KEYS, [], notice);
  const enabled = tsfField.boolean(obj.enabled, 'enabled', false);
  const seconds = tsfField.optionalInteger(obj.warmupTime, 'warmupTime', 0, 0, TSF_WARMUP_MAX_SECONDS);
  const curvature = tsfField.optionalInteger(
    obj.curvature,
    'curvature',
    TsfWarmupCurvature.min,
    TsfWarmupCurvature.min,
    TsfWarmupCurvature.max,
  );
  if (enabled && seconds === 0) throw new TsfFieldError('warmupTime', 'must be above 0 when warm-up is enabled');
  // WarmupSetting defaults enabledProtection to true.
  if (enabled && tsfField.boolean(obj.enabledProtection, 'enabledProtection', true)) {
    notice('enabledProtection', 'warm-up protection (stop warming when half the instances warm) is not applied by Meshlet');
  }
  return { windowMs: enabled ? seconds * 1000 : 0, floor: 0, curvature };
}

/**
 * Reads the warm-up TSF's console set for one deployment group (`warmup/<ns>/<group>/…`).
 * Meshlet's warm-up is a mesh option, read once at start: pass the result as
 * `createMesh({ warmup })`; a later change in TSF applies at the next start. Undefined
 * when the group has no document. A document that cannot be converted throws
 * TsfRuleError naming the key and field (there is no previous value to keep at start).
 */
export async function readTsfWarmup(
  kv: KvStore,
  namespace: string,
  groupId: string,
  onNotice?: (notice: TsfNotice) => void,
): Promise<TsfWarmupOptions | undefined> {
  const prefix = `${tsfRuleKey.warmupPrefix(namespace)}${groupId}/`;
  // LosslessService reads every key under the namespace and takes the group from the
  // third segment; the console writes `warmup/<ns>/<group>/data`.
  const entries = (await kv.list(prefix)).filter((e) => e.value.trim() !== '');
  const entry = entries.find((e) => e.key === tsfRuleKey.warmup(namespace, groupId)) ?? entries[0];
  if (entry === undefined) return undefined;
  let doc: unknown;
  try {
    doc = parseYaml(entry.value, { schema: 'yaml-1.1', prettyErrors: false });
  } catch (err) {
    throw new TsfRuleError(entry.key, '', `not valid YAML: ${(err as Error).message.split('\n')[0]}`);
  }
  try {
    return convertTsfWarmup(doc, (path, message) => onNotice?.({ key: entry.key, path, message }));
  } catch (err) {
    if (err instanceof TsfFieldError) throw new TsfRuleError(entry.key, err.path, err.reason);
    throw err;
  }
}
