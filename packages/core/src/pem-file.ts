import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { MeshletError } from './errors.js';

/**
 * A PEM file's size at most (certificates, a chain, a CA bundle, a key): the system's whole
 * CA bundle is about 220 KB.
 */
export const PEM_FILE_MAX_BYTES = 1024 * 1024;

/** A path as a refusal shows it: bounded, its control characters escaped. */
const shownPath = (path: string): string => JSON.stringify(path.length > 200 ? `${path.slice(0, 200)}…` : path);

/**
 * Reads a PEM file named by configuration (a CA, a client certificate, a private key): a
 * regular file of at most PEM_FILE_MAX_BYTES holding a `-----BEGIN` block, as UTF-8. Opened
 * without blocking and looked at before it is read, so a FIFO, a device (`/dev/zero`) or a
 * file that grows past the bound is refused rather than read without end. Every refusal is
 * MeshletError `MESHLET_BAD_OPTION` naming `source` (the key or variable that gave the path)
 * and the path, never the file's content: a key file is a secret.
 */
export function readPemFile(path: string, source: string): string {
  const refused = (why: string) => new MeshletError('MESHLET_BAD_OPTION', `${source}: ${shownPath(path)} ${why}`);
  if (path === '' || path.includes('\0')) throw refused('is not a file path');
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    throw refused(`cannot be opened (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw refused('is not a regular file');
    if (stat.size > PEM_FILE_MAX_BYTES) throw refused(`is ${stat.size} bytes; at most ${PEM_FILE_MAX_BYTES}`);
    // One byte past the bound tells a file that grew since fstat.
    const buf = Buffer.allocUnsafe(PEM_FILE_MAX_BYTES + 1);
    let n = 0;
    for (;;) {
      const read = readSync(fd, buf, n, buf.length - n, n);
      if (read === 0) break;
      n += read;
      if (n > PEM_FILE_MAX_BYTES) throw refused(`grew past ${PEM_FILE_MAX_BYTES} bytes while read`);
    }
    const text = buf.toString('utf8', 0, n);
    if (!text.includes('-----BEGIN ')) throw refused('holds no PEM block ("-----BEGIN …"): the content is not shown');
    return text;
  } catch (err) {
    if (err instanceof MeshletError) throw err;
    throw refused(`cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  } finally {
    closeSync(fd);
  }
}
