import { createHmac, createSecretKey, type KeyObject, timingSafeEqual } from 'node:crypto';
import { type Clock, MeshletError } from '@meshlet/core';

/**
 * The header a governed call carries its signed caller identity in. The unsigned
 * `x-meshlet-caller` header is anyone's to type; only this one is believed.
 */
export const IDENTITY_HEADER = 'x-meshlet-identity';

/** Longest identity header read; anything longer is refused unread. */
export const MAX_IDENTITY_HEADER = 1024;
/** Shortest mesh key accepted: HMAC-SHA-256 wants at least its output size. */
export const MIN_KEY_BYTES = 32;
/** How long a signed identity is good for, by default. */
export const DEFAULT_IDENTITY_TTL_MS = 30_000;
/** Clock difference tolerated between caller and server, by default. */
export const DEFAULT_MAX_SKEW_MS = 5_000;
/** Longest lifetime a verifier accepts, whatever the token says: bounds replay. */
export const DEFAULT_MAX_LIFETIME_MS = 5 * 60_000;

/** Who a calling service is. */
export interface CallerIdentity {
  readonly service: string;
  readonly namespace: string;
  /** The instance id, as registered. */
  readonly instance: string;
  readonly version?: string;
}

/** A caller identity as verified: what it says plus when and with which key it was signed. */
export interface VerifiedIdentity extends CallerIdentity {
  /** Milliseconds since the epoch. */
  readonly issuedAt: number;
  readonly expiresAt: number;
  readonly keyId: string;
  /** The service the token was signed for; '' when it was signed for any. */
  readonly audience: string;
}

/**
 * A mesh key: shared by every service of the mesh that signs or verifies identities.
 * During a rollover two are active; the id says which one signed a token.
 */
export interface MeshKey {
  /** Letters, digits, `_` and `-`, at most 32: travels in every header. */
  readonly id: string;
  readonly key: Uint8Array;
}

/** A mesh key that cannot be used. */
export class BadMeshKeyError extends MeshletError {
  static readonly code = 'MESHLET_BAD_MESH_KEY';
  constructor(reason: string) {
    super(BadMeshKeyError.code, `mesh key: ${reason}. Generate one with \`openssl rand -base64 32\` and give it an id such as "k2025a"`);
  }
}

/** Why an identity header was not believed. The caller is then anonymous. */
export type IdentityRefusal = 'unsigned' | 'malformed' | 'expired' | 'not-yet-valid' | 'bad-signature' | 'unknown-key' | 'wrong-audience';
export const IDENTITY_REFUSALS: readonly IdentityRefusal[] = [
  'unsigned',
  'malformed',
  'expired',
  'not-yet-valid',
  'bad-signature',
  'unknown-key',
  'wrong-audience',
];

export type IdentityCheck =
  | { readonly ok: true; readonly identity: VerifiedIdentity }
  | { readonly ok: false; readonly reason: IdentityRefusal };

const KEY_ID = /^[A-Za-z0-9_-]{1,32}$/;
const DIGITS = /^(0|[1-9]\d{0,15})$/;
const VERSION = 'v1';
const FIELDS = 9; // version, kid, audience, service, namespace, instance, app version, issued, expires

/** A mesh key from its base64 text (as config holds it; decrypt it first if it is encrypted). */
export function meshKey(id: string, base64: string): MeshKey {
  if (!KEY_ID.test(id)) throw new BadMeshKeyError(`id "${id.slice(0, 40)}" must be 1-32 letters, digits, "_" or "-"`);
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(base64.trim())) throw new BadMeshKeyError(`"${id}" is not base64`);
  const key = Buffer.from(base64.trim(), 'base64');
  return meshKeyCheck({ id, key });
}

/**
 * Throws BadMeshKeyError when `k` cannot be used (bad id, key not bytes, under MIN_KEY_BYTES).
 * The key must be bytes: a string (which a JavaScript caller can pass despite the type) has
 * no `byteLength`, so a length test alone let a one-character key through, and Node's
 * `createSecretKey` takes a string as it is.
 */
