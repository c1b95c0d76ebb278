/**
 * What `meshlet` exits with. Scripts may rely on these; a new meaning gets a new number,
 * never a reused one.
 */
export const ExitCode = {
  /** Done (for `rules diff`: whether or not there were differences). */
  ok: 0,
  /** Something failed: the store or registry could not be reached, a file could not be read. */
  failure: 1,
  /** The command line was wrong; the usage was printed. */
  usage: 2,
  /** Compare-and-set refused the write: the rules changed since they were read. Read again and retry. */
  conflict: 3,
  /** The rule document is invalid; the message names the field. Nothing was written. */
  invalidRules: 4,
  /** No such service, rules or version. */
  notFound: 5,
  /** The change was shown and not confirmed; nothing was written. */
  declined: 6,
} as const;

export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];
