/**
 * Up-front checks of the files a command reads, so that a bad path fails before any work with one
 * `actvar: error:` line (outputs: ./outputs.ts).
 */
import { UserError } from './errors.js';
import { unreadableFile } from '../io/files.js';

/** Refuse `file` unless it is a readable regular file; a relative `models/…` path gets a hint about the working folder. */
export function checkReadable(file: string, flag: string): void {
  const why = unreadableFile(file);
  if (why) {
    throw new UserError(`${flag} ${file}: ${why === 'not a file' ? why : `cannot read the file (${why})`}` +
      `${file.startsWith('models') ? ' (run from the repository root, or give the path)' : ''}`);
  }
}
