import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { RULE_KINDS } from 'meshlet/rule-kinds';
import { runCli } from '../src/index.js';

/** The command as a user runs it: the `meshlet` bin of the package meshlet, which runs this CLI with the mesh's rule kinds. */
export const BIN = fileURLToPath(new URL('../../bin/meshlet.js', import.meta.resolve('meshlet')));

export interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface Running {
  readonly child: ChildProcessWithoutNullStreams;
  /** Resolves once stdout contains `text`. */
  readonly waitForOutput: (text: string) => Promise<void>;
  readonly done: Promise<Run>;
}

/** Starts `meshlet <args>` with a clean environment plus `env`. */
export function start(args: readonly string[], env: Record<string, string> = {}): Running {
  const child = spawn(process.execPath, [BIN, ...args], {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', USER: 'tester', ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  const waiters: { text: string; resolve: () => void }[] = [];
  child.stdout.on('data', (d: Buffer) => {
    stdout += d;
    for (const w of [...waiters]) {
      if (stdout.includes(w.text)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
    }
  });
  child.stderr.on('data', (d: Buffer) => {
    stderr += d;
  });
  const done = new Promise<Run>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
  return {
    child,
    done,
    waitForOutput: (text) =>
      stdout.includes(text)
        ? Promise.resolve()
        : new Promise<void>((resolve, reject) => {
            waiters.push({ text, resolve });
            void done.then((r) => reject(new Error(`exited (${r.code}) before printing ${JSON.stringify(text)}: ${r.stdout} ${r.stderr}`)));
          }),
  };
}

/** Runs `meshlet <args>` to the end with standard input closed. */
export function meshlet(args: readonly string[], env: Record<string, string> = {}): Promise<Run> {
  const r = start(args, env);
  r.child.stdin.end();
  return r.done;
}

/**
 * Runs the same function the binary runs, in this process: for the many small cases,
 * where a process each would only add startup time.
 */
export async function meshletInProcess(args: readonly string[], env: Record<string, string> = {}): Promise<Run> {
  let stdout = '';
  let stderr = '';
  const code = await runCli(
    args,
    {
      env: { USER: 'tester', ...env },
      out: (t) => {
        stdout += t;
      },
      err: (t) => {
        stderr += t;
      },
      interactive: false,
      ask: async () => undefined,
    },
    { kinds: RULE_KINDS },
  );
  return { code, stdout, stderr };
}
