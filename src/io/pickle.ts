/**
 * A minimal, non-executing unpickler (Python pickle protocols 2–5, the opcode subset that
 * `torch.save` checkpoints use; opcode semantics from CPython Lib/pickletools.py).
 *
 * Nothing is ever "called": GLOBAL / STACK_GLOBAL ask `hooks.findGlobal`, which either returns an
 * inert marker or throws (the caller's allow-list); REDUCE / NEWOBJ / BUILD / BINPERSID are handed
 * to the hooks too. A plain stack machine (no recursion), so hostile nesting cannot overflow the JS
 * stack; every length operand is checked against the bytes left before anything is decoded; each
 * opcode consumes at least one byte, so the loop ends within `bytes.length` steps.
 *
 * Python values map to:
 *   None → null, bool → boolean, int → number (bigint when beyond ±2^53), float → number,
 *   str → string, bytes → Uint8Array, list → Array, tuple → Array registered as a tuple
 *   (`isTuple`), dict / OrderedDict → Map (insertion order kept; keys are primitives, or tuples by
 *   identity), anything else → whatever the hooks return.
 */
import { PickleError } from './errors.js';

/** An unresolved `module.name` reference produced by GLOBAL (resolution is the hooks' business). */
export class PyGlobal {
  constructor(readonly module: string, readonly name: string) {}
  get qualname(): string { return `${this.module}.${this.name}`; }
  toString(): string { return this.qualname; }
}

export interface UnpicklerHooks {
  /** GLOBAL module name: return the value to push, or throw to refuse. */
  findGlobal(module: string, name: string): unknown;
  /** REDUCE: the result of `callable(*args)`. */
  reduce(callable: unknown, args: unknown[]): unknown;
  /** NEWOBJ: the result of `cls.__new__(cls, *args)`. */
  newObj(cls: unknown, args: unknown[]): unknown;
  /** BUILD: apply `state` to `obj` (setstate / __dict__.update); returns the object to keep on the stack. */
  build(obj: unknown, state: unknown): unknown;
  /** BINPERSID: the object for a persistent id. */
  persistentLoad(pid: unknown): unknown;
}

export interface UnpickleResult {
  value: unknown;
  /** From PROTO (0 when the stream has none). */
  protocol: number;
  /** Executed opcodes by pickletools name. */
  opcodes: Record<string, number>;
  /** `module.name` of every GLOBAL / STACK_GLOBAL, in first-seen order, without duplicates. */
  globals: string[];
  /** Bytes consumed, STOP included (where a following pickle starts). */
  end: number;
}

const tuples = new WeakSet<object>();
/** True for arrays that came from a pickled tuple. */
export function isTuple(x: unknown): x is unknown[] { return Array.isArray(x) && tuples.has(x); }
/** Register an array as a Python tuple (see `isTuple`). */
export function tuple(items: unknown[]): unknown[] { tuples.add(items); return items; }

/** Largest memo index accepted (memo is a Map, so this bounds keys, not allocation). */
const MAX_MEMO_INDEX = 0x7fffffff;
/** LONG1 / LONG4 byte counts above this are refused (2048-bit integers are far beyond any use here). */
const MAX_LONG_BYTES = 256;
/** GLOBAL module / name lines longer than this are refused. */
const MAX_GLOBAL_LINE = 1024;

