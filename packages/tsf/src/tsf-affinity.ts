import { type NoticeSink, tsfField } from './tsf-fields.js';
import { TsfFieldError } from './tsf-rule-error.js';

// polaris-java connector-consul router/entity/RouteAffinity: {namespaceId, affinity}.
const AFFINITY_KEYS = ['namespaceId', 'affinity'];
const AFFINITY_IGNORED = ['appId', 'createTime', 'updateTime'];

/**
 * Converts TSF's nearby-affinity document (`affinity/<ns>/data`: `{namespaceId, affinity}`)
 * into the `nearby` part of a Meshlet `route` section. TSF's switch is per namespace;
 * polaris-java turns it into nearby routing from the zone up to every instance
 * (matchLevel ZONE, maxMatchLevel ALL), which is what Meshlet's nearby routing does (zone,
 * then region, then all). TSF has no healthy-share threshold: Meshlet's default applies.
 */
export function convertTsfAffinity(doc: unknown, namespace: string, notice: NoticeSink): Record<string, unknown> {
  const obj = tsfField.object(doc, '');
  tsfField.reportUnknown(obj, '', AFFINITY_KEYS, AFFINITY_IGNORED, notice);
  const ns = tsfField.optionalText(obj.namespaceId, 'namespaceId');
  if (ns !== undefined && ns !== namespace) throw new TsfFieldError('namespaceId', `is "${ns}", but the key is for "${namespace}"`);
  // SnakeYAML leaves an absent Boolean null; polaris-java then fails to enable the rule, so absent is off.
  const enabled = tsfField.boolean(obj.affinity, 'affinity', false);
  return { nearby: { enabled } };
}
