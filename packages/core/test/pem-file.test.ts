import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { MeshletError, PEM_FILE_MAX_BYTES, readPemFile } from '../src/index.js';

const fixture = (name: string) => fileURLToPath(new URL(`../../../../test/fixtures/tls/${name}`, import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'meshlet-pem-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** The refusal's message; fails unless `fn` throws MESHLET_BAD_OPTION. */
function refusal(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof MeshletError, String(err));
    assert.equal(err.code, 'MESHLET_BAD_OPTION');
    return err.message;
  }
  assert.fail('not refused');
}

describe('readPemFile', () => {
  it('reads a certificate and a key as their text', () => {
    assert.equal(readPemFile(fixture('ca.pem'), 'X'), readFileSync(fixture('ca.pem'), 'utf8'));
    assert.match(readPemFile(fixture('server.key'), 'X'), /-----BEGIN PRIVATE KEY-----/);
    const link = join(dir, 'link.pem');
    symlinkSync(fixture('ca.pem'), link);
    assert.match(readPemFile(link, 'X'), /BEGIN CERTIFICATE/);
  });

  it('refuses a missing file, naming the source and the path', () => {
    const msg = refusal(() => readPemFile(join(dir, 'nope.pem'), 'OTEL_EXPORTER_OTLP_CERTIFICATE'));
    assert.match(msg, /^OTEL_EXPORTER_OTLP_CERTIFICATE: ".*nope\.pem" cannot be opened \(ENOENT\)$/);
  });

  it('refuses a directory, a device and a FIFO without reading them (a FIFO with no writer would block)', () => {
    assert.match(
      refusal(() => readPemFile(dir, 'K')),
      /is not a regular file/,
    );
    assert.match(
      refusal(() => readPemFile('/dev/zero', 'K')),
      /is not a regular file/,
    );
    const fifo = join(dir, 'fifo');
    execFileSync('mkfifo', [fifo]);
    assert.match(
      refusal(() => readPemFile(fifo, 'K')),
      /is not a regular file/,
    );
  });

  it('refuses a file past the bound by its size, and one with no PEM block without showing it', () => {
    const big = join(dir, 'big.pem');
    writeFileSync(big, `-----BEGIN CERTIFICATE-----\n${'A'.repeat(PEM_FILE_MAX_BYTES)}\n`);
    assert.match(
      refusal(() => readPemFile(big, 'K')),
      new RegExp(`is ${PEM_FILE_MAX_BYTES + 29} bytes; at most ${PEM_FILE_MAX_BYTES}$`),
    );
    const secret = join(dir, 'secret.txt');
    writeFileSync(secret, 'hunter2-the-password');
    const msg = refusal(() => readPemFile(secret, 'K'));
    assert.match(msg, /holds no PEM block/);
    assert.ok(!msg.includes('hunter2'), msg);
  });

  it('refuses an empty path or one with NUL, and bounds a long path in the message', () => {
    assert.match(
      refusal(() => readPemFile('', 'K')),
      /is not a file path/,
    );
    assert.match(
      refusal(() => readPemFile('a\0b', 'K')),
      /is not a file path/,
    );
    const msg = refusal(() => readPemFile(`/${'x'.repeat(5000)}`, 'K'));
    assert.ok(msg.length < 300, `${msg.length} characters`);
  });
});
