import { createInterface } from 'node:readline';

/** Everything the CLI touches outside itself, so that tests and embedders can run it in-process. */
export interface CliIo {
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
  /** True when a person can answer a question (standard input is a terminal). */
  readonly interactive: boolean;
  /** Prints `question` and reads one line of standard input; undefined at end of input. */
  readonly ask: (question: string) => Promise<string | undefined>;
}

/** The process's own standard streams and environment. */
export function processIo(): CliIo {
  return {
    env: process.env,
    out: (t) => process.stdout.write(t),
    err: (t) => process.stderr.write(t),
    interactive: process.stdin.isTTY === true,
    ask: (question) =>
      new Promise((resolve) => {
        process.stdout.write(question);
        const rl = createInterface({ input: process.stdin, terminal: false });
        let answered = false;
        rl.once('line', (line) => {
          answered = true;
          rl.close();
          resolve(line);
        });
        rl.once('close', () => {
          if (!answered) resolve(undefined);
        });
      }),
  };
}
