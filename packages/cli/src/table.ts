/**
 * An aligned text table: a header row in capitals, columns padded to their widest cell,
 * two spaces apart, no trailing spaces. Cells are single-line and printable: what a table
 * shows is often stored text (an author, a metadata value) that anyone with write access
 * to the store chose.
 */
export function renderTable(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const all = [headers.map((h) => h.toUpperCase()), ...rows.map((r) => headers.map((_, i) => printable(r[i] ?? '')))];
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

/** C0 and C1 control characters and DEL: a terminal takes them as commands (`ESC[1A` moves the cursor up a line). */
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g;

/**
 * `s` on one line with no control character left: line breaks and tabs become a space,
 * every other control character its escape (`\x1b`), so that stored text cannot move the
 * cursor, erase lines or retitle the terminal, and still shows that something was there.
 */
export function printable(s: string): string {
  return s.replace(/[\r\n\t]+/g, ' ').replace(CONTROL, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}
