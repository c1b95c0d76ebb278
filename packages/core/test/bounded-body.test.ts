import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BodyTooLargeError, readBoundedBody } from '../src/index.js';

/** A body of `chunks`, each pull one of them, that records how many were pulled and whether it was cancelled. */
function body(chunks: readonly string[], contentLength?: number) {
  const seen = { pulled: 0, cancelled: false };
  let next = 0;
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      seen.pulled++;
      const chunk = chunks[next++];
      if (chunk === undefined) controller.close();
      else controller.enqueue(new TextEncoder().encode(chunk));
    },
    cancel() {
      seen.cancelled = true;
    },
  });
  const headers: Record<string, string> = contentLength === undefined ? {} : { 'content-length': String(contentLength) };
  return { res: new Response(stream, { headers }), seen };
}

describe('readBoundedBody', () => {
  it('reads a body of exactly maxBytes, in pieces, as UTF-8', async () => {
    assert.equal(await readBoundedBody(body(['héllo', ' ', 'wörld']).res, 13), 'héllo wörld'); // 13 bytes
    assert.equal(await readBoundedBody(body(['héllo', ' ', 'wörld'], 13).res, 13), 'héllo wörld');
  });

  it('refuses a Content-Length past the bound without reading a byte, and cancels the body', async () => {
    const { res, seen } = body(['0123456789'], 11);
    await assert.rejects(readBoundedBody(res, 10), (err: unknown) => {
      assert.ok(err instanceof BodyTooLargeError);
      assert.equal(err.maxBytes, 10);
      assert.equal(err.declared, 11);
      return true;
    });
    assert.equal(seen.cancelled, true);
    // A stream pulls once when made (its high-water mark); the reader asked for nothing.
    assert.ok(seen.pulled <= 1, `pulled ${seen.pulled}`);
  });

  it('cancels a body that runs past the bound where it does, the rest unread', async () => {
    const { res, seen } = body(['01234', '56789', 'x', 'never read', 'never read']);
    await assert.rejects(readBoundedBody(res, 10), (err: unknown) => err instanceof BodyTooLargeError && err.declared === undefined);
    assert.equal(seen.cancelled, true);
    assert.ok(seen.pulled <= 4, `pulled ${seen.pulled}`);
  });

  it('reads a missing body as empty text', async () => {
    assert.equal(await readBoundedBody(new Response(null), 10), '');
  });

  it('throws a broken stream as it broke', async () => {
    const broken = new ReadableStream<Uint8Array>({
      pull(controller) {
        controller.error(new Error('reset'));
      },
    });
    await assert.rejects(readBoundedBody(new Response(broken), 10), /reset/);
  });
});
