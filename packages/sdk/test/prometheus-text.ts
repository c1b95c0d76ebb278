// A check of the Prometheus text exposition's structure (format 0.0.4, which OpenMetrics
// parsers hold to as well): each family's `# HELP` and `# TYPE` once, together, and its
// samples right after them, before the next family starts.
import assert from 'node:assert/strict';

/** The sample-name suffixes a family of each type may use beside its own name. */
const SUFFIXES: Readonly<Record<string, readonly string[]>> = {
  counter: [''],
  gauge: [''],
  untyped: [''],
  histogram: ['_bucket', '_sum', '_count'],
  summary: ['', '_sum', '_count'],
};

/** Asserts the structure above over a whole text; returns the families in order. */
export function assertFamiliesContiguous(text: string): string[] {
  const families: string[] = [];
  let current: { name: string; type: string | undefined } | undefined;
  const lines = text.split('\n');
  lines.forEach((line, i) => {
    const at = `line ${i + 1}: ${line}`;
    if (line === '') return;
    const meta = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*)(?: (.*))?$/.exec(line);
    if (meta) {
      const [, kind, name, rest] = meta as unknown as [string, string, string, string | undefined];
      if (kind === 'HELP') {
        assert.ok(!families.includes(name), `family declared twice, ${at}`);
        families.push(name);
        current = { name, type: undefined };
        return;
      }
      assert.equal(current?.name, name, `TYPE without its HELP right before it, ${at}`);
      assert.equal(current?.type, undefined, `TYPE twice, ${at}`);
      assert.ok(rest !== undefined && rest in SUFFIXES, `unknown type, ${at}`);
      current = { name, type: rest };
      return;
    }
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{.*\})? \S+$/.exec(line);
    assert.ok(sample, `not a sample, ${at}`);
    assert.ok(current?.type !== undefined, `sample before any HELP and TYPE, ${at}`);
    const ok = (SUFFIXES[current.type] ?? []).some((s) => sample[1] === `${current?.name}${s}`);
    assert.ok(ok, `sample not of the family declared last (${current.name}), ${at}`);
  });
  return families;
}
