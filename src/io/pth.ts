/**
 * PyTorch `.pth` reader: the zip format `torch.save` has written since PyTorch 1.6 (and the legacy
 * pre-1.6 format through pth-legacy.ts, whose storages are presented as entries `data/<key>`).
 * Format notes: the README of the var-tiny-pth fixture (shared fixtures, test/util/fixtures.ts).
 *
 * An archive `<prefix>/` holds `data.pkl` (a pickle), one entry `data/<key>` per storage (raw
 * little-endian elements), `version`, and in newer torch `byteorder` and a few records we ignore.
 * The prefix is found as the directory of the one entry named `.../data.pkl`.
 *
 * The pickle is run by the non-executing unpickler (pickle.ts) with an allow-list of GLOBALs:
 *   collections.OrderedDict                       → Map
 *   torch._utils._rebuild_tensor_v2               (storage, offset, size, stride, requires_grad, hooks[, metadata]) → tensor
 *   torch._utils._rebuild_parameter[_with_state]  → the tensor
 *   torch.{Float,Half,BFloat16,Double,Long,Int,Short,Char,Byte,Bool}Storage (persistent-id storage types)
 *   _codecs.encode                                → bytes (how protocol 2 pickles `bytes`)
 *   argparse.Namespace                            → an inert PyObject
 * Any other global (os.system, builtins.eval, ...) is refused with a PickleError (a PthError)
 * naming it, before anything else happens. Persistent ids are
 * `('storage', torch.XxxStorage, key, location, numel)`; the location ('cpu', 'cuda:0') is ignored.
 *
 * Tensors: element (i_0, …, i_k) is storage[offset + Σ i_j·stride_j]. Contiguous tensors are views
 * of their storage; F32 storages in the host byte order are themselves zero-copy views of the file
 * buffer, or of the caller's bytes, which the tensors then alias (torch aligns every entry to 64
 * bytes; an unaligned F32 storage is copied once). Other dtypes are converted once per storage:
 * F16/BF16/F64 → float32, I64/I32/I16/I8/U8/Bool → int32 with a range check. Loaded tensors never
 * require grad.
 *
 * Returned structures (readPthObject): dict / OrderedDict → Map (insertion order), list → Array,
 * tuple → Array (see `isTuple`), tensor → Tensor, str/int/float/bool/None → string/number (bigint
 * beyond 2^53)/number/boolean/null, bytes → Uint8Array, argparse.Namespace → PyObject. The BUILD
 * state of an OrderedDict (a state dict's `_metadata`) is available through `pickleState(map)`.
 *
 * Memory (files given by path, `readMode: 'auto'`): the zip directory and the pickle are read
 * first; if the tensors to be returned make up at least half the file, the whole file is read into
 * one buffer and F32 tensors view it; otherwise (e.g. only the model out of a checkpoint with
 * optimizer state) each storage is read separately. 'whole' / 'per-tensor' force either way.
 */
import { Tensor, stridesOf } from '../tensor/tensor.js';
import { PthError, PickleError, WeightFileError, withFile } from './errors.js';
import { ITEMSIZE, boundedNumel, decodeElements, type StoredDType } from './dtype.js';
import { MemorySource, openFile, wholeOrPerTensor, type ByteSource, type FileSource, type ReadMode } from './source.js';
import { ZipReader, type ZipEntry } from './zip.js';
import { LegacyContainer, looksLikeLegacyPth, parseLegacyPth } from './pth-legacy.js';
import { PyGlobal, describe, isTuple, unpickle, type UnpickleResult, type UnpicklerHooks } from './pickle.js';

export { isTuple, PyGlobal } from './pickle.js';

/** torch storage class name → stored element type. */
export const STORAGE_DTYPES: Readonly<Record<string, StoredDType>> = {
  FloatStorage: 'F32', HalfStorage: 'F16', BFloat16Storage: 'BF16', DoubleStorage: 'F64',
  LongStorage: 'I64', IntStorage: 'I32', ShortStorage: 'I16', CharStorage: 'I8', ByteStorage: 'U8', BoolStorage: 'BOOL',
};

const ALLOWED_GLOBALS = new Set([
  'collections.OrderedDict',
  'torch._utils._rebuild_tensor_v2',
  'torch._utils._rebuild_parameter',
  'torch._utils._rebuild_parameter_with_state',
  '_codecs.encode',
  'argparse.Namespace',
]);

