/**
 * Which VAR weights `weightsDtype: 'bf16'` stores as bf16 (an inference option, never the default: float32
 * keeps parity with the official model; the arithmetic is src/tensor/ops/bf16.ts). bf16: the Linear weight
 * matrices of the blocks (ada_lin, mat_qkv, proj, fc1, fc2) and of the head (head_nm.ada_lin, head) and
 * shared_ada_lin — 99.4 % of d16's parameters and all of its GEMM weights but word_embed's. float32: every bias,
 * the embeddings (class_emb, lvl_embed, pos_start, pos_1LC) and word_embed (Cvae = 32 inputs, 0.01 % of
 * d16), scale_mul_1H11 and ada_gss — small, and read by ops other than the GEMMs.
 */
import { Tensor, toBf16Array } from '../tensor/index.js';

/** How a VAR's weight matrices are stored in memory. */
export type WeightsDtype = 'fp32' | 'bf16';
export const WEIGHTS_DTYPES: readonly WeightsDtype[] = ['fp32', 'bf16'];

const BF16_KEY = /^(blocks\.\d+\.(ada_lin\.1|attn\.mat_qkv|attn\.proj|ffn\.fc1|ffn\.fc2)\.weight|head\.weight|head_nm\.ada_lin\.1\.weight|shared_ada_lin\.1\.weight)$/;

/** True for the parameters that `weightsDtype: 'bf16'` stores as bf16. */
export function isBf16Weight(key: string): boolean { return BF16_KEY.test(key); }

/**
 * The parameters with `isBf16Weight` keys as 'bfloat16' tensors; every other float32 tensor that is a view
 * into a larger buffer (a loaded file) is copied, so that the file's bytes can be freed.
 */
export function toBf16Params(params: Map<string, Tensor>): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  for (const [k, t] of params) {
    let u = t;
    if (isBf16Weight(k) && t.dtype === 'float32') u = new Tensor(toBf16Array(t.f32), t.shape);
    else if (t.data.byteLength !== t.data.buffer.byteLength) u = new Tensor(t.data.slice(), t.shape);
    if (u !== t) u.name = t.name ?? k;
    out.set(k, u);
  }
  return out;
}
