import { parseArgs } from 'node:util';
import { MeshletError } from '@meshlet/core';
import { encryptValue, generateKey, KEY_ENV, KEY_FILE_ENV, keysFromEnvironment } from './value-cipher.js';

export interface CliIo {
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Reads standard input to its end; for values kept out of argv (and shell history). */
  readonly readStdin: () => Promise<string>;
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
}

const USAGE = `usage:
  meshlet-config keygen                             print a new base64 AES-256 key
  meshlet-config encrypt --property <key> [value]   print ENC(...) for value (or standard input, without its
                                                    final newline) under the first key of ${KEY_ENV} or
                                                    ${KEY_FILE_ENV}, for the config key it is written to
                                                    (meshlet.auth.keys[0].key): it decrypts under no other
`;

/**
 * The `meshlet-config` command, as a function: returns the exit code. Prefer standard
 * input for the value: an argument shows in `ps` and the shell's history.
 */
export async function runConfigCli(argv: readonly string[], io: CliIo): Promise<number> {
  const [command, ...rest] = argv;
  if (command === 'keygen') {
    io.out(`${generateKey()}\n`);
    return 0;
  }
  if (command === 'encrypt') {
    let property: string | undefined;
    let values: string[];
    try {
      const args = parseArgs({ args: [...rest], options: { property: { type: 'string' } }, allowPositionals: true });
      property = args.values.property;
      values = args.positionals;
    } catch (err) {
      io.err(`${(err as Error).message}\n${USAGE}`);
      return 2;
    }
    if (property === undefined) {
      io.err(`encrypt needs --property <key>: the config key the value is written to; it decrypts under no other\n${USAGE}`);
      return 2;
    }
    let keys: Buffer[];
    try {
      keys = keysFromEnvironment(io.env);
    } catch (err) {
      io.err(`${(err as Error).message}\n`);
      return 2;
    }
    const key = keys[0];
    if (!key) {
      io.err(`no key: set ${KEY_ENV} (base64, 32 bytes) or ${KEY_FILE_ENV}\n`);
      return 2;
    }
    const plain = values.length > 0 ? values.join(' ') : (await io.readStdin()).replace(/\r?\n$/, '');
    let encrypted: string;
    try {
      encrypted = encryptValue(plain, key, property);
    } catch (err) {
      if (!(err instanceof MeshletError)) throw err;
      io.err(`${err.message}\n`);
      return 2;
    }
    io.out(`${encrypted}\n`);
    return 0;
  }
  io.err(USAGE);
  return command === undefined || command === 'help' || command === '--help' ? 0 : 2;
}
