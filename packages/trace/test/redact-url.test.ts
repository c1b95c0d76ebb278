import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { redactUrl } from '../src/index.js';

describe('redactUrl', () => {
  it("redacts an AWS SigV4 presigned URL's signature, credential and session token, and an OAuth access_token, whatever their case", () => {
    const url = new URL(
      'https://bucket.s3.amazonaws.com/key?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F20250101%2Fus-east-1&X-Amz-Date=20250101T000000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Security-Token=LEAK2&X-Amz-Signature=LEAK1&access_token=LEAK3&signature=LEAK4&x-amz-signature=LEAK5',
    );
    const shown = redactUrl(url);
    assert.doesNotMatch(shown, /LEAK|AKIA/);
    const query = new URL(shown).searchParams;
    for (const key of ['X-Amz-Credential', 'X-Amz-Security-Token', 'X-Amz-Signature', 'access_token', 'signature', 'x-amz-signature'])
      assert.equal(query.get(key), 'REDACTED', key);
    // What signs nothing is kept.
    assert.equal(query.get('X-Amz-Algorithm'), 'AWS4-HMAC-SHA256');
    assert.equal(query.get('X-Amz-Expires'), '900');
  });

  it("keeps OpenTelemetry's four, and leaves a URL without a credential or a sensitive key as it was", () => {
    assert.equal(
      redactUrl(new URL('http://u:p@h/p?AWSAccessKeyId=a&Signature=b&sig=c&X-Goog-Signature=d&id=1')),
      'http://REDACTED:REDACTED@h/p?AWSAccessKeyId=REDACTED&Signature=REDACTED&sig=REDACTED&X-Goog-Signature=REDACTED&id=1',
    );
    assert.equal(redactUrl(new URL('http://h/p?q=a%20b&id=1')), 'http://h/p?q=a%20b&id=1');
  });
});
