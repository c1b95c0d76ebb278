// Regex conditions on tag values: the backtracking RegExp rules used to compile to, against
// the linear-time RE2 engine they compile to now (checkRegex, re2js), side by side in one
// process on the same values. Ordinary patterns on 512-byte values (the tag-value bound);
// then the patterns of issue 16, which backtrack polynomially or exponentially: RegExp only
// on short values (at 512 bytes `^.*.*.*.*=$` took 18.8 s), RE2 up to 64 KiB.

import { checkRegex } from '@meshlet/core';
import { fmt, machine, median, sized, table } from './harness.js';

const RUNS = sized('BENCH_RUNS', 5, 2);
/** Wall time each measurement aims at, ms. */
const TARGET_MS = sized('BENCH_REGEX_MS', 100, 20);

/** Median ns per call of `op` over RUNS runs, each sized to about TARGET_MS (at least one call). */
function nsPerOp(op: () => unknown): number {
  const t0 = process.hrtime.bigint();
  op();
  const once = Math.max(1, Number(process.hrtime.bigint() - t0));
  const n = Math.max(1, Math.min(1_000_000, Math.floor((TARGET_MS * 1e6) / once)));
  for (let i = 0; i < Math.min(n, 1000); i++) op();
  const runs: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    const s = process.hrtime.bigint();
    for (let i = 0; i < n; i++) op();
    runs.push(Number(process.hrtime.bigint() - s) / n);
  }
  return median(runs);
}

const pad = (s: string, length: number, filler = 'x') => (s + filler.repeat(length)).slice(0, length);
const time = (ns: number) => (ns >= 1e6 ? `${fmt(ns / 1e6, 1)} ms` : ns >= 1e4 ? `${fmt(ns / 1e3, 1)} µs` : `${fmt(ns)} ns`);

export async function regexConditions(): Promise<string> {
  const ua = pad('Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 ', 512, ' ');
  const ordinary: [pattern: string, value: string][] = [
    ['^u-\\d{4}$', 'u-1234'],
    ['^u-\\d{4}$', pad('u-1234', 512)],
    ['Chrome/1[0-9]{2}\\.', ua],
    ['^Mozilla/5\\.0 .*Firefox/', ua],
    ['(?:iPhone|iPad|Android)', ua],
    ['^(v1\\.2[0-9])$', pad('v1.21', 512)],
    ['[a-z]+(-[0-9])?$', pad('', 512, 'ab-')],
  ];
  const rows1 = ordinary.map(([pattern, value]) => {
    const js = new RegExp(pattern, 'u');
    const re2 = checkRegex(pattern, 'bench');
    if (js.test(value) !== re2.test(value)) throw new Error(`${pattern}: the engines disagree`);
    // Two values that alternate (the second differs in its last byte), so the memo of the last value does not answer.
    const vs = [value, `${value.slice(0, -1)}\u0001`];
    let i = 0;
    const a = nsPerOp(() => js.test(vs[i++ & 1] as string));
    const b = nsPerOp(() => re2.test(vs[i++ & 1] as string));
    const repeated = nsPerOp(() => re2.test(value));
    return [`\`${pattern}\``, value.length, String(re2.test(value)), time(a), time(b), `${fmt(b / a, 1)}x`, time(repeated)];
  });

  // Each with a value of n bytes that does not match, so a backtracking engine tries every split.
  const catastrophic: [pattern: string, value: (n: number) => string, jsSizes: number[]][] = [
    ['.*.*.*.*.*.*!', (n) => 'a'.repeat(n), [16, 24, 32]],
    ['^.*.*.*.*=$', (n) => 'a'.repeat(n), [32, 64, 96]],
    ['^(a+)+$', (n) => `${'a'.repeat(n - 1)}!`, [16, 20, 22]],
    ['^(\\w+\\s?)+$', (n) => `${pad('', n - 1, 'ab ')}!`, [12, 16, 18]],
  ];
  const rows2: (string | number)[][] = [];
  for (const [pattern, value, sizes] of catastrophic) {
    const js = new RegExp(pattern, 'u');
    const re2 = checkRegex(pattern, 'bench');
    for (const n of [...sizes, 512, 65_536]) {
      // Two values that alternate, so that neither engine answers from a memo of the last one.
      const vs = [value(n), `b${value(n).slice(1)}`];
      let i = 0;
      const a = sizes.includes(n) ? nsPerOp(() => js.test(vs[i++ & 1] as string)) : undefined;
      if (a !== undefined && vs.some((v) => js.test(v) !== re2.test(v))) throw new Error(`${pattern}: the engines disagree`);
      const b = nsPerOp(() => re2.test(vs[i++ & 1] as string));
      rows2.push([
        `\`${pattern}\``,
        fmt(n),
        a === undefined ? 'not run' : time(a),
        time(b),
        a === undefined ? '—' : `${fmt(a / b, a / b < 10 ? 1 : 0)}x`,
      ]);
    }
  }
  return [
    `## Regex conditions: RegExp (backtracking) vs RE2 (linear, re2js) (${machine()})`,
    '',
    'Ordinary patterns, per test (median of runs):',
    '',
    table(['pattern', 'value bytes', 'matches', 'RegExp', 'RE2', 'RE2 / RegExp', 'RE2, same value again (memo)'], rows1),
    '',
    "Issue 16's patterns on a value that does not match (RegExp not run where it would take seconds to hours):",
    '',
    table(['pattern', 'value bytes', 'RegExp', 'RE2', 'RegExp / RE2'], rows2),
  ].join('\n');
}