/**
 * Tensors whose storage is smaller than their element count (zero strides, i.e. expanded views)
 * are materialised only up to this many elements, so a hostile shape cannot force a huge allocation.
 */
const MAX_EXPANDED_NUMEL = 1 << 24;
const MAX_NDIM = 64;

/** A storage named by a persistent id (bytes not read yet). */
export class StorageRef {
  constructor(
    readonly key: string, readonly storageType: string, readonly dtype: StoredDType,
    readonly numel: number, readonly location: string,
  ) {}
}

/** The arguments of `_rebuild_tensor_v2` (data not read yet). */
export class TensorRef {
  constructor(
    readonly storage: StorageRef, readonly offset: number, readonly shape: number[],
    readonly stride: number[], readonly requiresGrad: boolean,
  ) {}
}

/** An inert Python object (argparse.Namespace): class name, NEWOBJ args and BUILD state. */
export class PyObject {
  state: unknown = undefined;
  constructor(readonly module: string, readonly name: string, readonly args: unknown[]) {}
}

const buildStates = new WeakMap<object, unknown>();
/** The BUILD state pickled after a dict's items (a state dict's `{'_metadata': ...}`), if any. */
export function pickleState(obj: object): unknown { return buildStates.get(obj); }

export interface ReadPthOptions {
  /** See the module comment. Default 'auto'. Ignored for in-memory bytes. */
  readMode?: ReadMode;
  /** Check the CRC-32 of data.pkl (default false; storages are never CRC-checked, too slow at 8 GB). */
  verifyCrc?: boolean;
}

export interface ReadPthStateDictOptions extends ReadPthOptions {
  /**
   * Which dict to return. 'auto' (default): the top level if it is a str → tensor dict, else the
   * first of trainer/var_wo_ddp, state_dict, model, module that is. 'var' / 'vae':
   * trainer.var_wo_ddp / trainer.vae_local when present, else the top level. Anything else: a
   * '/'-separated path ('' = the top level), e.g. 'trainer/var_opt/optimizer/state/0'.
   */
  select?: 'auto' | 'var' | 'vae' | string;
}

export interface PthTensorInfo {
  path: string; storageKey: string; storageType: string; storageNumel: number;
  storageOffset: number; shape: number[]; stride: number[]; requiresGrad: boolean; location: string;
}

export interface PthInfo {
  prefix: string;
  /** Contents of the `version` record, or null. */
  version: string | null;
  byteorder: 'little' | 'big';
  zip64: boolean;
  protocol: number;
  opcodes: Record<string, number>;
  globals: string[];
  entries: { name: string; size: number; dataOffset: number }[];
  /** Every tensor, depth-first in pickle order, with '/'-joined paths. */
  tensors: PthTensorInfo[];
}

function perr(code: string, msg: string): PthError { return new PthError(code, msg); }

// ---------------------------------------------------------------------------------------------
// unpickler hooks: the allow-list

const isIndex = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

