/**
 * The one format check behind every model loader (var/load.ts, vqvae/load.ts, eval/classifier-load.ts).
 *
 * A weight file is told apart by its first bytes, never by its name alone:
 *   `PK\x03\x04`          → PyTorch `.pth` (the zip format torch.save writes since 1.6; io/pth.ts)
 *   8-byte length + `{`   → `.safetensors` (io/safetensors.ts; official key names, and actvar's own files, whose
 *                           `__metadata__` carries `format` and the architecture as `config`)
 *   anything else         → by extension, so that the reader's own typed error explains what is wrong.
 * (The legacy pre-1.6 `.pth` format, a bare pickle stream, is dispatched from io/pth.ts.)
 *
 * `src` is a path (read through io/source.ts, the only place that touches the file system) or the file's bytes
 * (what a browser has). Every float tensor is checked to be finite; a NaN or ±Infinity is refused with a
 * NonFiniteWeightsError naming the tensor (buffers that legitimately hold −∞, like VAR's attention mask, are
 * exempted by the caller).
 */
import { Tensor } from '../tensor/tensor.js';
import { NonFiniteWeightsError, WeightFileError } from './errors.js';
import { readSafetensorsFile } from './safetensors.js';
import { readPth } from './pth.js';
import { openFile } from './source.js';

export type WeightFormat = 'safetensors' | 'pth';

/** What a model loader read: the state dict, the file's metadata (empty for .pth and bare safetensors) and format. */
export interface WeightFile {
  tensors: Map<string, Tensor>;
  metadata: Record<string, string>;
  format: WeightFormat;
  /** The path, or 'bytes' when the caller passed the file's contents. */
  source: string;
}

/** Where a loaded model came from: available through {@link loadedFrom} for every model a loader returns. */
export interface LoadedFrom {
  source: string;
  format: WeightFormat;
  /** The safetensors `__metadata__` (actvar's files: `format`, `config`, `dataset`, …); empty when there is none. */
  metadata: Readonly<Record<string, string>>;
}

/** Format of a weight file from its first bytes (at least 9), falling back to the name's extension. */
export function weightFormatOf(head: Uint8Array, name = ''): WeightFormat {
  if (head.length >= 4 && head[0] === 0x50 && head[1] === 0x4b && head[2] === 0x03 && head[3] === 0x04) return 'pth';
  if (head.length >= 9 && head[8] === 0x7b /* '{' */) return 'safetensors';
  if (head.length >= 1 && head[0] === 0x80 /* pickle PROTO: a legacy .pth */) return 'pth';
  if (/\.(pth|pt|ckpt|bin)$/i.test(name)) return 'pth';
  return 'safetensors';
}

/** Format of a path or of bytes (see {@link weightFormatOf}). */
export function detectWeightFormat(src: string | Uint8Array): WeightFormat {
  if (typeof src !== 'string') return weightFormatOf(src.subarray(0, 9));
  const f = openFile(src, WeightFileError);
  try {
    return weightFormatOf(f.read(0, Math.min(9, f.length)), src);
  } finally { f.close(); }
}

/**
 * Read a model's state dict from a weight file. For a `.pth` training checkpoint `which` picks the model
 * (`trainer.var_wo_ddp` for 'var', `trainer.vae_local` for 'vae'); a plain state dict is taken as it is.
 * `finiteExcept` names tensors allowed to hold non-finite values.
 */
export function readWeights(src: string | Uint8Array, which: 'var' | 'vae' | 'any', finiteExcept: ReadonlySet<string> = new Set()): WeightFile {
  const source = typeof src === 'string' ? src : 'bytes';
  const format = detectWeightFormat(src);
  let out: WeightFile;
  if (format === 'pth') {
    out = { tensors: readPth(src, { select: which === 'any' ? 'auto' : which }), metadata: {}, format, source };
  } else {
    const { tensors, metadata } = readSafetensorsFile(src);
    out = { tensors, metadata: metadata ?? {}, format, source };
  }
  checkFinite(out.tensors, typeof src === 'string' ? src : undefined, finiteExcept);
  return out;
}

/** Throw a NonFiniteWeightsError naming the first float tensor that holds NaN or ±Infinity. */
export function checkFinite(tensors: Map<string, Tensor>, file?: string, except: ReadonlySet<string> = new Set()): void {
  for (const [name, t] of tensors) {
    if (t.dtype !== 'float32' || except.has(name)) continue;
    const d = t.f32;
    for (let i = 0; i < d.length; i++) {
      const v = d[i];
      if (v - v !== 0) throw new NonFiniteWeightsError(name, i, v, file); // NaN − NaN and ∞ − ∞ are NaN
    }
  }
}

const loaded = new WeakMap<object, LoadedFrom>();

/** Record where a model was loaded from (called by the loaders). */
export function recordLoaded<M extends object>(model: M, file: WeightFile): M {
  loaded.set(model, { source: file.source, format: file.format, metadata: Object.freeze({ ...file.metadata }) });
  return model;
}

/**
 * Where a model returned by a loader (`loadVar`, `loadVqvae`, `loadClassifier`) came from, with its file's metadata
 * (actvar's own files: `format`, `config`, `dataset`, `steps`, …); undefined for a model built in memory.
 */
export function loadedFrom(model: object): LoadedFrom | undefined {
  return loaded.get(model);
}

/** The options that are set (so that `{ ...fromMetadata, ...definedOnly(opts) }` lets only explicit values win). */
export function definedOnly<T extends object>(opts: T): Partial<T> {
  return Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined)) as Partial<T>;
}