const OPNAMES: Record<number, string> = {
  0x80: 'PROTO', 0x95: 'FRAME', 0x2e: 'STOP', 0x63: 'GLOBAL', 0x93: 'STACK_GLOBAL',
  0x71: 'BINPUT', 0x72: 'LONG_BINPUT', 0x94: 'MEMOIZE', 0x68: 'BINGET', 0x6a: 'LONG_BINGET',
  0x28: 'MARK', 0x30: 'POP', 0x31: 'POP_MARK', 0x32: 'DUP',
  0x29: 'EMPTY_TUPLE', 0x74: 'TUPLE', 0x85: 'TUPLE1', 0x86: 'TUPLE2', 0x87: 'TUPLE3',
  0x7d: 'EMPTY_DICT', 0x64: 'DICT', 0x73: 'SETITEM', 0x75: 'SETITEMS',
  0x5d: 'EMPTY_LIST', 0x6c: 'LIST', 0x61: 'APPEND', 0x65: 'APPENDS',
  0x58: 'BINUNICODE', 0x8c: 'SHORT_BINUNICODE', 0x8d: 'BINUNICODE8',
  0x42: 'BINBYTES', 0x43: 'SHORT_BINBYTES', 0x8e: 'BINBYTES8',
  0x4b: 'BININT1', 0x4d: 'BININT2', 0x4a: 'BININT', 0x8a: 'LONG1', 0x8b: 'LONG4',
  0x89: 'NEWFALSE', 0x88: 'NEWTRUE', 0x4e: 'NONE', 0x47: 'BINFLOAT',
  0x52: 'REDUCE', 0x62: 'BUILD', 0x81: 'NEWOBJ', 0x51: 'BINPERSID',
};

function perr(code: string, msg: string): PickleError { return new PickleError(code, msg); }

const utf8 = new TextDecoder('utf-8'); // non-fatal: invalid UTF-8 becomes U+FFFD instead of throwing

/** True for values usable as dict keys (hashable in Python and meaningful as Map keys). */
function isKey(k: unknown): boolean {
  const t = typeof k;
  return k === null || t === 'string' || t === 'number' || t === 'bigint' || t === 'boolean' || isTuple(k);
}

