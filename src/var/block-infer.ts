/**
 * The KV-cache inference path of a block's two branches (noGrad; in a dry run the ops skip their arithmetic): the same math and the
 * same bits as `attnBranch` / `ffnBranch` in basic-var.ts, with the 5–22 MB intermediates of every
 * block in the backend's workspace instead of fresh arrays (their page faults and GC were a few % of a
 * d16 generation), and q/k/v written by the head split straight into the query buffer and the cache.
 * Never handed out: only the branch outputs, which are fresh arrays, leave these functions.
 */
import {
  Tensor, assertFloat, linearInto, weightData, gelu, workspace,
  adaLNModulateInto, gatedResidual, splitHeadsInto, attendCachedInto, checkCacheRoom, type KVCache,
} from '../tensor/index.js';
import { attnScale, blockTemperatures, type VarBlock, type AdaLN } from './block.js';

/** ln(x)·(1+scale)+shift of x [B, …, C] into the workspace buffer 'var.x' (rows·C floats, valid until the next branch call). */
function modulated(block: VarBlock, x: Tensor, scale: Tensor, shift: Tensor): Float32Array {
  const C = x.shape[x.ndim - 1], rows = x.size / C, B = x.shape[0];
  const S = assertFloat(scale, 'adaLNModulate'), Sh = assertFloat(shift, 'adaLNModulate');
  if (S.length !== B * C || Sh.length !== B * C) throw new RangeError(`adaLNModulate: scale/shift must be [${B}, ${C}] for x [${x.shape.join(', ')}]`);
  const xn = workspace().float32('var.x', rows * C);
  adaLNModulateInto(x.f32, S, Sh, B, rows, C, block.eps, xn);
  return xn;
}

/** `attnBranch` with a KV cache, for inference. */
export function attnBranchCached(block: VarBlock, x: Tensor, ada: AdaLN, cache: KVCache): Tensor {
  if (x.ndim !== 3) throw new RangeError(`attnBranch: expected x [B, L, C], got [${x.shape.join(', ')}]`);
  const [B, l, C] = x.shape, H = block.heads, hd = block.headDim, rows = B * l, C3 = 3 * C;
  if (B !== cache.batch || H !== cache.heads || hd !== cache.headDim) {
    throw new RangeError(`attnBranch: x [${x.shape.join(', ')}] does not fit a KV cache of [${cache.batch}, ${cache.heads}, ·, ${cache.headDim}]`);
  }
  checkCacheRoom(cache, l);
  const xn = modulated(block, x, ada.scale1, ada.shift1);
  const ws = workspace(), qkv = ws.float32('var.qkv', rows * C3), q = ws.float32('var.q', rows * C);
  linearInto(xn, rows, weightData(block.qkvW), C3, C, null, qkv, block.qkvW);
  const l2 = block.attnL2Norm, sH = blockTemperatures(block);
  splitHeadsInto(qkv, B, l, H, hd, 0, block.qBias.f32, l2, sH, q, l, 0);
  splitHeadsInto(qkv, B, l, H, hd, 1, ws.float32('var.zeroBias', C), l2, null, cache.k, cache.capacity, cache.len);
  splitHeadsInto(qkv, B, l, H, hd, 2, block.vBias.f32, false, null, cache.v, cache.capacity, cache.len);
  cache.len += l;
  attendCachedInto(q, B, H, l, hd, cache, xn, attnScale(block), sH); // xn is free again: the attention output
  linearInto(xn, rows, weightData(block.projW), C, C, block.projB.f32, qkv, block.projW);
  return gatedResidual(x, new Tensor(qkv.subarray(0, x.size), x.shape), ada.gamma1);
}

/** The FFN's input ln(x)·(1+scale2)+shift2 for inference, in the workspace (valid until the next branch call). */
export function ffnInputInfer(block: VarBlock, x: Tensor, ada: AdaLN): Float32Array {
  const xn = modulated(block, x, ada.scale2, ada.shift2);
  return xn.length === x.size ? xn : xn.subarray(0, x.size);
}

/** The dense `ffnBranch` for inference, the hidden activations in the workspace. */
export function ffnBranchInfer(block: VarBlock, x: Tensor, ada: AdaLN): Tensor {
  const C = x.shape[x.ndim - 1], rows = x.size / C, Dh = block.fc1W.shape[0];
  const xn = ffnInputInfer(block, x, ada);
  const ws = workspace(), hid = ws.float32('var.hidden', rows * Dh), y = ws.float32('var.qkv', rows * C);
  linearInto(xn, rows, weightData(block.fc1W), Dh, C, block.fc1B.f32, hid, block.fc1W);
  gelu(new Tensor(hid.length === rows * Dh ? hid : hid.subarray(0, rows * Dh), [rows * Dh]), true);
  linearInto(hid, rows, weightData(block.fc2W), C, Dh, block.fc2B.f32, y, block.fc2W);
  return gatedResidual(x, new Tensor(y.subarray(0, x.size), x.shape), ada.gamma2);
}
