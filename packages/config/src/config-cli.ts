import { parseArgs } from 'node:util';
import { MeshletError } from '@meshlet/core';
import { CONFIG_DOCUMENT_LIMITS } from './config-format.js';
import { encryptValue, generateKey, KEY_ENV, KEY_FILE_ENV, keysFromEnvironment } from './value-cipher.js';

/**
 * The largest value `encrypt` takes, in characters: a config document's (CONFIG_DOCUMENT_LIMITS),
 * which no one value can exceed. Standard input is read to one character past it, no further.
 */
export const CLI_VALUE_MAX_CHARS = CONFIG_DOCUMENT_LIMITS.chars;

export interface CliIo {
  readonly env: Readonly<Record<string, string | undefined>>;
  /**
   * Reads standard input to its end, or to `maxChars` characters past which the rest is not
   * read (the command then refuses the value); for values kept out of argv (and shell history).
   */
  readonly readStdin: (maxChars: number) => Promise<string>;
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
    // It takes nothing: a stray argument is a mistake (a value meant for encrypt?), not ignored.
    if (rest.length > 0) {
      io.err(`keygen takes no arguments (${JSON.stringify(rest[0]?.slice(0, 40))})\n${USAGE}`);
      return 2;
    }
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
    const plain = values.length > 0 ? values.join(' ') : (await io.readStdin(CLI_VALUE_MAX_CHARS + 2)).replace(/\r?\n$/, '');
    if (plain.length > CLI_VALUE_MAX_CHARS) {
      io.err(`the value is over ${CLI_VALUE_MAX_CHARS} characters, the most a config document holds\n`);
      return 2;
    }
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
  // Asked for: the usage on standard output, success. Anything else (nothing, an unknown
  // command) is a usage error, as `meshlet` answers it: exit 2.
  if (command === 'help' || command === '--help' || command === '-h') {
    io.out(USAGE);
    return 0;
  }
  io.err(command === undefined ? USAGE : `unknown command ${JSON.stringify(command.slice(0, 40))}\n${USAGE}`);
  return 2;
}
