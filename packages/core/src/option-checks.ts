import { MeshletError } from './errors.js';

/** The error of a bad createMesh option: `MESHLET_BAD_OPTION`, the message starting with the field's path. */
export function badOption(field: string, message: string): MeshletError {
  return new MeshletError('MESHLET_BAD_OPTION', `${field}: ${message}`);
}

/** `value` as an object of options (not null, not an array), else `MESHLET_BAD_OPTION` naming `path`. */
export function optionObject(value: unknown, path: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw badOption(path, `${shownValue(value)} must be an object`);
  return value as Record<string, unknown>;
}

/** Refuses a key not in `allowed`, naming it (`path.key`): a misspelt option is not silently off. */
export function onlyOptionKeys(obj: Record<string, unknown>, path: string, allowed: readonly string[]): void {
  for (const key of Object.keys(obj))
    if (!allowed.includes(key))
      throw badOption(`${path}.${key.slice(0, 80)}`, `unknown key; the keys of ${path} are ${allowed.join(', ')}`);
}

/** A whole number from `min` to `max`. */
export function wholeNumber(value: unknown, min: number, max: number): boolean {
  return typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max;
}

/**
 * An option that is a whole number from `min` to `max`: `fallback` when absent, else the
 * value, else `MESHLET_BAD_OPTION` naming `field`.
 */
export function wholeNumberOption(value: unknown, field: string, min: number, max: number, fallback: number): number {
  if (value === undefined) return fallback;
  if (!wholeNumber(value, min, max)) throw badOption(field, `${shownValue(value)} must be a whole number from ${min} to ${max}`);
  return value as number;
}

/** Decimal: an optional sign, digits with at most one point. No exponent, no `0x`/`0b`/`0o`, no `Infinity`. */
const DECIMAL = /^[+-]?(\d+(\.\d*)?|\.\d+)$/;

/**
 * The number a configuration text writes in decimal (`0.25`, `8080`, ` 1.5 `: around it
 * blanks are allowed), else undefined: a blank text, `0x10` and `0b1` (which `Number()`
 * reads as 16 and 1), an exponent (`1e-400`, which it reads as 0), a value past a double's
 * range, or one not 0 that a double cannot tell from 0 (`0.000…1`). The one reader of
 * numbers from configuration text.
 */
export function decimalNumber(text: string): number | undefined {
  const t = text.trim();
  if (!DECIMAL.test(t)) return undefined;
  const n = Number(t);
  if (!Number.isFinite(n) || (n === 0 && /[1-9]/.test(t))) return undefined;
  return n;
}

/** A value in an error message, bounded. */
export function shownValue(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.slice(0, 80));
  if (typeof value === 'object' && value !== null) return Array.isArray(value) ? 'an array' : 'an object';
  // Not its source: a function's text is as long as the function.
  if (typeof value === 'function') return 'a function';
  return String(value);
}

/** An HTTP header name: RFC 9110's token. */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** Whether `name` is an HTTP header name (RFC 9110's token). */
export function isHeaderName(name: string): boolean {
  return HEADER_NAME.test(name);
}

// What undici sends as a header value: TAB, visible ASCII and space, Latin-1 (no CR, LF or NUL).
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

/** Whether `value` can be sent as an HTTP header value (undici's own rule: no CR, LF, NUL, nothing past Latin-1). */
export function isHeaderValue(value: string): boolean {
  return HEADER_VALUE.test(value);
}

// C0 controls and DEL: never legitimate in a name, a tag, a path or a header; dangerous in
// logs (a line break forges a line) and to the file system (a NUL makes every call throw).
const CONTROL_CHARACTER = /[\u0000-\u001f\u007f]/;

/**
 * Whether `text` holds a control character (C0, U+0000–U+001F, or DEL, U+007F): the one
 * check of tags, the caller header, configured paths and keys, and the console's author.
 */
export function hasControlCharacter(text: string): boolean {
  return CONTROL_CHARACTER.test(text);
}

/** Absent, or an object with these methods; else `MESHLET_BAD_OPTION` naming `field` (`what` says what it must be). */
export function withMethods(value: unknown, field: string, methods: readonly string[], what: string): void {
  if (value === undefined) return;
  const ok =
    typeof value === 'object' && value !== null && methods.every((m) => typeof (value as Record<string, unknown>)[m] === 'function');
  if (!ok) throw badOption(field, `${shownValue(value)} must be ${what} (with ${methods.join(', ')})`);
}
