import { MeshletError } from '@meshlet/core';
import { ExitCode, type ExitCodeValue } from './exit-code.js';

/** A failure the CLI reports with its own exit code and message (no stack trace). */
export class CliError extends MeshletError {
  readonly exitCode: ExitCodeValue;
  constructor(code: string, message: string, exitCode: ExitCodeValue) {
    super(code, message);
    this.exitCode = exitCode;
  }
}

/** The command line is wrong: the message says what, and the command's usage follows. */
export class UsageError extends CliError {
  static readonly code = 'MESHLET_CLI_USAGE';
  constructor(message: string) {
    super(UsageError.code, message, ExitCode.usage);
  }
}

/** A service, rule document or version that does not exist. */
export class NotFoundError extends CliError {
  static readonly code = 'MESHLET_CLI_NOT_FOUND';
  constructor(message: string) {
    super(NotFoundError.code, message, ExitCode.notFound);
  }
}
