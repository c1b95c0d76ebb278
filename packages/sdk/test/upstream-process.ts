// Upstream instances as real processes for the dead-instance tests: start one, read what
// reached it, kill it with SIGKILL and wait until its port is closed.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const CHILD = fileURLToPath(new URL('./fixtures/upstream-child.js', import.meta.url));

export interface UpstreamProcess {
  readonly name: string;
  readonly port: number;
  /** Ids of the requests that reached it (its `x-request-id` headers), in order. */
  readonly seen: string[];
  /** SIGKILL, and resolves once the process is gone (its port closed by the kernel). */
  kill(): Promise<void>;
}

export async function startUpstream(name: string, options: { slow?: boolean } = {}): Promise<UpstreamProcess> {
  const proc: ChildProcess = spawn(process.execPath, [CHILD], {
    env: { ...process.env, MESHLET_TEST_NAME: name, ...(options.slow ? { MESHLET_TEST_SLOW: '1' } : {}) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const seen: string[] = [];
  let exited = false;
  proc.once('exit', () => {
    exited = true;
  });
  const port = await new Promise<number>((resolve, reject) => {
    proc.once('error', reject);
    proc.once('exit', (code) => reject(new Error(`upstream ${name} exited (${code}) before it listened`)));
    createInterface({ input: proc.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      const event = JSON.parse(line) as { event: string; port?: number; id?: string };
      if (event.event === 'listening') resolve(event.port as number);
      else if (event.event === 'request') seen.push(event.id as string);
    });
  });
  return {
    name,
    port,
    seen,
    async kill() {
      if (exited) return;
      const gone = once(proc, 'exit');
      proc.kill('SIGKILL');
      await gone;
    },
  };
}
