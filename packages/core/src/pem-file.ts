import { readBoundedFile, shownPath } from './bounded-file.js';
import { MeshletError } from './errors.js';

/**
 * A PEM file's size at most (certificates, a chain, a CA bundle, a key): the system's whole
 * CA bundle is about 220 KB.
 */
export const PEM_FILE_MAX_BYTES = 1024 * 1024;

/**
 * Reads a PEM file named by configuration (a CA, a client certificate, a private key): a
 * regular file of at most PEM_FILE_MAX_BYTES holding a `-----BEGIN` block, as UTF-8, read
 * by readBoundedFile (a FIFO or `/dev/zero` refused, not read without end). Every refusal is
 * MeshletError `MESHLET_BAD_OPTION` naming `source` (the key or variable that gave the path)
 * and the path, never the file's content: a key file is a secret.
 */
export function readPemFile(path: string, source: string): string {
  const text = readBoundedFile(path, PEM_FILE_MAX_BYTES, (why) => new MeshletError('MESHLET_BAD_OPTION', `${source}: ${why}`));
  if (!text.includes('-----BEGIN '))
    throw new MeshletError(
      'MESHLET_BAD_OPTION',
      `${source}: ${shownPath(path)} holds no PEM block ("-----BEGIN …"): the content is not shown`,
    );
  return text;
}
