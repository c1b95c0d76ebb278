import { badOption, isHeaderName, onlyOptionKeys, optionObject, shownValue } from '@meshlet/core';
import { TAG_SCOPES } from './tag-scope.js';

/** The dialects TagPropagation knows. */
export const DIALECT_NAMES = ['meshlet', 'tsf', 'polaris', 'sct'] as const;
/** Headers passed on unchanged, and tags with a configured scope, at most. */
export const PROPAGATION_BOUNDS = Object.freeze({ passThroughHeaders: 64, scopes: 1024 });

const KEYS = ['accept', 'emit', 'scopes', 'passThroughHeaders', 'tsf', 'polaris'] as const;

/**
 * Checks TagPropagation's options (createMesh's `dialects`): MeshletError
 * `MESHLET_BAD_OPTION`, the message starting with the field (`dialects.emit[0]: …` under
 * createMesh, whose `prefix` is `dialects`). Unknown keys are refused. The dialects' own
 * options (`tsf`, `polaris`) are read by their dialects.
 */
export function checkPropagationOptions(options: unknown, prefix = ''): void {
  const at = (field: string) => (prefix === '' ? field : `${prefix}.${field}`);
  const o = optionObject(options, prefix === '' ? 'options' : prefix);
  onlyOptionKeys(o, prefix === '' ? 'options' : prefix, KEYS);
  const known: readonly string[] = DIALECT_NAMES;
  for (const key of ['accept', 'emit'] as const) {
    const names = o[key];
    if (names === undefined) continue;
    if (!Array.isArray(names) || names.length > known.length)
      throw badOption(at(key), `${shownValue(names)} must be a list of at most ${known.length} of ${known.join(', ')}`);
    names.forEach((n, i) => {
      if (!known.includes(n as string))
        throw badOption(at(`${key}[${i}]`), `unknown dialect ${shownValue(n)} (known: ${known.join(', ')})`);
    });
  }
  if (o.scopes !== undefined) {
    const scopes = optionObject(o.scopes, at('scopes'));
    const keys = Object.keys(scopes);
    if (keys.length > PROPAGATION_BOUNDS.scopes) throw badOption(at('scopes'), `${keys.length} tags; at most ${PROPAGATION_BOUNDS.scopes}`);
    for (const k of keys)
      if (!TAG_SCOPES.includes(scopes[k] as never))
        throw badOption(at(`scopes.${k.slice(0, 80)}`), `${shownValue(scopes[k])} must be one of ${TAG_SCOPES.join(', ')}`);
  }
  const pass = o.passThroughHeaders;
  if (pass !== undefined) {
    if (!Array.isArray(pass) || pass.length > PROPAGATION_BOUNDS.passThroughHeaders)
      throw badOption(at('passThroughHeaders'), `must be a list of at most ${PROPAGATION_BOUNDS.passThroughHeaders} header names`);
    pass.forEach((h, i) => {
      if (typeof h !== 'string' || !isHeaderName(h))
        throw badOption(at(`passThroughHeaders[${i}]`), `${shownValue(h)} is not a header name`);
    });
  }
  if (o.tsf !== undefined) optionObject(o.tsf, at('tsf'));
  if (o.polaris !== undefined) optionObject(o.polaris, at('polaris'));
}
