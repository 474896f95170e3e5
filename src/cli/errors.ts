/**
 * CLI error policy: a user mistake (bad flag, missing file, bad env var) prints one line,
 * `actvar: error: <message>`, and exits 2; anything else is a bug: message + stack, exit 1.
 */
import { CommanderError } from 'commander';

/** Throw this for mistakes the user can fix; the message should say what is wrong and what would be right. */
export class UserError extends Error {
  readonly userError = true;
  constructor(message: string) {
    super(message);
    this.name = 'UserError';
  }
}

/**
 * True for UserError and for errors from lower layers marked `userError: true`
 * (src/backend and others cannot import the CLI, so they mark plain Errors instead).
 */
export function isUserError(e: unknown): boolean {
  return e instanceof UserError || (typeof e === 'object' && e !== null && (e as { userError?: unknown }).userError === true);
}

export const EXIT_USER_ERROR = 2;
export const EXIT_BUG = 1;

/** Report `e` on stderr and return the exit code (no exit here, so tests can call it). */
export function reportError(e: unknown, write: (s: string) => void = (s) => process.stderr.write(s)): number {
  if (e instanceof CommanderError) {
    // commander has already printed its message (through outputError, prefixed "actvar: ")
    return e.exitCode === 0 ? 0 : EXIT_USER_ERROR;
  }
  if (isUserError(e)) {
    write(`actvar: error: ${(e as Error).message}\n`);
    return EXIT_USER_ERROR;
  }
  const err = e instanceof Error ? e : new Error(String(e));
  write(`actvar: internal error (please report it): ${err.stack ?? err.message}\n`);
  return EXIT_BUG;
}

/** Run the CLI body; on failure report and exit with the policy's code. */
export async function runCli(main: () => Promise<void>): Promise<void> {
  try {
    await main();
  } catch (e) {
    process.exit(reportError(e));
  }
}