export function meshKeyCheck(k: MeshKey): MeshKey {
  if (typeof k !== 'object' || k === null) throw new BadMeshKeyError('a mesh key must be an object of id and key');
  if (typeof k.id !== 'string' || !KEY_ID.test(k.id))
    throw new BadMeshKeyError(`id "${String(k.id).slice(0, 40)}" must be 1-32 letters, digits, "_" or "-"`);
  if (!(k.key instanceof Uint8Array))
    throw new BadMeshKeyError(
      `"${k.id}": key must be bytes (a Buffer or Uint8Array; meshKey(id, base64) reads base64 text), not ${typeof k.key}`,
    );
  if (k.key.byteLength < MIN_KEY_BYTES)
    throw new BadMeshKeyError(`"${k.id}" has ${k.key.byteLength} bytes; at least ${MIN_KEY_BYTES} are needed`);
  return k;
}

// KeyObjects are made once per key, not per signature.
const keyObjects = new WeakMap<MeshKey, KeyObject>();
function keyObject(k: MeshKey): KeyObject {
  let o = keyObjects.get(k);
  if (!o) {
    meshKeyCheck(k);
    o = createSecretKey(k.key);
    keyObjects.set(k, o);
  }
  return o;
}

const mac = (k: MeshKey, text: string): Buffer => createHmac('sha256', keyObject(k)).update(text).digest();

export interface SignOptions {
  /** Default DEFAULT_IDENTITY_TTL_MS. */
  readonly ttlMs?: number;
  /** The destination service; a verifier that expects another refuses the token. Default: any. */
  readonly audience?: string;
}

/**
 * Signs `identity` into an identity header value:
 * `v1|<key id>|<audience>|<service>|<namespace>|<instance>|<version>|<issued ms>|<expires ms>|<mac>`.
 * Every field is percent-encoded (so `|` never appears inside one) and the MAC is
 * HMAC-SHA-256, base64url, over everything before the last `|`: the exact bytes sent, so
 * the encoding is canonical by construction.
 */
export function signIdentity(identity: CallerIdentity, key: MeshKey, clock: Clock, options: SignOptions = {}): string {
  const ttl = options.ttlMs ?? DEFAULT_IDENTITY_TTL_MS;
  if (!(ttl > 0)) throw new MeshletError('MESHLET_BAD_OPTION', `ttlMs: ${ttl} must be greater than 0`);
  // Wall time: the verifier is another process, which judges the token on its own wall clock.
  const issued = Math.floor(clock.wallNow());
  const fields = [
    VERSION,
    key.id,
    options.audience ?? '',
    identity.service,
    identity.namespace,
    identity.instance,
    identity.version ?? '',
    String(issued),
    String(issued + Math.ceil(ttl)),
  ];
  const text = fields.map((f, i) => (i < 7 ? encodeURIComponent(f) : f)).join('|');
  const header = `${text}|${mac(key, text).toString('base64url')}`;
  if (header.length > MAX_IDENTITY_HEADER) {
    throw new MeshletError(
      'MESHLET_BAD_OPTION',
      `identity of "${identity.service}" encodes to ${header.length} characters (limit ${MAX_IDENTITY_HEADER}): shorten the instance id`,
    );
  }
  return header;
}

export interface VerifyOptions {
  /** Default DEFAULT_MAX_SKEW_MS. */
  readonly maxSkewMs?: number;
  /** Default DEFAULT_MAX_LIFETIME_MS. */
  readonly maxLifetimeMs?: number;
  /** This service's name: tokens signed for another service are refused. Default: not checked. */
  readonly audience?: string;
}

/**
 * Checks an identity header against the active keys (by key id, so two keys work during a
 * rollover). The MAC is compared in constant time and checked before any field is
 * believed; then expiry (with `maxSkewMs` of tolerance), issue time and audience.
 */
