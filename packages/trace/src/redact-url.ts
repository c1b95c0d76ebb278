// The HTTP conventions: credentials in url.full become REDACTED, and so do the values of
// query parameters that carry signatures, by default: OpenTelemetry's four (AWSAccessKeyId,
// Signature, sig, X-Goog-Signature), AWS SigV4's presigned-URL parameters (its signature,
// the access key in its credential, a session token) and OAuth's bearer token in a query
// (RFC 6750 §2.3). Matched whatever their case: a server may read `signature` as `Signature`.
const SENSITIVE_QUERY = new Set(
  [
    'AWSAccessKeyId',
    'Signature',
    'sig',
    'X-Goog-Signature',
    'X-Amz-Signature',
    'X-Amz-Credential',
    'X-Amz-Security-Token',
    'access_token',
  ].map((k) => k.toLowerCase()),
);

/** `url.full` for a URL: user and password replaced by `REDACTED`, signature and token query values too. */
export function redactUrl(url: URL): string {
  if (url.username === '' && url.password === '' && url.search === '') return url.href;
  const copy = new URL(url.href);
  if (copy.username !== '') copy.username = 'REDACTED';
  if (copy.password !== '') copy.password = 'REDACTED';
  const query = copy.searchParams;
  for (const key of new Set(query.keys())) if (SENSITIVE_QUERY.has(key.toLowerCase())) query.set(key, 'REDACTED');
  return copy.href;
}
