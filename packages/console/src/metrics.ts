/** One sample of Prometheus text: `name{labels} value`. */
export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** Lines read from one `/metrics` answer, at most. */
export const MAX_METRIC_LINES = 50_000;

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

/**
 * Reads the samples of Prometheus text exposition (0.0.4) whose names start with one of
 * `prefixes`; comments, other families and malformed lines are skipped.
 */
export function parsePrometheus(text: string, prefixes: readonly string[]): Sample[] {
  const out: Sample[] = [];
  let lines = 0;
  for (const line of text.split('\n')) {
    if (++lines > MAX_METRIC_LINES) break;
    if (line === '' || line.startsWith('#') || !prefixes.some((p) => line.startsWith(p))) continue;
    const m = LINE.exec(line);
    if (!m) continue;
    const value = Number(m[3]);
    if (!Number.isFinite(value)) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(LABEL))
      labels[l[1] as string] = (l[2] as string).replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    out.push({ name: m[1] as string, labels, value });
  }
  return out;
}

/** A counter's increase between two polls of the console, and the time between them. */
export interface Step {
  readonly at: number;
  readonly delta: number;
  readonly seconds: number;
}

/**
 * Counter values per key as the console polls them, kept as the last `maxSteps` increases
 * (a restarted process's counter starting again counts from zero). Bounded in keys too.
 */
export class CounterHistory {
  readonly #last = new Map<string, { at: number; value: number }>();
  readonly #steps = new Map<string, Step[]>();
  readonly #maxSteps: number;
  readonly #maxKeys: number;

  constructor(maxSteps = 60, maxKeys = 10_000) {
    this.#maxSteps = maxSteps;
    this.#maxKeys = maxKeys;
  }

  /** Records a counter's value now; polls closer than `minIntervalMs` to the last are merged into it. */
  record(key: string, at: number, value: number, minIntervalMs = 1_000): void {
    const last = this.#last.get(key);
    if (last === undefined) {
      if (this.#last.size >= this.#maxKeys) {
        const oldest = this.#last.keys().next().value;
        if (oldest !== undefined) {
          this.#last.delete(oldest);
          this.#steps.delete(oldest);
        }
      }
      this.#last.set(key, { at, value });
      return;
    }
    if (at - last.at < minIntervalMs) return;
    const delta = value >= last.value ? value - last.value : value;
    let steps = this.#steps.get(key);
    if (!steps) {
      steps = [];
      this.#steps.set(key, steps);
    }
    steps.push({ at, delta, seconds: (at - last.at) / 1000 });
    if (steps.length > this.#maxSteps) steps.shift();
    this.#last.set(key, { at, value });
  }

  steps(key: string): readonly Step[] {
    return this.#steps.get(key) ?? [];
  }

  /** Per second over the last step, or undefined before two polls. */
  rate(key: string): number | undefined {
    const s = this.#steps.get(key)?.at(-1);
    return s && s.seconds > 0 ? s.delta / s.seconds : undefined;
  }
}
