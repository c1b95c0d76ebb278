// The HTTP conventions: credentials in url.full become REDACTED, and so do the values of
// query parameters that carry signatures, by default.
const SENSITIVE_QUERY = ['AWSAccessKeyId', 'Signature', 'sig', 'X-Goog-Signature'];

/** `url.full` for a URL: user and password replaced by `REDACTED`, signature query values too. */
export function redactUrl(url: URL): string {
  if (url.username === '' && url.password === '' && url.search === '') return url.href;
  const copy = new URL(url.href);
  if (copy.username !== '') copy.username = 'REDACTED';
  if (copy.password !== '') copy.password = 'REDACTED';
  for (const key of SENSITIVE_QUERY) if (copy.searchParams.has(key)) copy.searchParams.set(key, 'REDACTED');
  return copy.href;
}
