/**
 * Up-front file checks shared by the command line and the demo, so that a bad path fails before any
 * work with one clear reason (callers wrap it in their own error type and wording).
 */
import * as fs from 'node:fs';
import * as nodePath from 'node:path';

/** Why `path` cannot be read as a file, or null: 'not a file', or the system error code (ENOENT, EACCES, …). */
export function unreadableFile(path: string): string | null {
  try {
    if (!fs.statSync(path).isFile()) return 'not a file';
    fs.accessSync(path, fs.constants.R_OK);
    return null;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code ?? (e as Error).message;
  }
}

/**
 * Why nothing can be written at `path` (a directory when `isDir`, else a file path), or null: the path
 * itself has the wrong kind, or its nearest existing ancestor is not a writable directory.
 */
export function unwritableTarget(path: string, isDir: boolean): string | null {
  const abs = nodePath.resolve(path);
  if (isDir && fs.existsSync(abs) && !fs.statSync(abs).isDirectory()) return 'exists and is not a directory';
  if (!isDir && fs.existsSync(abs) && fs.statSync(abs).isDirectory()) return 'is a directory, expected a file path';
  let dir = isDir ? abs : nodePath.dirname(abs);
  while (!fs.existsSync(dir)) dir = nodePath.dirname(dir);
  try {
    if (!fs.statSync(dir).isDirectory()) throw new Error('not a directory');
    fs.accessSync(dir, fs.constants.W_OK);
    return null;
  } catch {
    return `cannot write there (${dir} is not a writable directory)`;
  }
}
