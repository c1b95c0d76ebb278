/**
 * An aligned text table: a header row in capitals, columns padded to their widest cell,
 * two spaces apart, no trailing spaces. Cells are single-line.
 */
export function renderTable(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const all = [headers.map((h) => h.toUpperCase()), ...rows.map((r) => headers.map((_, i) => oneLine(r[i] ?? '')))];
  const widths = headers.map((_, i) => Math.max(...all.map((r) => (r[i] as string).length)));
  return `${all
    .map((r) =>
      r
        .map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i] as number)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n')}\n`;
}

const oneLine = (s: string) => s.replace(/[\r\n\t]+/g, ' ');
