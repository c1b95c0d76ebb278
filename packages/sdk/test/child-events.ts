// A child process that reports what it does as JSON lines on stdout, for the tests that
// send it real signals (signal-stop.test.ts, repeat-signal.test.ts).
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';

export const WAIT_MS = 30_000;

export type ChildEvent = { event: string; [field: string]: unknown };

export interface Child {
  readonly proc: ChildProcess;
  /** The events reported so far, in order. */
  readonly events: ChildEvent[];
  /** Resolves with the exit code and the signal that killed it, if one did. */
  readonly exited: Promise<[number | null, NodeJS.Signals | null]>;
  /** Resolves with the first event named `name` (and matching `where`); rejects if the child exits or WAIT_MS passes first. */
  event(name: string, where?: (e: ChildEvent) => boolean): Promise<ChildEvent>;
  /** The events and the tail of stderr, for an assertion's message. */
  describe(): string;
}

/** Starts `script` with node; `stdin: true` leaves its stdin a pipe the test writes to. */
export function startChild(script: string, env: Record<string, string>, options: { stdin?: boolean } = {}): Child {
  const proc: ChildProcess = spawn(process.execPath, [script], {
    env: { ...process.env, ...env },
    stdio: [options.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
  });
  const events: ChildEvent[] = [];
  const listeners = new Set<() => void>();
  let stderr = '';
  proc.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d).slice(-4000);
  });
  createInterface({ input: proc.stdout as NodeJS.ReadableStream }).on('line', (line) => {
    try {
      events.push(JSON.parse(line) as ChildEvent);
    } catch {
      events.push({ event: 'unparsed', line });
    }
    for (const l of listeners) l();
  });
  const exited = once(proc, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  const describe = () => `child events: ${JSON.stringify(events)}\nchild stderr: ${stderr}`;
  const event = (name: string, where: (e: ChildEvent) => boolean = () => true) =>
    new Promise<ChildEvent>((resolve, reject) => {
      const check = () => {
        const found = events.find((e) => e.event === name && where(e));
        if (!found) return;
        done();
        resolve(found);
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`the child did not report "${name}" within ${WAIT_MS} ms\n${describe()}`));
      }, WAIT_MS);
      const onExit = () => {
        check();
        done();
        reject(new Error(`the child exited before reporting "${name}"\n${describe()}`));
      };
      const done = () => {
        clearTimeout(timer);
        listeners.delete(check);
        proc.off('exit', onExit);
      };
      listeners.add(check);
      proc.once('exit', onExit);
      check();
    });
  return { proc, events, exited, event, describe };
}
