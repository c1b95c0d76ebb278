import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';

/** A path as a refusal shows it: bounded, its control characters escaped. */
export const shownPath = (path: string): string => JSON.stringify(path.length > 200 ? `${path.slice(0, 200)}…` : path);

/**
 * Reads a file named by configuration (a PEM file, a key file) as UTF-8: a regular file of
 * at most `maxBytes`. Opened without blocking and looked at before it is read, so a FIFO, a
 * device (`/dev/zero`) or a file that grows past the bound is refused rather than read
 * without end. Every refusal is thrown as `refused(why, errno, bytes)`, where `why` starts with the
 * path (shownPath) and never holds the file's content (a key file is a secret), `errno`
 * is the code of a file that could not be opened (`ENOENT`: there is none), and `bytes` is
 * set when a regular file is refused for its size only: the bytes it holds (at least, when
 * it grew while read), for a caller that tells "too large" from "not a file".
 */
export function readBoundedFile(path: string, maxBytes: number, refused: (why: string, errno?: string, bytes?: number) => Error): string {
  const shown = shownPath(path);
  if (path === '' || path.includes('\0')) throw refused(`${shown} is not a file path`);
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    const errno = (err as NodeJS.ErrnoException).code;
    throw refused(`${shown} cannot be opened (${errno ?? 'error'})`, errno);
  }
  /** An fs call whose failure is a refusal, not a crash. */
  const io = <T>(call: () => T): T => {
    try {
      return call();
    } catch (err) {
      throw refused(`${shown} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
  };
  try {
    const stat = io(() => fstatSync(fd));
    if (!stat.isFile()) throw refused(`${shown} is not a regular file`);
    if (stat.size > maxBytes) throw refused(`${shown} is ${stat.size} bytes; at most ${maxBytes}`, undefined, stat.size);
    // One byte past the bound tells a file that grew since fstat.
    const buf = Buffer.allocUnsafe(maxBytes + 1);
    let n = 0;
    for (;;) {
      const read = io(() => readSync(fd, buf, n, buf.length - n, n));
      if (read === 0) break;
      n += read;
      if (n > maxBytes) throw refused(`${shown} grew past ${maxBytes} bytes while read`, undefined, n);
    }
    return buf.toString('utf8', 0, n);
  } finally {
    closeSync(fd);
  }
}