function torchHooks(): UnpicklerHooks {
  const storages = new Map<string, StorageRef>();
  return {
    findGlobal(module, name) {
      const q = `${module}.${name}`;
      if (module === 'torch' && Object.prototype.hasOwnProperty.call(STORAGE_DTYPES, name)) return new PyGlobal(module, name);
      if (ALLOWED_GLOBALS.has(q)) return new PyGlobal(module, name);
      if (module === 'torch' && name.endsWith('Storage')) {
        throw new PickleError('unsupported-storage', `storage type '${q}' is not supported (supported: ${Object.keys(STORAGE_DTYPES).join(', ')})`);
      }
      throw new PickleError('forbidden-global', `refusing to load global '${q}': only ${[...ALLOWED_GLOBALS, 'torch.*Storage'].join(', ')} are allowed in a checkpoint (a pickle can run arbitrary code; this loader never does)`);
    },
    reduce(fn, args) {
      const q = fn instanceof PyGlobal ? fn.qualname : null;
      switch (q) {
        case 'collections.OrderedDict':
          if (args.length !== 0) throw new PickleError('pickle-args', `OrderedDict(...) with ${args.length} arguments is not supported (torch pickles OrderedDict())`);
          return new Map();
        case 'torch._utils._rebuild_tensor_v2': return rebuildTensor(args);
        case 'torch._utils._rebuild_parameter':
        case 'torch._utils._rebuild_parameter_with_state':
          if (args.length < 3 || !(args[0] instanceof TensorRef)) throw new PickleError('pickle-args', `${q}: expected (tensor, requires_grad, hooks, ...), got ${args.length} arguments`);
          return args[0];
        case '_codecs.encode': return codecsEncode(args);
        default:
          throw new PickleError('not-callable', `REDUCE on ${describe(fn)} is not supported`);
      }
    },
    newObj(cls, args) {
      if (cls instanceof PyGlobal && cls.qualname === 'argparse.Namespace') return new PyObject(cls.module, cls.name, args);
      throw new PickleError('not-callable', `NEWOBJ on ${describe(cls)} is not supported`);
    },
    build(obj, state) {
      if (obj instanceof Map) { buildStates.set(obj, state); return obj; }
      if (obj instanceof PyObject) { obj.state = state; return obj; }
      throw new PickleError('pickle-build', `BUILD on ${describe(obj)} is not supported`);
    },
    persistentLoad(pid) {
      if (!isTuple(pid) || pid.length !== 5 || pid[0] !== 'storage') {
        throw new PickleError('bad-persistent-id', `persistent id must be ('storage', type, key, location, numel), got ${describe(pid)}`);
      }
      const [, type, key, location, numel] = pid;
      if (!(type instanceof PyGlobal) || type.module !== 'torch' || !Object.prototype.hasOwnProperty.call(STORAGE_DTYPES, type.name)) {
        throw new PickleError('bad-persistent-id', `persistent id: ${describe(type)} is not a torch storage type`);
      }
      if (typeof key !== 'string' || typeof location !== 'string' || !isIndex(numel)) {
        throw new PickleError('bad-persistent-id', `persistent id: expected (str key, str location, int numel), got (${describe(key)}, ${describe(location)}, ${describe(numel)})`);
      }
      const id = `${key}\u0000${type.name}\u0000${numel}`;
      let s = storages.get(id);
      if (!s) { s = new StorageRef(key, type.name, STORAGE_DTYPES[type.name], numel, location); storages.set(id, s); }
      return s;
    },
  };
}

function rebuildTensor(args: unknown[]): TensorRef {
  // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
  if (args.length !== 6 && args.length !== 7) throw new PickleError('pickle-args', `_rebuild_tensor_v2 expects 6 or 7 arguments, got ${args.length}`);
  const [storage, offset, size, stride, requiresGrad] = args;
  if (!(storage instanceof StorageRef)) throw new PickleError('pickle-args', `_rebuild_tensor_v2: argument 0 must be a storage, got ${describe(storage)}`);
  if (!isIndex(offset)) throw new PickleError('pickle-args', `_rebuild_tensor_v2: storage offset must be a non-negative int, got ${describe(offset)}`);
  const ints = (x: unknown, what: string): number[] => {
    if (!isTuple(x) || x.length > MAX_NDIM || !x.every(isIndex)) {
      throw new PickleError('pickle-args', `_rebuild_tensor_v2: ${what} must be a tuple of at most ${MAX_NDIM} non-negative ints, got ${describe(x)}`);
    }
    return x.slice() as number[];
  };
  const shape = ints(size, 'size'), strides = ints(stride, 'stride');
  if (shape.length !== strides.length) throw new PickleError('pickle-args', `_rebuild_tensor_v2: size has ${shape.length} dims but stride has ${strides.length}`);
  if (typeof requiresGrad !== 'boolean') throw new PickleError('pickle-args', `_rebuild_tensor_v2: requires_grad must be a bool, got ${describe(requiresGrad)}`);
  return new TensorRef(storage, offset, shape, strides, requiresGrad);
}

function codecsEncode(args: unknown[]): Uint8Array {
  const [s, enc] = args;
  if (args.length !== 2 || typeof s !== 'string' || typeof enc !== 'string') throw new PickleError('pickle-args', '_codecs.encode expects (str, encoding)');
  const e = enc.toLowerCase().replace(/[-_]/g, '');
  if (e === 'utf8') return new TextEncoder().encode(s);
  if (e !== 'latin1' && e !== 'iso88591') throw new PickleError('pickle-args', `_codecs.encode: encoding '${enc}' is not supported (latin1 / utf-8)`);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 255) throw new PickleError('pickle-args', `_codecs.encode: character U+${c.toString(16)} is not latin1`);
    out[i] = c;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// archive

