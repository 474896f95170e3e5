/**
 * Load a VQVAE from a weight file: `.safetensors` with the official key names, or an official `.pth`
 * (a plain state dict, or the trainer checkpoint layout `{'trainer': {'vae_local': sd, ...}}`).
 * The architecture is inferred from the tensors (config.ts); the patch numbers must be supplied
 * (from the VAR's lvl_1L or a flag) because the VQVAE weights don't hold them.
 */
import { readSafetensors } from '../io/safetensors.js';
import { readPth } from '../io/pth.js';
import type { Tensor } from '../tensor/index.js';
import { VQVAE } from './vqvae.js';
import type { VqvaeConfigInput } from './config.js';

export interface LoadVqvaeOptions extends VqvaeConfigInput {
  /** Token-map sides per scale (required unless the caller knows them from the VAR). */
  patchNums?: number[];
}

/** Read the raw VQVAE state dict from a file (by extension; `.pth`/`.pt`/`.bin` → PyTorch zip, else safetensors). */
export function readVqvaeStateDict(path: string): Map<string, Tensor> {
  if (/\.(pth|pt|bin|ckpt)$/i.test(path)) return readPth(path, { select: 'vae' });
  return readSafetensors(path);
}

/**
 * Load a VQVAE: read the file, infer the architecture, check every key (missing / unexpected /
 * mis-shaped → one error listing them; `quantize.ema_vocab_hit_SV` is ignored).
 */
export function loadVqvae(path: string, opts: LoadVqvaeOptions = {}): VQVAE {
  const sd = readVqvaeStateDict(path);
  try {
    return VQVAE.fromStateDict(sd, opts);
  } catch (e) {
    if (e instanceof Error) e.message = `${path}: ${e.message}`;
    throw e;
  }
}
