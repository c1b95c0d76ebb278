import { hasControlCharacter, shownValue } from '@meshlet/core';

/** The resource attributes a Tracing sets from its own options: the service's identity, never given. */
export const OWN_RESOURCE_KEYS: readonly string[] = ['service.name', 'service.version', 'service.namespace', 'service.instance.id'];

/** Resource attributes given besides the service's: how many, a key's and a string value's characters, and all in all. */
export const RESOURCE_ATTRIBUTE_BOUNDS = Object.freeze({ attributes: 64, keyChars: 255, valueChars: 4096, chars: 16 * 1024 });

/** A value a resource attribute may have. */
export type ResourceAttributeValue = string | number | boolean;

/**
 * What is wrong with resource attributes given for every span (`deployment.environment`,
 * `k8s.pod.name`…), or undefined: more than 64; a key that is empty, longer than 255
 * characters, holds a control character, or is one the Tracing sets itself from its
 * options (`service.name`, `service.version`, `service.namespace`, `service.instance.id`);
 * a value that is not a string of at most 4,096 characters, a finite number or a boolean;
 * more than 16 KiB in all. The key it is about comes back (bounded) to be named; a value is
 * not shown. The options check and the sdk's reader of `OTEL_RESOURCE_ATTRIBUTES` ask this.
 */
export function resourceAttributesProblem(attributes: Readonly<Record<string, unknown>>): { key?: string; problem: string } | undefined {
  const keys = Object.keys(attributes);
  const b = RESOURCE_ATTRIBUTE_BOUNDS;
  if (keys.length > b.attributes) return { problem: `${keys.length} attributes; at most ${b.attributes}` };
  let chars = 0;
  for (const key of keys) {
    if (key === '' || key.length > b.keyChars || hasControlCharacter(key))
      return { problem: `${shownValue(key)} is not a key: 1 to ${b.keyChars} characters, no control character` };
    const shown = key.slice(0, 80);
    if (OWN_RESOURCE_KEYS.includes(key))
      return { key: shown, problem: "is the Tracing's own, from its service, version, namespace and instanceId" };
    const v = attributes[key];
    const ok =
      (typeof v === 'string' && v.length <= b.valueChars) || (typeof v === 'number' && Number.isFinite(v)) || typeof v === 'boolean';
    if (!ok) return { key: shown, problem: `must be a string of at most ${b.valueChars} characters, a finite number or a boolean` };
    chars += key.length + (typeof v === 'string' ? v.length : 8);
  }
  if (chars > b.chars) return { problem: `${chars} characters; at most ${b.chars} in all` };
  return undefined;
}
