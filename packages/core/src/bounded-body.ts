/** Thrown by readBoundedBody when an answer's body is over its bound; callers map it to their own error. */
export class BodyTooLargeError extends Error {
  override readonly name = 'BodyTooLargeError';
  constructor(
    readonly maxBytes: number,
    /** The Content-Length that refused it before a byte was read, or undefined when the bytes did. */
    readonly declared?: number,
  ) {
    super(
      declared === undefined
        ? `the body is over ${maxBytes} bytes: the rest was not read`
        : `the body is declared ${declared} bytes; at most ${maxBytes}: not read`,
    );
  }
}

/**
 * A fetch answer's body as UTF-8 text, read at most `maxBytes` of: whoever answers (a
 * registered address, a proxy) may send without end. A Content-Length past the bound is
 * refused before a byte is read, and a body that runs past it is cancelled there; either
 * throws BodyTooLargeError. A failed read (the connection broke, a timeout) throws as the
 * stream did.
 */
export async function readBoundedBody(res: Response, maxBytes: number): Promise<string> {
  const declared = Number(res.headers.get('content-length') ?? 0);
  if (declared > maxBytes) {
    await res.body?.cancel().catch(() => {});
    throw new BodyTooLargeError(maxBytes, declared);
  }
  if (!res.body) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > maxBytes) {
      await reader.cancel().catch(() => {});
      throw new BodyTooLargeError(maxBytes);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks, size).toString('utf8');
}