interface Archive {
  /** The zip archive, or a legacy file's storage records behind the same interface (pth-legacy.ts). */
  zip: Pick<ZipReader, 'entries' | 'zip64' | 'get' | 'read' | 'dataOffset' | 'setSource'>;
  prefix: string;
  littleEndian: boolean;
  version: string | null;
  pickle: UnpickleResult;
}

function smallRecord(zip: ZipReader, name: string, max: number): string | null {
  const e = zip.get(name);
  if (!e) return null;
  if (e.uncompressedSize > max) throw perr('pth-bad-record', `record '${name}' is ${e.uncompressedSize} bytes (expected at most ${max})`);
  return new TextDecoder().decode(zip.read(e));
}

function openArchive(source: ByteSource, opts: ReadPthOptions): Archive {
  const zip = new ZipReader(source);
  const pkls = zip.entries.filter((e) => e.name === 'data.pkl' || e.name.endsWith('/data.pkl'));
  if (pkls.length === 0) {
    const names = zip.entries.slice(0, 5).map((e) => `'${e.name}'`).join(', ');
    throw perr('pth-no-data-pkl', `no '<prefix>/data.pkl' entry: not a torch.save archive (entries: ${names}${zip.entries.length > 5 ? ', …' : ''})`);
  }
  if (pkls.length > 1) throw perr('pth-ambiguous', `several data.pkl entries (${pkls.map((e) => `'${e.name}'`).join(', ')}); expected exactly one`);
  const prefix = pkls[0].name.slice(0, -'data.pkl'.length);
  const bo = smallRecord(zip, `${prefix}byteorder`, 16);
  if (bo !== null && bo.trim() !== 'little' && bo.trim() !== 'big') throw perr('pth-bad-record', `byteorder record is '${bo}', expected 'little' or 'big'`);
  const version = smallRecord(zip, `${prefix}version`, 64);
  const pickle = unpickle(zip.read(pkls[0], 0, pkls[0].uncompressedSize, { verifyCrc: opts.verifyCrc }), torchHooks());
  return { zip, prefix, littleEndian: bo === null || bo.trim() === 'little', version, pickle };
}

/** Turns TensorRefs into Tensors, decoding each storage once. */
class Materializer {
  private readonly storages = new Map<StorageRef, Float32Array | Int32Array>();
  private readonly tensors = new Map<TensorRef, Tensor>();
  constructor(private readonly a: Archive) {}

  storage(s: StorageRef, where: string): Float32Array | Int32Array {
    const hit = this.storages.get(s);
    if (hit) return hit;
    const name = `${this.a.prefix}data/${s.key}`;
    const e: ZipEntry | undefined = this.a.zip.get(name);
    if (!e) throw perr('pth-missing-storage', `${where}: storage '${s.key}' has no archive entry '${name}'`);
    const nbytes = s.numel * ITEMSIZE[s.dtype];
    if (nbytes > e.uncompressedSize) {
      throw perr('pth-storage-size', `${where}: storage '${s.key}' declares ${s.numel} × ${s.storageType} = ${nbytes} bytes but its entry holds ${e.uncompressedSize}`);
    }
    const data = decodeElements(this.a.zip.read(e, 0, nbytes), s.dtype, s.numel, this.a.littleEndian, `${where} (storage '${s.key}')`, PthError);
    this.storages.set(s, data);
    return data;
  }

