import { TsfFieldError } from './tsf-rule-error.js';

/** Collects notices for fields that are read but not applied, and unknown fields. */
export type NoticeSink = (path: string, message: string) => void;

/** Readers of YAML values that throw TsfFieldError naming the field. */
export const tsfField = {
  object(value: unknown, path: string): Record<string, unknown> {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new TsfFieldError(path, 'must be a map');
    return value as Record<string, unknown>;
  },
  list(value: unknown, path: string): unknown[] {
    if (!Array.isArray(value)) throw new TsfFieldError(path, 'must be a list');
    return value;
  },
  /** Optional list: absent and YAML `null` are empty, as Jackson reads them. */
  optionalList(value: unknown, path: string): unknown[] {
    return value === undefined || value === null ? [] : tsfField.list(value, path);
  },
  /** A string; numbers and booleans are taken as their text, as Jackson coerces them into TSF's String fields. */
  text(value: unknown, path: string): string {
    if (typeof value === 'string') return value;
    if (typeof value === 'number' || typeof value === 'boolean') return String(value);
    throw new TsfFieldError(path, 'must be a string');
  },
  optionalText(value: unknown, path: string): string | undefined {
    return value === undefined || value === null ? undefined : tsfField.text(value, path);
  },
  integer(value: unknown, path: string, min: number, max: number): number {
    const n = typeof value === 'string' && /^-?\d+$/.test(value) ? Number(value) : value;
    if (typeof n !== 'number' || !Number.isInteger(n)) throw new TsfFieldError(path, 'must be a whole number');
    if (n < min || n > max) throw new TsfFieldError(path, `must be between ${min} and ${max} (got ${n})`);
    return n;
  },
  optionalInteger(value: unknown, path: string, fallback: number, min: number, max: number): number {
    return value === undefined || value === null ? fallback : tsfField.integer(value, path, min, max);
  },
  boolean(value: unknown, path: string, fallback: boolean): boolean {
    if (value === undefined || value === null) return fallback;
    if (typeof value !== 'boolean') throw new TsfFieldError(path, 'must be true or false');
    return value;
  },
  /**
   * Reports keys that are neither converted (`known`) nor TSF console bookkeeping
   * (`ignored`: ids, audit fields, paging). They are not applied and not guessed at.
   */
  reportUnknown(
    obj: Record<string, unknown>,
    path: string,
    known: readonly string[],
    ignored: readonly string[],
    notice: NoticeSink,
  ): void {
    for (const k of Object.keys(obj)) {
      if (!known.includes(k) && !ignored.includes(k)) notice(`${path}.${k}`, 'unknown TSF field; not applied');
    }
  },
};

/** Rule names as Meshlet's parsers allow them: a TSF id such as `route-r-ba2pbnxv` is one as it is. */
export function ruleName(id: string | undefined, fallback: string): string {
  return id !== undefined && /^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$/.test(id) ? id : fallback;
}
