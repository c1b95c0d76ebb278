/** One line of a diff: kept (` `), removed (`-`) or added (`+`). */
export interface DiffLine {
  readonly op: ' ' | '-' | '+';
  readonly text: string;
}

/** Beyond this many cells the middle of a diff is shown as one replaced block rather than computed. */
const MAX_CELLS = 4_000_000;

/** A line diff of `a` to `b` (longest common subsequence, after trimming the common ends). */
export function diffLines(a: readonly string[], b: readonly string[]): DiffLine[] {
  let start = 0;
  while (start < a.length && start < b.length && a[start] === b[start]) start++;
  let endA = a.length;
  let endB = b.length;
  while (endA > start && endB > start && a[endA - 1] === b[endB - 1]) {
    endA--;
    endB--;
  }
  const out: DiffLine[] = a.slice(0, start).map((text) => ({ op: ' ', text }));
  out.push(...middle(a.slice(start, endA), b.slice(start, endB)));
  for (let i = endA; i < a.length; i++) out.push({ op: ' ', text: a[i] as string });
  return out;
}

function middle(a: readonly string[], b: readonly string[]): DiffLine[] {
  const n = a.length;
  const m = b.length;
  if (n * m > MAX_CELLS) return [...a.map((text) => ({ op: '-' as const, text })), ...b.map((text) => ({ op: '+' as const, text }))];
  // lcs[i][j]: length of the LCS of a[i..] and b[j..], in one flat array.
  const w = m + 1;
  const lcs = new Uint32Array((n + 1) * w);
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lcs[i * w + j] =
        a[i] === b[j] ? (lcs[(i + 1) * w + j + 1] as number) + 1 : Math.max(lcs[(i + 1) * w + j] as number, lcs[i * w + j + 1] as number);
    }
  }
  const out: DiffLine[] = [];
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (a[i] === b[j]) {
      out.push({ op: ' ', text: a[i++] as string });
      j++;
    } else if ((lcs[(i + 1) * w + j] as number) >= (lcs[i * w + j + 1] as number)) out.push({ op: '-', text: a[i++] as string });
    else out.push({ op: '+', text: b[j++] as string });
  }
  while (i < n) out.push({ op: '-', text: a[i++] as string });
  while (j < m) out.push({ op: '+', text: b[j++] as string });
  return out;
}

/** Unified-diff text with `context` lines around each change; empty when nothing changed. */
export function unifiedDiff(before: string, after: string, labels: { from: string; to: string }, context = 3): string {
  const lines = diffLines(splitLines(before), splitLines(after));
  if (lines.every((l) => l.op === ' ')) return '';
  const show = new Array<boolean>(lines.length).fill(false);
  lines.forEach((l, k) => {
    if (l.op === ' ') return;
    for (let c = Math.max(0, k - context); c <= Math.min(lines.length - 1, k + context); c++) show[c] = true;
  });
  const out = [`--- ${labels.from}`, `+++ ${labels.to}`];
  let gap = false;
  lines.forEach((l, k) => {
    if (!show[k]) {
      gap = true;
      return;
    }
    if (gap || k === 0) out.push('@@');
    gap = false;
    out.push(`${l.op}${l.text}`);
  });
  return `${out.join('\n')}\n`;
}

const splitLines = (text: string): string[] => (text === '' ? [] : text.replace(/\n$/, '').split('\n'));

/**
 * A rule document as compared and shown: pretty JSON, so that a change of formatting alone
 * is no change, and a one-line document still diffs field by field.
 */
export function canonicalDocument(text: string | undefined | null): string {
  if (text === undefined || text === null) return '';
  try {
    return `${JSON.stringify(JSON.parse(text), null, 2)}\n`;
  } catch {
    return text;
  }
}
