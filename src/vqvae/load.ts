/**
 * The VQVAE (tokenizer) loader: every file a user may hold, through the one format check of io/weights.ts —
 * the official `.pth` (a plain state dict, or the trainer checkpoint layout `{'trainer': {'vae_local': sd, ...}}`),
 * official-layout `.safetensors`, and actvar's own `.safetensors` (written by `actvar train-vae`), whose metadata
 * carries `format: actvar-vqvae/1` and the architecture (patch numbers included) as `config`.
 * Official files do not hold the patch numbers: pass them (from the VAR's lvl_1L or a flag); the rest of the
 * architecture is inferred from the tensors (config.ts). Explicit options win over the metadata.
 * Missing / unexpected / mis-shaped keys → one error listing them (`quantize.ema_vocab_hit_SV` is ignored); a NaN/Inf
 * weight → NonFiniteWeightsError naming the tensor. The file's metadata: `loadedFrom(vqvae)` (io/weights.ts).
 */
import type { Tensor } from '../tensor/index.js';
import { definedOnly, readWeights, recordLoaded } from '../io/weights.js';
import { VQVAE } from './vqvae.js';
import type { VqvaeConfig, VqvaeConfigInput } from './config.js';

/** The `format` tag actvar writes into a tokenizer's safetensors metadata (with `config`: the VqvaeConfig as JSON). */
export const VQVAE_FORMAT = 'actvar-vqvae/1';

export interface LoadVqvaeOptions extends VqvaeConfigInput {
  /** Token-map sides per scale (required for official files, unless the caller knows them from the VAR). */
  patchNums?: number[];
}

/** Read the raw VQVAE state dict of a file or its bytes. */
export function readVqvaeStateDict(src: string | Uint8Array): Map<string, Tensor> {
  return readWeights(src, 'vae').tensors;
}

/**
 * Load a VQVAE from a path or the file's bytes: read, take the architecture from actvar's metadata or infer it,
 * check every key.
 */
export function loadVqvae(src: string | Uint8Array, opts: LoadVqvaeOptions = {}): VQVAE {
  const file = readWeights(src, 'vae');
  let own: VqvaeConfigInput = {};
  if (file.metadata.format === VQVAE_FORMAT && file.metadata.config) {
    const { downsample: _d, imgSize: _i, ...input } = JSON.parse(file.metadata.config) as VqvaeConfig;
    own = input;
  }
  try {
    return recordLoaded(VQVAE.fromStateDict(file.tensors, { ...own, ...definedOnly(opts) }), file);
  } catch (e) {
    if (e instanceof Error && !e.message.startsWith(`${file.source}: `)) e.message = `${file.source}: ${e.message}`;
    throw e;
  }
}
