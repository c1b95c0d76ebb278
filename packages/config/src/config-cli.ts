import { encryptValue, generateKey, KEY_ENV, KEY_FILE_ENV, keysFromEnvironment } from './value-cipher.js';

export interface CliIo {
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Reads standard input to its end; for values kept out of argv (and shell history). */
  readonly readStdin: () => Promise<string>;
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
}

const USAGE = `usage:
  meshlet-config keygen              print a new base64 AES-256 key
  meshlet-config encrypt [value]     print ENC(...) for value (or standard input, without its final newline)
                                     under the first key of ${KEY_ENV} or ${KEY_FILE_ENV}
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
    const plain = rest.length > 0 ? rest.join(' ') : (await io.readStdin()).replace(/\r?\n$/, '');
    io.out(`${encryptValue(plain, key)}\n`);
    return 0;
  }
  io.err(USAGE);
  return command === undefined || command === 'help' || command === '--help' ? 0 : 2;
}
