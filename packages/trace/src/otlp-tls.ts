import { createPrivateKey, X509Certificate } from 'node:crypto';
import { PEM_FILE_MAX_BYTES, shownValue } from '@meshlet/core';

/**
 * TLS to the collector beyond Node's defaults, in PEM (the text of the files OpenTelemetry's
 * `OTEL_EXPORTER_OTLP_CERTIFICATE`, `_CLIENT_CERTIFICATE` and `_CLIENT_KEY` name).
 */
export interface OtlpTls {
  /** The CA certificates the collector's certificate must chain to, instead of Node's bundle. */
  readonly ca?: string;
  /** The client certificate (and its chain) shown to a collector that asks for one (mutual TLS); with `key`. */
  readonly cert?: string;
  /** The client certificate's private key, unencrypted. A secret: never shown. */
  readonly key?: string;
}

const TLS_KEYS = ['ca', 'cert', 'key'] as const;
const CERTIFICATES = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

/** Whether `url` parses as an `https:` URL (the scheme in any case, as URL reads it). */
export const isHttpsUrl = (url: string): boolean => URL.canParse(url) && new URL(url).protocol === 'https:';

/** What is wrong with a TLS setting: the field it is about (`ca`, `cert`, `key`), if one, and why. */
export interface OtlpTlsProblem {
  readonly field?: (typeof TLS_KEYS)[number];
  readonly problem: string;
}

/** OpenSSL's reason for a refusal (`key values mismatch`), bounded: never the input. */
const reasonOf = (err: unknown): string => {
  const reason = (err as { reason?: unknown }).reason;
  return typeof reason === 'string' ? ` (OpenSSL: ${reason.slice(0, 80)})` : '';
};

/** Each certificate of a PEM text parsed, or the problem with the first that does not parse. */
function certificatesOf(pem: string): X509Certificate[] | string {
  const blocks = pem.match(CERTIFICATES) ?? [];
  if (blocks.length === 0) return 'holds no "-----BEGIN CERTIFICATE-----" block';
  const out: X509Certificate[] = [];
  for (const [i, block] of blocks.entries()) {
    try {
      out.push(new X509Certificate(block));
    } catch (err) {
      return `certificate ${i + 1} of ${blocks.length} cannot be read${reasonOf(err)}`;
    }
  }
  return out;
}

/**
 * What is wrong with `otlp.tls` for a collector at `url`, or undefined. Checked before
 * anything starts, so that a bad file is refused naming its field rather than failing every
 * export at its handshake: an object of `ca`, `cert` and `key`, each PEM text of at most
 * PEM_FILE_MAX_BYTES; `ca` one or more certificates that parse (Node would ignore a `ca`
 * it cannot read, and then trust nothing); `cert` and `key` given together, the key
 * unencrypted and the one the certificate's public key is of; an `https:` URL (TLS on
 * `http:` would never be used). Never shows a PEM's content.
 */
export function otlpTlsProblem(tls: unknown, url: string): OtlpTlsProblem | undefined {
  if (typeof tls !== 'object' || tls === null || Array.isArray(tls))
    return { problem: `${shownValue(tls)} must be an object of ca, cert and key (PEM)` };
  const given = tls as Record<string, unknown>;
  for (const k of Object.keys(given))
    if (!(TLS_KEYS as readonly string[]).includes(k)) return { problem: `${shownValue(k)} is not one of ${TLS_KEYS.join(', ')}` };
  for (const field of TLS_KEYS) {
    const v = given[field];
    if (v === undefined) continue;
    if (typeof v !== 'string' || v.length === 0 || v.length > PEM_FILE_MAX_BYTES)
      return { field, problem: `must be PEM text of 1 to ${PEM_FILE_MAX_BYTES} characters (not shown)` };
  }
  if (!isHttpsUrl(url)) return { problem: 'is for an https: collector URL; this one is not' };
  const { ca, cert, key } = given as OtlpTls;
  if (ca !== undefined) {
    const parsed = certificatesOf(ca);
    if (typeof parsed === 'string') return { field: 'ca', problem: parsed };
  }
  if ((cert === undefined) !== (key === undefined))
    return cert === undefined
      ? { field: 'cert', problem: 'is missing: a client key goes with its certificate' }
      : { field: 'key', problem: 'is missing: a client certificate goes with its private key' };
  if (cert !== undefined && key !== undefined) {
    const chain = certificatesOf(cert);
    if (typeof chain === 'string') return { field: 'cert', problem: chain };
    let privateKey: ReturnType<typeof createPrivateKey>;
    try {
      privateKey = createPrivateKey(key);
    } catch (err) {
      return { field: 'key', problem: `is not an unencrypted private key in PEM${reasonOf(err)} (not shown)` };
    }
    if (!(chain[0] as X509Certificate).checkPrivateKey(privateKey))
      return { field: 'key', problem: "is not the private key of cert's (first) certificate (not shown)" };
  }
  return undefined;
}