  tensor(r: TensorRef, where: string): Tensor {
    const hit = this.tensors.get(r);
    if (hit) return hit;
    const s = r.storage;
    const numel = boundedNumel(r.shape, Math.max(s.numel, MAX_EXPANDED_NUMEL));
    if (numel < 0) {
      throw perr('pth-tensor-too-large', `${where}: shape [${r.shape.join(', ')}] has more elements than its storage '${s.key}' (${s.numel}) and the ${MAX_EXPANDED_NUMEL}-element limit for expanded tensors`);
    }
    const store = this.storage(s, where);
    let out: Tensor;
    if (numel === 0) {
      out = new Tensor(store instanceof Float32Array ? new Float32Array(0) : new Int32Array(0), r.shape);
    } else {
      // highest element index touched: offset + Σ (size_k − 1)·stride_k, must stay inside the storage
      let last = r.offset;
      for (let k = 0; k < r.shape.length && last < s.numel; k++) last += (r.shape[k] - 1) * r.stride[k];
      if (last >= s.numel) {
        throw perr('pth-tensor-out-of-range', `${where}: offset ${r.offset}, shape [${r.shape.join(', ')}], stride [${r.stride.join(', ')}] reach past the ${s.numel} elements of storage '${s.key}'`);
      }
      const cs = stridesOf(r.shape);
      const contiguous = r.shape.every((d, k) => d === 1 || r.stride[k] === cs[k]);
      out = new Tensor(contiguous ? store.subarray(r.offset, r.offset + numel) : gather(store, r, numel), r.shape);
    }
    this.tensors.set(r, out);
    return out;
  }

  /** Replace every TensorRef / StorageRef reachable from `root` (in place); returns the new root. */
  run(root: unknown, rootPath = ''): unknown {
    const conv = (v: unknown, p: string): unknown => {
      if (v instanceof TensorRef) return this.tensor(v, `tensor '${p}'`);
      if (v instanceof StorageRef) return new Tensor(this.storage(v, `storage at '${p}'`), [v.numel]);
      return v;
    };
    const top = conv(root, rootPath);
    if (top !== root) return top;
    walk(root, rootPath, (container, key, value, path) => {
      const c = conv(value, path);
      if (c !== value) setChild(container, key, c);
    });
    return root;
  }
}