export function checkIdentity(
  header: string | undefined,
  keys: readonly MeshKey[],
  clock: Clock,
  options: VerifyOptions = {},
): IdentityCheck {
  if (header === undefined || header === '') return refuse('unsigned');
  if (header.length > MAX_IDENTITY_HEADER) return refuse('malformed');
  const cut = header.lastIndexOf('|');
  if (cut < 0) return refuse('malformed');
  const text = header.slice(0, cut);
  const fields = text.split('|');
  if (fields.length !== FIELDS || fields[0] !== VERSION) return refuse('malformed');
  const kid = fields[1] as string;
  const key = keys.find((k) => k.id === kid);
  if (key === undefined) return refuse(KEY_ID.test(kid) ? 'unknown-key' : 'malformed');
  // Compared as text, not as decoded bytes: base64url's last character carries spare bits,
  // so a decoder maps several spellings to one MAC. Only the canonical spelling verifies.
  const given = Buffer.from(header.slice(cut + 1));
  const expected = Buffer.from(mac(key, text).toString('base64url'));
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return refuse('bad-signature');

  const [, , audience, service, namespace, instance, version, issuedText, expiresText] = fields as [string, ...string[]];
  if (!DIGITS.test(issuedText as string) || !DIGITS.test(expiresText as string)) return refuse('malformed');
  const issuedAt = Number(issuedText);
  const expiresAt = Number(expiresText);
  let decoded: string[];
  try {
    decoded = [audience, service, namespace, instance, version].map((f) => decodeURIComponent(f as string));
  } catch {
    return refuse('malformed');
  }
  const [aud, svc, ns, inst, ver] = decoded as [string, string, string, string, string];
  if (svc === '' || expiresAt <= issuedAt || expiresAt - issuedAt > (options.maxLifetimeMs ?? DEFAULT_MAX_LIFETIME_MS))
    return refuse('malformed');
  const now = clock.wallNow();
  const skew = options.maxSkewMs ?? DEFAULT_MAX_SKEW_MS;
  if (now > expiresAt + skew) return refuse('expired');
  if (issuedAt > now + skew) return refuse('not-yet-valid');
  if (options.audience !== undefined && aud !== options.audience) return refuse('wrong-audience');
  const identity: VerifiedIdentity = {
    service: svc,
    namespace: ns,
    instance: inst,
    ...(ver !== '' ? { version: ver } : {}),
    issuedAt,
    expiresAt,
    keyId: kid,
    audience: aud,
  };
  return { ok: true, identity };
}

const refusals = Object.fromEntries(IDENTITY_REFUSALS.map((r) => [r, Object.freeze({ ok: false, reason: r })])) as Record<
  IdentityRefusal,
  IdentityCheck
>;
const refuse = (reason: IdentityRefusal): IdentityCheck => refusals[reason];

/** Counts of verification outcomes, for metrics. */
export type IdentityCounters = Record<'verified' | IdentityRefusal, number>;

export const newIdentityCounters = (): IdentityCounters => ({
  verified: 0,
  unsigned: 0,
  malformed: 0,
  expired: 0,
  'not-yet-valid': 0,
  'bad-signature': 0,
  'unknown-key': 0,
  'wrong-audience': 0,
});

/**
 * The verified identity in `header`, or undefined (the caller is anonymous); counts the
 * outcome in `counters` when given. See checkIdentity.
 */
export function verifyIdentity(
  header: string | undefined,
  keys: readonly MeshKey[],
  clock: Clock,
  maxSkewMs = DEFAULT_MAX_SKEW_MS,
  counters?: IdentityCounters,
  options: Omit<VerifyOptions, 'maxSkewMs'> = {},
): VerifiedIdentity | undefined {
  const result = checkIdentity(header, keys, clock, { ...options, maxSkewMs });
  if (counters) counters[result.ok ? 'verified' : result.reason]++;
  return result.ok ? result.identity : undefined;
}