/** Run the pickle program in `bytes`; returns the value at STOP plus opcode statistics. */
export function unpickle(bytes: Uint8Array, hooks: UnpicklerHooks): UnpickleResult {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = bytes.length;
  let pos = 0;
  let stack: unknown[] = [];
  const metastack: unknown[][] = [];
  const memo = new Map<number, unknown>();
  const opcodes: Record<string, number> = {};
  const globals: string[] = [];
  const seenGlobals = new Set<string>();
  let protocol = 0;
  let opPos = 0;

  const need = (k: number, what: string): void => {
    if (k > n - pos) throw perr('pickle-truncated', `${what} at byte ${opPos} needs ${k} bytes, only ${n - pos} left`);
  };
  const u8 = (): number => { need(1, 'operand'); return bytes[pos++]; };
  const u16 = (): number => { need(2, 'operand'); const v = dv.getUint16(pos, true); pos += 2; return v; };
  const u32 = (): number => { need(4, 'operand'); const v = dv.getUint32(pos, true); pos += 4; return v; };
  const u64 = (): number => {
    need(8, 'operand');
    const lo = dv.getUint32(pos, true), hi = dv.getUint32(pos + 4, true);
    pos += 8;
    const v = hi * 2 ** 32 + lo;
    if (v > n) throw perr('pickle-truncated', `8-byte length ${v} at byte ${opPos} exceeds the ${n}-byte pickle`);
    return v;
  };
  const take = (k: number, what: string): Uint8Array => { need(k, what); const b = bytes.subarray(pos, pos + k); pos += k; return b; };
  const line = (what: string): string => {
    const lim = Math.min(n, pos + MAX_GLOBAL_LINE + 1);
    let e = pos;
    while (e < lim && bytes[e] !== 0x0a) e++;
    if (e >= lim) throw perr('pickle-bad-global', `GLOBAL ${what} at byte ${opPos} is not a newline-terminated line of ≤ ${MAX_GLOBAL_LINE} bytes`);
    const s = utf8.decode(bytes.subarray(pos, e));
    pos = e + 1;
    return s;
  };
  const pop = (): unknown => {
    if (stack.length === 0) throw perr('pickle-stack-underflow', `stack underflow at byte ${opPos} (${OPNAMES[bytes[opPos]]})`);
    return stack.pop();
  };
  const top = (): unknown => {
    if (stack.length === 0) throw perr('pickle-stack-underflow', `stack underflow at byte ${opPos} (${OPNAMES[bytes[opPos]]})`);
    return stack[stack.length - 1];
  };
  const popMark = (): unknown[] => {
    const items = stack;
    const prev = metastack.pop();
    if (prev === undefined) throw perr('pickle-no-mark', `${OPNAMES[bytes[opPos]]} at byte ${opPos} without a preceding MARK`);
    stack = prev;
    return items;
  };
  const put = (idx: number): void => {
    if (idx > MAX_MEMO_INDEX) throw perr('pickle-bad-memo', `memo index ${idx} at byte ${opPos} is too large`);
    memo.set(idx, top());
  };
  const get = (idx: number): void => {
    if (!memo.has(idx)) throw perr('pickle-bad-memo', `memo index ${idx} at byte ${opPos} was never stored`);
    stack.push(memo.get(idx));
  };
  const global = (module: string, name: string): void => {
    const q = `${module}.${name}`;
    if (!seenGlobals.has(q)) { seenGlobals.add(q); globals.push(q); }
    stack.push(hooks.findGlobal(module, name));
  };
  const asList = (x: unknown, op: string): unknown[] => {
    if (!Array.isArray(x) || isTuple(x)) throw perr('pickle-type', `${op} at byte ${opPos} expects a list, got ${describe(x)}`);
    return x;
  };
  const setItems = (d: unknown, kv: unknown[], op: string): void => {
    if (!(d instanceof Map)) throw perr('pickle-type', `${op} at byte ${opPos} expects a dict, got ${describe(d)}`);
    if (kv.length % 2) throw perr('pickle-type', `${op} at byte ${opPos} has an odd number (${kv.length}) of keys and values`);
    for (let i = 0; i < kv.length; i += 2) {
      if (!isKey(kv[i])) throw perr('pickle-unhashable', `${op} at byte ${opPos}: ${describe(kv[i])} cannot be a dict key`);
      d.set(kv[i], kv[i + 1]);
    }
  };
  const int = (v: bigint): number | bigint => (v >= -(2n ** 53n) + 1n && v <= 2n ** 53n - 1n ? Number(v) : v);
  const long = (b: Uint8Array): number | bigint => {
    if (b.length === 0) return 0;
    let v = 0n;
    for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
    if (b[b.length - 1] & 0x80) v -= 1n << BigInt(8 * b.length); // two's complement
    return int(v);
  };

  for (;;) {
    if (pos >= n) throw perr('pickle-truncated', `pickle ends at byte ${n} without STOP`);
    opPos = pos;
    const op = bytes[pos++];
    const name = OPNAMES[op];
    if (name === undefined) {
      const ch = op >= 0x20 && op < 0x7f ? ` '${String.fromCharCode(op)}'` : '';
      throw perr('pickle-opcode', `unsupported pickle opcode 0x${op.toString(16).padStart(2, '0')}${ch} at byte ${opPos}`);
    }
    opcodes[name] = (opcodes[name] ?? 0) + 1;
    switch (op) {
      case 0x80: protocol = u8(); if (protocol > 5) throw perr('pickle-protocol', `unsupported pickle protocol ${protocol}`); break;
      case 0x95: u64(); break; // FRAME: a size hint only
      case 0x2e: { // STOP
        const value = pop();
        return { value, protocol, opcodes, globals, end: pos };
      }
      case 0x63: { const m = line('module'); const nm = line('name'); global(m, nm); break; }
      case 0x93: {
        const nm = pop(), m = pop();
        if (typeof m !== 'string' || typeof nm !== 'string') throw perr('pickle-type', `STACK_GLOBAL at byte ${opPos} expects two strings`);
        global(m, nm);
        break;
      }
      case 0x71: put(u8()); break;
      case 0x72: put(u32()); break;
      case 0x94: put(memo.size); break;
      case 0x68: get(u8()); break;
      case 0x6a: get(u32()); break;
      case 0x28: metastack.push(stack); stack = []; break;
      case 0x30: pop(); break;
      case 0x31: popMark(); break;
      case 0x32: stack.push(top()); break;
      case 0x29: stack.push(tuple([])); break;
      case 0x74: { const items = popMark(); stack.push(tuple(items)); break; }
      case 0x85: { const a = pop(); stack.push(tuple([a])); break; }
      case 0x86: { const b = pop(), a = pop(); stack.push(tuple([a, b])); break; }
      case 0x87: { const c = pop(), b = pop(), a = pop(); stack.push(tuple([a, b, c])); break; }
      case 0x7d: stack.push(new Map()); break;
      case 0x64: { const kv = popMark(); const d = new Map(); setItems(d, kv, 'DICT'); stack.push(d); break; }
      case 0x73: { const v = pop(), k = pop(); setItems(top(), [k, v], 'SETITEM'); break; }
      case 0x75: { const kv = popMark(); setItems(top(), kv, 'SETITEMS'); break; }
      case 0x5d: stack.push([]); break;
      case 0x6c: stack.push(popMark()); break;
      case 0x61: { const v = pop(); asList(top(), 'APPEND').push(v); break; }
      case 0x65: {
        const items = popMark();
        const l = asList(top(), 'APPENDS');
        for (const it of items) l.push(it);
        break;
      }
      case 0x58: stack.push(utf8.decode(take(u32(), 'BINUNICODE'))); break;
      case 0x8c: stack.push(utf8.decode(take(u8(), 'SHORT_BINUNICODE'))); break;
      case 0x8d: stack.push(utf8.decode(take(u64(), 'BINUNICODE8'))); break;
      case 0x42: stack.push(take(u32(), 'BINBYTES').slice()); break;
      case 0x43: stack.push(take(u8(), 'SHORT_BINBYTES').slice()); break;
      case 0x8e: stack.push(take(u64(), 'BINBYTES8').slice()); break;
      case 0x4b: stack.push(u8()); break;
      case 0x4d: stack.push(u16()); break;
      case 0x4a: { need(4, 'BININT'); stack.push(dv.getInt32(pos, true)); pos += 4; break; }
      case 0x8a: stack.push(long(take(u8(), 'LONG1'))); break;
      case 0x8b: {
        const k = u32();
        if (k > MAX_LONG_BYTES) throw perr('pickle-long', `LONG4 of ${k} bytes at byte ${opPos} exceeds the ${MAX_LONG_BYTES}-byte limit`);
        stack.push(long(take(k, 'LONG4')));
        break;
      }
      case 0x89: stack.push(false); break;
      case 0x88: stack.push(true); break;
      case 0x4e: stack.push(null); break;
      case 0x47: { need(8, 'BINFLOAT'); stack.push(dv.getFloat64(pos, false)); pos += 8; break; } // big-endian f64
      case 0x52: { // REDUCE
        const args = pop(), fn = pop();
        if (!isTuple(args)) throw perr('pickle-type', `REDUCE at byte ${opPos} expects an argument tuple, got ${describe(args)}`);
        stack.push(hooks.reduce(fn, args));
        break;
      }
      case 0x81: { // NEWOBJ
        const args = pop(), cls = pop();
        if (!isTuple(args)) throw perr('pickle-type', `NEWOBJ at byte ${opPos} expects an argument tuple, got ${describe(args)}`);
        stack.push(hooks.newObj(cls, args));
        break;
      }
      case 0x62: { const state = pop(); const obj = pop(); stack.push(hooks.build(obj, state)); break; }
      case 0x51: { const pid = pop(); stack.push(hooks.persistentLoad(pid)); break; }
    }
  }
}

/** A short description of a value for error messages. */
export function describe(x: unknown): string {
  if (x === null) return 'None';
  if (Array.isArray(x)) return isTuple(x) ? `a tuple of ${x.length}` : `a list of ${x.length}`;
  if (x instanceof Map) return `a dict of ${x.size}`;
  if (x instanceof Uint8Array) return `bytes(${x.length})`;
  if (x instanceof PyGlobal) return `global ${x.qualname}`;
  if (typeof x === 'string') return `str '${x.length > 40 ? x.slice(0, 40) + '…' : x}'`;
  if (typeof x === 'object') return (x as object).constructor?.name ?? 'object';
  return `${typeof x} ${String(x)}`;
}
