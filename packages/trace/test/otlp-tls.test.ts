import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import type { TLSSocket } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { MeshletError } from '@meshlet/core';
import { ExportResultCode } from '@opentelemetry/core';
import { checkTracingOptions, OtlpHttpExporter, type OtlpTls, otlpTlsProblem } from '../src/index.js';
import { randomSpans } from './span-samples.js';

// TLS to the collector: the options check (every field named, no PEM shown) and the
// exporter against an HTTPS receiver on loopback that asks for a client certificate. The
// real Collector over mutual TLS is in otel-collector.test.ts.

const fixture = (name: string) => readFileSync(fileURLToPath(new URL(`../../../../test/fixtures/tls/${name}`, import.meta.url)), 'utf8');
const ca = fixture('ca.pem');
const cert = fixture('server.pem');
const key = fixture('server.key');
/** A key that is not the certificate's. */
const otherKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
const URL_S = 'https://127.0.0.1:4318/v1/traces';

/** The option check's refusal; fails unless it refuses. */
function refusal(tls: unknown, url = URL_S): string {
  try {
    checkTracingOptions({ otlp: { url, tls } }, 'tracing');
  } catch (err) {
    assert.ok(err instanceof MeshletError && err.code === 'MESHLET_BAD_OPTION', String(err));
    return err.message;
  }
  assert.fail('not refused');
}

describe('otlp.tls: the check', () => {
  it('takes a CA alone, a client certificate and its key, or all three', () => {
    for (const tls of [{ ca }, { cert, key }, { ca, cert, key }, { ca: `${ca}\n${ca}` }])
      assert.equal(otlpTlsProblem(tls, URL_S), undefined, Object.keys(tls).join());
    // The scheme in any case, as URL reads it.
    assert.equal(otlpTlsProblem({ ca }, 'HTTPS://127.0.0.1:4318/v1/traces'), undefined);
  });

  it('refuses each bad field by its name, never showing the PEM', () => {
    const cases: [unknown, RegExp][] = [
      ['ca.pem', /^tracing\.otlp\.tls: "ca\.pem" must be an object of ca, cert and key/],
      [{ ca, crt: cert }, /^tracing\.otlp\.tls: "crt" is not one of ca, cert, key/],
      [{ ca: '' }, /^tracing\.otlp\.tls\.ca: must be PEM text of 1 to 1048576 characters/],
      [{ ca: 'x'.repeat(1024 * 1024 + 1) }, /^tracing\.otlp\.tls\.ca: must be PEM text/],
      [{ ca: key }, /^tracing\.otlp\.tls\.ca: holds no "-----BEGIN CERTIFICATE-----" block/],
      [
        { ca: '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n' },
        /^tracing\.otlp\.tls\.ca: certificate 1 of 1 cannot be read/,
      ],
      [{ cert }, /^tracing\.otlp\.tls\.key: is missing: a client certificate goes with its private key/],
      [{ key }, /^tracing\.otlp\.tls\.cert: is missing: a client key goes with its certificate/],
      [{ cert: key, key }, /^tracing\.otlp\.tls\.cert: holds no "-----BEGIN CERTIFICATE-----" block/],
      [{ cert, key: 'secret-not-a-key' }, /^tracing\.otlp\.tls\.key: is not an unencrypted private key in PEM.*\(not shown\)$/],
      [{ cert, key: otherKey }, /^tracing\.otlp\.tls\.key: is not the private key of cert's \(first\) certificate \(not shown\)$/],
    ];
    for (const [tls, want] of cases) {
      const msg = refusal(tls);
      assert.match(msg, want);
      assert.ok(!msg.includes('PRIVATE KEY') && !msg.includes('secret-not-a-key') && !msg.includes('MII'), msg);
    }
  });

  it('refuses TLS settings for an http: collector (they would never be used)', () => {
    assert.match(refusal({ ca }, 'http://127.0.0.1:4318/v1/traces'), /^tracing\.otlp\.tls: is for an https: collector URL/);
  });

  it('the exporter refuses the same when made directly, and a dispatcher of its own beside tls', () => {
    assert.throws(() => new OtlpHttpExporter({ url: URL_S, tls: { cert } }), /^MeshletError: otlp\.tls\.key: is missing/);
    assert.throws(
      () => new OtlpHttpExporter({ url: URL_S, tls: { ca } }, { dispatcher: {} as never }),
      /otlp\.tls: a dispatcher given to the exporter brings its own TLS/,
    );
  });
});

/** An HTTPS receiver with the fixtures' certificate that asks for a client certificate of their CA. */
async function mutualTlsReceiver(): Promise<{ server: Server; url: string; peers: string[] }> {
  const peers: string[] = [];
  const server = createServer({ cert, key, ca, requestCert: true, rejectUnauthorized: true }, (req, res) => {
    peers.push(String((req.socket as TLSSocket).getPeerCertificate().subject?.CN ?? ''));
    req.resume();
    req.on('end', () => res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end());
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, url: `https://127.0.0.1:${(server.address() as AddressInfo).port}/v1/traces`, peers };
}

const exportWith = async (url: string, tls: OtlpTls | undefined) => {
  const exporter = new OtlpHttpExporter({ url, timeoutMs: 500, ...(tls ? { tls } : {}) });
  try {
    return await new Promise<{ code: number; error?: Error }>((resolve) => exporter.export(randomSpans(3), resolve));
  } finally {
    await exporter.shutdown();
  }
};

describe('otlp.tls: the exporter over HTTPS', () => {
  it('trusts the given CA and shows its client certificate to a receiver that asks for one', async () => {
    const r = await mutualTlsReceiver();
    try {
      const result = await exportWith(r.url, { ca, cert, key });
      assert.equal(result.code, ExportResultCode.SUCCESS, String(result.error));
      assert.deepEqual(r.peers, ['server.dc1.consul']);
    } finally {
      r.server.close();
    }
  });

  it("fails without the CA (Node's bundle does not trust the test CA) and without a client certificate", async () => {
    const r = await mutualTlsReceiver();
    try {
      const untrusted = await exportWith(r.url, undefined);
      assert.equal(untrusted.code, ExportResultCode.FAILED);
      assert.match(String(untrusted.error?.message), /collector not reached: self-signed certificate in certificate chain/);
      const anonymous = await exportWith(r.url, { ca });
      assert.equal(anonymous.code, ExportResultCode.FAILED);
      // The receiver ends the handshake of a client that shows no certificate.
      assert.match(String(anonymous.error?.message), /collector not reached/);
      assert.deepEqual(r.peers, [], 'no request got through');
    } finally {
      r.server.close();
    }
  });
});
