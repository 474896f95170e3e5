/**
 * The output policy of every command: nothing an input is, nothing that is not a regular file, and
 * nothing half-written.
 *
 *   const plan = new OutputPlan();
 *   plan.input('--var', file);                 // files the command reads (compared by device + inode)
 *   plan.file('--out', file, { force });       // a file the command will write
 *   plan.dir('--out-dir', dir);                // a folder the command will write into
 *   plan.check();                              // before any work: UserError (exit 2) on any conflict
 *   plan.prepare();                            // right before the work: create the folders, probe them
 *   writeOutput(file, bytes);                  // temp file in the same folder, then rename
 *   keepOnFailure('--out', file, write);       // trained weights: on failure, keep them elsewhere
 *
 * Refused by `check()`: an empty path; an output that is an input (same device and inode, whatever
 * the spelling); two outputs that are the same path; an existing output that is not a regular file
 * (directory, symbolic link, FIFO, device, socket: never replaced); with `noClobber`, an existing
 * file unless `force`; a folder path whose nearest existing ancestor is not a writable folder.
 * `prepare()` creates missing folders one level at a time (bounded: no recursive mkdir, which loops
 * forever under /proc) and writes and removes a probe file in each, so that read-only file systems
 * and pseudo file systems fail here, before the work, rather than after it; what it created is removed
 * again on failure.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as nodePath from 'node:path';
import { UserError } from './errors.js';

/** Deepest folder path `prepare()` creates (components below the nearest existing folder). */
const MAX_NEW_DEPTH = 32;

interface Target { flag: string; given: string; abs: string; kind: 'file' | 'dir'; force: boolean; noClobber: boolean }

function lstatOrNull(p: string): fs.Stats | null {
  try { return fs.lstatSync(p); } catch { return null; }
}
function statOrNull(p: string): fs.Stats | null {
  try { return fs.statSync(p); } catch { return null; }
}

function kindOf(st: fs.Stats): string {
  if (st.isSymbolicLink()) return 'a symbolic link';
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  if (st.isSocket()) return 'a socket';
  return st.isFile() ? 'a regular file' : 'not a regular file';
}

/**
 * The canonical form of a path that may not exist yet: the real path of its nearest existing
 * ancestor plus the rest, so that two spellings of one target compare equal.
 */
function canonical(abs: string): string {
  let head = abs;
  const rest: string[] = [];
  for (let i = 0; i < 4096; i++) {
    try { return nodePath.join(fs.realpathSync(head), ...rest.reverse()); } catch { /* go up */ }
    const up = nodePath.dirname(head);
    if (up === head) break;
    rest.push(nodePath.basename(head));
    head = up;
  }
  return abs;
}