function gather(store: Float32Array | Int32Array, r: TensorRef, numel: number): Float32Array | Int32Array {
  const out = store instanceof Float32Array ? new Float32Array(numel) : new Int32Array(numel);
  const nd = r.shape.length, idx = new Array<number>(nd).fill(0);
  let src = r.offset;
  for (let i = 0; i < numel; i++) {
    out[i] = store[src];
    // odometer increment over the multi-index, updating the source offset incrementally
    for (let k = nd - 1; k >= 0; k--) {
      if (++idx[k] < r.shape[k]) { src += r.stride[k]; break; }
      src -= (r.shape[k] - 1) * r.stride[k];
      idx[k] = 0;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// tree walking (iterative: hostile nesting or cycles cannot overflow the stack or loop)

function keySegment(k: unknown): string {
  const prim = (x: unknown): string => (typeof x === 'string' ? x : x === null ? 'None' : isTuple(x) ? '(…)' : String(x));
  return isTuple(k) ? `(${k.map(prim).join(', ')})` : prim(k); // one level only: no recursion on hostile nesting
}
const join = (p: string, seg: string): string => (p === '' ? seg : `${p}/${seg}`);

/**
 * Depth-first, pre-order, children in order: calls `visit` for every child slot of every
 * container (Map values, Array elements, PyObject state, dict BUILD states are not visited).
 * Each container is entered once.
 */
function walk(root: unknown, rootPath: string, visit: (container: object, key: unknown, value: unknown, path: string) => void): void {
  const seen = new Set<object>();
  const stack: [unknown, string][] = [[root, rootPath]];
  while (stack.length) {
    const [node, path] = stack.pop()!;
    if (typeof node !== 'object' || node === null || seen.has(node)) continue;
    seen.add(node);
    const kids: [unknown, string][] = [];
    if (node instanceof Map) {
      for (const [k, v] of node) { const p = join(path, keySegment(k)); visit(node, k, v, p); kids.push([node.get(k), p]); }
    } else if (Array.isArray(node)) {
      for (let i = 0; i < node.length; i++) { const p = join(path, String(i)); visit(node, i, node[i], p); kids.push([node[i], p]); }
    } else if (node instanceof PyObject) {
      visit(node, 'state', node.state, path);
      kids.push([node.state, path]);
    }
    for (let i = kids.length - 1; i >= 0; i--) stack.push(kids[i]);
  }
}

function setChild(container: object, key: unknown, value: unknown): void {
  if (container instanceof Map) container.set(key, value);
  else if (Array.isArray(container)) container[key as number] = value;
  else if (container instanceof PyObject) container.state = value;
}

function child(node: unknown, seg: string): unknown {
  if (node instanceof Map) {
    if (node.has(seg)) return node.get(seg);
    for (const [k, v] of node) if (keySegment(k) === seg) return v;
    return undefined;
  }
  if (Array.isArray(node) && /^\d+$/.test(seg)) return node[Number(seg)];
  return undefined;
}

function follow(root: unknown, path: string): unknown {
  if (path === '') return root;
  let n = root;
  for (const seg of path.split('/')) { n = child(n, seg); if (n === undefined) return undefined; }
  return n;
}

const isTensorLike = (v: unknown): boolean => v instanceof Tensor || v instanceof TensorRef;
function isTensorDict(x: unknown): x is Map<string, unknown> {
  if (!(x instanceof Map)) return false;
  for (const [k, v] of x) if (typeof k !== 'string' || !isTensorLike(v)) return false;
  return true;
}

function keysOf(x: unknown): string {
  if (!(x instanceof Map)) return describe(x);
  const ks = [...x.keys()].slice(0, 12).map((k) => `'${keySegment(k)}'`);
  return `keys [${ks.join(', ')}${x.size > 12 ? ', …' : ''}]`;
}

/** The node `select` designates (works on raw TensorRef trees and on loaded trees alike). */
function selectNode(root: unknown, select: string): { node: unknown; path: string } {
  if (select === 'var' || select === 'vae') {
    const path = select === 'var' ? 'trainer/var_wo_ddp' : 'trainer/vae_local';
    const n = follow(root, path);
    return n !== undefined ? { node: n, path } : { node: root, path: '' };
  }
  if (select === 'auto') {
    if (isTensorDict(root)) return { node: root, path: '' };
    for (const path of ['trainer/var_wo_ddp', 'state_dict', 'model', 'module']) {
      const n = follow(root, path);
      if (isTensorDict(n)) return { node: n, path };
    }
    throw perr('pth-no-state-dict', `no state dict found (top level: ${keysOf(root)}); pass select: '<path>'`);
  }
  const n = follow(root, select);
  if (n === undefined) throw perr('pth-select', `path '${select}' does not exist in the checkpoint (top level: ${keysOf(root)})`);
  return { node: n, path: select };
}

function asStateDict(node: unknown, path: string): Map<string, Tensor> {
  const where = path === '' ? 'the top level' : `'${path}'`;
  if (!(node instanceof Map)) throw perr('pth-not-a-state-dict', `${where} is ${describe(node)}, not a dict of tensors`);
  for (const [k, v] of node) {
    if (typeof k !== 'string') throw perr('pth-not-a-state-dict', `${where} has a non-string key ${describe(k)}`);
    if (!(v instanceof Tensor)) throw perr('pth-not-a-state-dict', `${where}['${k}'] is ${describe(v)}, not a tensor`);
  }
  return node as Map<string, Tensor>; // the unpickled Map itself, so pickleState(map) still finds `_metadata`
}

// ---------------------------------------------------------------------------------------------
// public API

/**
 * Pick a model state dict out of a loaded checkpoint object: `trainer.var_wo_ddp` (which = 'var')
 * or `trainer.vae_local` ('vae') when present, else the top-level dict. Every key must be a string
 * and every value a Tensor.
 */
export function extractStateDict(obj: unknown, which: 'var' | 'vae'): Map<string, Tensor> {
  const { node, path } = selectNode(obj, which);
  return asStateDict(node, path);
}

/** Every tensor of a loaded object with its '/'-joined path (dict keys, list indices), depth-first. */
export function flattenTensors(obj: unknown): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  if (obj instanceof Tensor) { out.set('', obj); return out; }
  walk(obj, '', (_c, _k, v, p) => { if (v instanceof Tensor && !out.has(p)) out.set(p, v); });
  return out;
}

/** The whole unpickled object with every tensor loaded (see the module comment for the mapping). */
export function readPthObject(src: string | Uint8Array, opts: ReadPthOptions = {}): unknown {
  return withArchive(src, opts, (a, ensure) => {
    ensure(1);
    return new Materializer(a).run(a.pickle.value);
  });
}

/** A state dict (str → Tensor, pickle order) from a .pth file; see `select`. */
export function readPth(src: string | Uint8Array, opts: ReadPthStateDictOptions = {}): Map<string, Tensor> {
  return withArchive(src, opts, (a, ensure) => {
    const { node, path } = selectNode(a.pickle.value, opts.select ?? 'auto');
    ensure(neededBytes(node) / Math.max(1, a.zip.entries.reduce((s, e) => s + e.uncompressedSize, 0)));
    return asStateDict(new Materializer(a).run(node, path), path);
  });
}

/** Structure of a .pth without reading tensor data: zip entries, pickle statistics, every tensor. */
export function inspectPth(src: string | Uint8Array, opts: ReadPthOptions = {}): PthInfo {
  return withArchive(src, { ...opts, readMode: 'per-tensor' }, (a) => {
    const tensors: PthTensorInfo[] = [];
    const add = (r: TensorRef, path: string): void => {
      const s = r.storage;
      tensors.push({
        path, storageKey: s.key, storageType: s.storageType, storageNumel: s.numel, storageOffset: r.offset,
        shape: r.shape.slice(), stride: r.stride.slice(), requiresGrad: r.requiresGrad, location: s.location,
      });
    };
    const root = a.pickle.value;
    if (root instanceof TensorRef) add(root, '');
    const seenRefs = new Set<TensorRef>();
    walk(root, '', (_c, _k, v, p) => { if (v instanceof TensorRef && !seenRefs.has(v)) { seenRefs.add(v); add(v, p); } });
    const bo: 'little' | 'big' = a.littleEndian ? 'little' : 'big';
    return {
      prefix: a.prefix, version: a.version, byteorder: bo, zip64: a.zip.zip64,
      protocol: a.pickle.protocol, opcodes: a.pickle.opcodes, globals: a.pickle.globals,
      entries: a.zip.entries.map((e) => ({ name: e.name, size: e.uncompressedSize, dataOffset: a.zip.dataOffset(e) })),
      tensors,
    };
  });
}

/** Bytes of the distinct storages reachable from `node`. */
function neededBytes(node: unknown): number {
  const storages = new Set<StorageRef>();
  const note = (v: unknown): void => {
    if (v instanceof TensorRef) storages.add(v.storage);
    else if (v instanceof StorageRef) storages.add(v);
  };
  note(node);
  walk(node, '', (_c, _k, v) => note(v));
  let total = 0;
  for (const s of storages) total += s.numel * ITEMSIZE[s.dtype];
  return total;
}

/**
 * Open `src`, parse the archive, run `fn`. `ensure(fraction)` is called by `fn` once it knows
 * what fraction of the archive's data it will read; for a path in 'auto' mode a fraction ≥ 0.5
 * switches to one whole-file buffer (zero-copy views), below that storages are read one by one.
 */
function withArchive<T>(src: string | Uint8Array, opts: ReadPthOptions, fn: (a: Archive, ensure: (fraction: number) => void) => T): T {
  const file = typeof src === 'string' ? src : undefined;
  let source: ByteSource | null = null;
  try {
    if (typeof src === 'string') source = openFile(src, PthError);
    else if (src instanceof Uint8Array) source = MemorySource.of(src, PthError);
    else throw new TypeError('readPth: expected a file path or a Uint8Array');
    let a: Archive;
    if (looksLikeLegacyPth(source.read(0, Math.min(1, source.length)))) { // pre-1.6 torch.save: pickles, no zip
      if (!(source instanceof MemorySource)) { const mem = (source as FileSource).toMemory(); source.close(); source = mem; }
      const bytes = source.read(0, source.length), legacy = parseLegacyPth(bytes, torchHooks());
      a = { zip: new LegacyContainer(bytes, legacy), prefix: '', littleEndian: legacy.littleEndian, version: null, pickle: legacy.pickle };
    } else a = openArchive(source, opts);
    const ensure = (fraction: number): void => {
      if (!(source instanceof MemorySource) && source !== null) {
        const mode = opts.readMode ?? 'auto';
        const fs = source as FileSource;
        let next: ByteSource | null = null;
        if (mode === 'whole') { next = fs.toMemory(); fs.close(); } else if (mode === 'auto' && fraction >= 0.5) next = wholeOrPerTensor(fs);
        if (next) { a.zip.setSource(next); source = next; }
      }
    };
    return fn(a, ensure);
  } catch (e) {
    if (e instanceof WeightFileError) throw withFile(e, file);
    throw e;
  } finally {
    source?.close();
  }
}
