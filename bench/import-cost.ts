// What a process pays at start to load the mesh: wall time from `node` starting to the
// import settled, each row a fresh process, rows taken in turn over the runs so a loaded
// machine moves every row alike. The bare `node` row is the floor every row includes;
// "added" is the row less that floor. node-redis is loaded on the first Redis connection
// (ratelimit's redis-module.ts), so its row is what an app that limits through Redis pays
// on top of `meshlet`, once.
import { execFile } from 'node:child_process';
import { fmt, machine, median, sized, spread, table } from './harness.js';

const RUNS = sized('BENCH_IMPORT_RUNS', 9, 3);

const ROWS: readonly { readonly name: string; readonly script: string }[] = [
  { name: 'node, nothing imported', script: '' },
  { name: "import('meshlet')", script: "await import('meshlet');" },
  {
    name: "import('meshlet'), createMesh, close",
    script: "const { createMesh } = await import('meshlet'); await createMesh({ service: 'web' }).close();",
  },
  { name: "import('@redis/client') alone", script: "await import('@redis/client');" },
  { name: "import('meshlet') and '@redis/client'", script: "await import('meshlet'); await import('@redis/client');" },
  { name: "import('@meshlet/cli')", script: "await import('@meshlet/cli');" },
];

function once(script: string): Promise<number> {
  const start = performance.now();
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['--input-type=module', '-e', script], (err) => (err ? reject(err) : resolve(performance.now() - start)));
  });
}

export async function importCost(): Promise<string> {
  const times = ROWS.map(() => [] as number[]);
  for (let r = 0; r < RUNS; r++) {
    for (const [i, row] of ROWS.entries()) (times[i] as number[]).push(await once(row.script));
    process.stderr.write(`import-cost: run ${r + 1}/${RUNS}\n`);
  }
  const floor = median(times[0] as number[]);
  const rows = ROWS.map((row, i) => {
    const t = times[i] as number[];
    const m = median(t);
    return [row.name, fmt(m), spread(t), i === 0 ? '' : fmt(m - floor), `${fmt(m / floor, 2)}x`];
  });
  return [
    `### Start: what loading the mesh costs a process\n`,
    `${machine()}; wall ms from spawning \`node\` to the import settled, median of ${RUNS} runs (rows in turn).\n`,
    table(['process', 'ms (median)', 'ms (min–max)', 'added over node', 'vs node'], rows),
  ].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(await importCost());