/** Nearest existing ancestor of `abs` (itself excluded) and the missing folders below it, top first. */
function existingAncestor(abs: string): { dir: string; missing: string[] } {
  const missing: string[] = [];
  let dir = nodePath.dirname(abs);
  for (let i = 0; i < 4096 && !lstatOrNull(dir); i++) {
    missing.unshift(dir);
    const up = nodePath.dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  return { dir, missing };
}

export class OutputPlan {
  private inputs: { flag: string; given: string; dev: number; ino: number }[] = [];
  private targets: Target[] = [];
  private created: string[] = [];

  /** A file the command reads. Missing files are the caller's to report (they are not outputs' business). */
  input(flag: string, file: string | undefined): this {
    if (file === undefined) return this;
    const st = statOrNull(file);
    if (st) this.inputs.push({ flag, given: file, dev: st.dev, ino: st.ino });
    return this;
  }

  /** Every regular file under a folder the command reads (e.g. --models, --data-dir), one level deep. */
  inputDir(flag: string, dir: string | undefined): this {
    if (dir === undefined) return this;
    let names: string[] = [];
    try { names = fs.readdirSync(dir); } catch { return this; }
    for (const n of names) this.input(flag, nodePath.join(dir, n));
    return this;
  }

  /** A file to write. `noClobber`: an existing file is replaced only with `force` (training outputs). */
  file(flag: string, file: string | undefined, o: { force?: boolean; noClobber?: boolean } = {}): this {
    if (file === undefined) return this;
    this.targets.push({ flag, given: file, abs: nodePath.resolve(file), kind: 'file', force: !!o.force, noClobber: !!o.noClobber });
    return this;
  }

  /** A folder to write into (created when missing; an existing folder is used as it is). */
  dir(flag: string, dir: string | undefined): this {
    if (dir === undefined) return this;
    this.targets.push({ flag, given: dir, abs: nodePath.resolve(dir), kind: 'dir', force: false, noClobber: false });
    return this;
  }

  /** All refusals, before any work; writes nothing. */
  check(): void {
    const seen = new Map<string, Target>();
    for (const t of this.targets) {
      const where = `${t.flag} ${t.given}`;
      if (t.given.trim() === '') throw new UserError(`${t.flag} needs a path, got an empty string`);
      const lst = lstatOrNull(t.abs);
      if (lst) {
        if (t.kind === 'dir') {
          const st = statOrNull(t.abs);
          if (!st?.isDirectory()) throw new UserError(`${where}: exists and is ${st ? kindOf(st) : 'a dangling link'}, expected a directory`);
          try { fs.accessSync(t.abs, fs.constants.W_OK); } catch { throw new UserError(`${where}: the directory is not writable`); }
        } else {
          if (!lst.isFile()) {
            throw new UserError(`${where}: exists and is ${kindOf(lst)}; actvar only replaces regular files (give another path${lst.isDirectory() ? ', e.g. a file inside it' : ''})`);
          }
          const inp = this.inputs.find((i) => i.dev === lst.dev && i.ino === lst.ino);
          if (inp) throw new UserError(`${where}: this is the input ${inp.flag} ${inp.given}; writing there would destroy it (give another output path)`);
          if (t.noClobber && !t.force) throw new UserError(`${where}: the file exists; add --force to replace it, or give another path`);
        }
      }
      // the folder it goes into (or, for a missing folder, its nearest existing ancestor) must be a writable folder
      if (!(t.kind === 'dir' && lst)) {
        const { dir, missing } = existingAncestor(t.abs);
        const st = statOrNull(dir);
        if (!st?.isDirectory()) throw new UserError(`${where}: ${dir} is ${st ? kindOf(st) : 'missing'}, not a directory`);
        if (missing.length + (t.kind === 'dir' ? 1 : 0) > MAX_NEW_DEPTH) {
          throw new UserError(`${where}: would create more than ${MAX_NEW_DEPTH} nested directories below ${dir}`);
        }
        try { fs.accessSync(dir, fs.constants.W_OK); } catch { throw new UserError(`${where}: cannot write there (${dir} is not a writable directory)`); }
      }
      const key = canonical(t.abs);
      const prev = seen.get(key);
      if (prev) throw new UserError(`${where} and ${prev.flag} ${prev.given} name the same ${t.kind === 'dir' && prev.kind === 'dir' ? 'directory' : 'path'}; give each output its own path`);
      seen.set(key, t);
    }
    // a file output inside a folder output is fine; a file output that is an ancestor of another output is not
    const ancestors = new Map<string, Target>();
    for (const [key, t] of seen) {
      for (let d = nodePath.dirname(key), i = 0; d !== nodePath.dirname(d) && i < 4096; d = nodePath.dirname(d), i++) if (!ancestors.has(d)) ancestors.set(d, t);
    }
    for (const [key, t] of seen) {
      const under = t.kind === 'file' ? ancestors.get(key) : undefined;
      if (under) throw new UserError(`${t.flag} ${t.given} is a file path, but ${under.flag} ${under.given} needs it to be a directory`);
    }
  }

  /**
   * Create the missing folders (bounded, one level at a time) and probe each target folder with a
   * temporary file. On failure removes what it created and throws a UserError.
   */
  prepare(): void {
    const probed = new Set<string>();
    try {
      for (const t of this.targets) {
        const dir = t.kind === 'dir' ? t.abs : nodePath.dirname(t.abs);
        if (probed.has(dir)) continue;
        probed.add(dir);
        const { missing } = existingAncestor(t.abs);
        for (const d of t.kind === 'dir' ? [...missing, t.abs] : missing) {
          if (lstatOrNull(d)) continue;
          try { fs.mkdirSync(d); } catch (e) {
            throw new UserError(`${t.flag} ${t.given}: cannot create the directory ${d} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
          }
          this.created.push(d);
        }
        const probe = nodePath.join(dir, `.actvar-probe-${process.pid}-${Math.random().toString(36).slice(2)}`);
        try {
          fs.closeSync(fs.openSync(probe, 'wx'));
          fs.unlinkSync(probe);
        } catch (e) {
          throw new UserError(`${t.flag} ${t.given}: cannot write in ${dir} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
        }
      }
    } catch (e) {
      this.cleanup();
      throw e;
    }
  }

  /** Remove the folders `prepare()` created that are still empty (after a failure). */
  cleanup(): void {
    for (const d of this.created.reverse()) { try { fs.rmdirSync(d); } catch { /* not empty or gone */ } }
    this.created = [];
  }
}

/**
 * Write `bytes` to `file` atomically: a temporary file in the same folder, then rename over it. An
 * existing non-regular file at `file` (a device, FIFO, link, folder) is refused, never replaced.
 */
export function writeOutput(file: string, bytes: Uint8Array | string): void {
  writeVia(file, (tmp) => fs.writeFileSync(tmp, bytes, { flag: 'wx' }));
}

/** The same, with a writer that fills the temporary path (e.g. writeSafetensors). */
export function writeVia(file: string, write: (tmp: string) => void): void {
  const abs = nodePath.resolve(file);
  const lst = lstatOrNull(abs);
  if (lst && !lst.isFile()) throw new UserError(`${file}: exists and is ${kindOf(lst)}; actvar only replaces regular files`);
  const tmp = nodePath.join(nodePath.dirname(abs), `.${nodePath.basename(abs)}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`);
  try {
    write(tmp);
    fs.renameSync(tmp, abs);
  } catch (e) {
    try { fs.unlinkSync(tmp); } catch { /* never created or gone */ }
    throw e;
  }
}

/**
 * Write the result of a long run (trained weights) to `file`; if that fails, write it into the
 * system's temporary folder instead and report both (UserError, so the CLI exits 2 with one line).
 */
export function keepOnFailure(flag: string, file: string, write: (tmp: string) => void): void {
  try {
    writeVia(file, write);
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
    const kept = nodePath.join(os.tmpdir(), `actvar-kept-${process.pid}-${nodePath.basename(file)}`);
    try {
      writeVia(kept, write);
    } catch (e2) {
      throw new UserError(`${flag} ${file}: the final write failed (${why}), and so did keeping the result in ${kept} (${(e2 as NodeJS.ErrnoException).code ?? (e2 as Error).message}); the trained weights are lost`);
    }
    throw new UserError(`${flag} ${file}: the final write failed (${why}); the trained weights were kept in ${kept}`);
  }
}

/** `runs/<command>-<UTC time>` below the working folder (a fresh name: `-2`, `-3`, … when taken). */
export function defaultRunDir(command: string, now = new Date()): string {
  const t = now.toISOString().replace(/\.\d+Z$/, 'Z').replace(/[-:]/g, '').replace('T', '-');
  const base = nodePath.join('runs', `${command}-${t}`);
  let p = base;
  for (let i = 2; i < 1000 && lstatOrNull(p); i++) p = `${base}-${i}`;
  return p;
}
