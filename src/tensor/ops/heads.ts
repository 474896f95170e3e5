/**
 * The head split of attention (docs/VAR.md §3.3): one of q, k, v from the fused qkv projection
 * [B, L, 3C], plus its bias, per head; with cosine attention each head vector is L2-normalised and q
 * multiplied by the head temperature exp(min(scale_mul_h, ln 100)). `splitHeads` is the differentiable
 * op (hand-written backward), `splitHeadsInto` the inference kernel that writes straight into a
 * tensor or a KV cache (the backend's `splitHeads` override when it has one).
 */
import { Tensor, result, isGradEnabled, assertFloat } from '../tensor.js';
import { backend } from '../../backend/index.js';

const fr = Math.fround;

/** ln(100): the clamp of the learned per-head temperature (stored by torch as a float32 .item()). */
const MAX_SCALE_MUL = Math.fround(Math.log(100));

/** Each head's temperature s_h = exp(min(scale_mul_h, ln 100)), rounded to float32 (docs/VAR.md §3.3). */
export function headTemperatures(sm: Float32Array, H: number): Float64Array {
  const sH = new Float64Array(H);
  for (let h = 0; h < H; h++) sH[h] = fr(Math.exp(Math.min(sm[h], MAX_SCALE_MUL)));
  return sH;
}

/**
 * One of q (part 0), k (1), v (2) from the fused qkv output [B, L, 3C] (channel layout [q | k | v],
 * head-major inside each): adds `bias`, and with cosine attention normalises each head vector
 * (x / max(‖x‖, 1e-12)) and, for q, multiplies by exp(min(scale_mul_h, ln 100)). Result [B, H, L, hd].
 */
export function splitHeads(qkv: Tensor, part: number, H: number, bias: Tensor | null, l2: boolean, scaleMul: Tensor | null): Tensor {
  const Q = assertFloat(qkv, 'attentionQKV');
  const B = qkv.shape[0], C3 = qkv.shape[qkv.ndim - 1], C = C3 / 3, hd = C / H;
  const L = Q.length / (B * C3);
  const bias32 = bias ? bias.f32 : null;
  const sm = scaleMul ? scaleMul.f32 : null;
  const sH = sm ? headTemperatures(sm, H) : new Float64Array(H).fill(1);
  const needGrad = isGradEnabled() && (qkv.requiresGrad || !!bias?.requiresGrad || !!scaleMul?.requiresGrad);
  const out = new Float32Array(B * L * C);
  const U = needGrad && l2 ? new Float32Array(out.length) : null; // unit vectors (before × s_h)
  const den = needGrad && l2 ? new Float64Array(B * H * L) : null;
  const zeroBias = new Float32Array(C);
  const bv = bias32 ?? zeroBias;
  for (let b = 0; b < B; b++) for (let l = 0; l < L; l++) {
    const src = (b * L + l) * C3 + part * C;
    for (let h = 0; h < H; h++) {
      const so = src + h * hd, dst = ((b * H + h) * L + l) * hd, bo = h * hd;
      let ss = 0;
      for (let d = 0; d < hd; d++) {
        const x = fr(Q[so + d] + bv[bo + d]); // qkv + bias, rounded as torch's addmm output
        out[dst + d] = x; ss += x * x;
      }
      if (l2) {
        // x / max(‖x‖, 1e-12) · s_h, as one multiply (≤ 1 ulp from torch's divide-then-multiply)
        const dn = Math.max(Math.sqrt(ss), 1e-12);
        if (den) {
          den[(b * H + h) * L + l] = dn;
          for (let d = 0; d < hd; d++) U![dst + d] = out[dst + d] / dn;
        }
        const f = sH[h] / dn;
        for (let d = 0; d < hd; d++) out[dst + d] *= f;
      }
    }
  }
  const inputs = [qkv, ...(bias ? [bias] : []), ...(scaleMul ? [scaleMul] : [])];
  return result(out, [B, H, L, hd], 'splitHead', inputs, (g) => {
    const gq = new Float32Array(Q.length);
    const gb = bias ? new Float32Array(C) : null;
    const gsm = scaleMul ? new Float32Array(H) : null;
    for (let b = 0; b < B; b++) for (let l = 0; l < L; l++) {
      const src = (b * L + l) * C3 + part * C;
      for (let h = 0; h < H; h++) {
        const so = src + h * hd, dst = ((b * H + h) * L + l) * hd;
        if (l2) {
          const s = sH[h], dn = den![(b * H + h) * L + l];
          let dot = 0, gs = 0;
          for (let d = 0; d < hd; d++) { const du = g[dst + d] * s; dot += du * U![dst + d]; gs += g[dst + d] * U![dst + d]; }
          if (gsm) gsm[h] += gs;
          const full = dn > 1e-12;
          for (let d = 0; d < hd; d++) {
            const du = g[dst + d] * s;
            gq[so + d] = full ? (du - U![dst + d] * dot) / dn : du / dn;
          }
        } else {
          for (let d = 0; d < hd; d++) gq[so + d] = g[dst + d];
        }
        if (gb) for (let d = 0; d < hd; d++) gb[h * hd + d] += gq[so + d];
      }
    }
    // d exp(min(p, max))/dp = s where p <= max (torch clamp_max passes the gradient at equality)
    if (gsm) for (let h = 0; h < H; h++) gsm[h] = sm![h] <= MAX_SCALE_MUL ? gsm[h] * sH[h] : 0;
    return [qkv.requiresGrad ? gq : null, ...(bias ? [bias.requiresGrad ? gb : null] : []), ...(scaleMul ? [scaleMul.requiresGrad ? gsm : null] : [])];
  });
}

/**
 * `splitHeads` for inference into `out`: part (0 q, 1 k, 2 v) of qkv [B, L, 3C] + bias, cosine-normalised
 * (× sH[h] for q) when l2; head h of row b, token i goes to out[((b·H + h)·stride + base + i)·hd ...]
 * (stride = L, base = 0 for a [B, H, L, hd] tensor; stride = capacity, base = len for a KV cache).
 * The same float32 rounding of q + bias as `splitHeads`; the squared norm is summed in two float64 partial
 * sums (shorter dependency chains in V8), so the normalised vector can differ from `splitHeads`'s by one
 * float32 ulp in rare cases.
 */
export function splitHeadsInto(Q: Float32Array, B: number, L: number, H: number, hd: number, part: number, bias: Float32Array, l2: boolean,
  sH: Float64Array | null, out: Float32Array, stride: number, base: number): void {
  const native = backend().native; // the same in C on the thread pool (native/rows.c)
  if (native) { native.splitHeads(Q, B, L, H, hd, part, bias, l2, sH, out, stride, base); return; }
  const C = H * hd, C3 = 3 * C;
  for (let b = 0; b < B; b++) for (let i = 0; i < L; i++) {
    const src = (b * L + i) * C3 + part * C;
    for (let h = 0; h < H; h++) {
      const so = src + h * hd, dst = ((b * H + h) * stride + base + i) * hd, bo = h * hd;
      let ss = 0, ss1 = 0, d = 0;
      for (; d + 1 < hd; d += 2) {
        const v = fr(Q[so + d] + bias[bo + d]), w = fr(Q[so + d + 1] + bias[bo + d + 1]);
        out[dst + d] = v; out[dst + d + 1] = w; ss += v * v; ss1 += w * w;
      }
      if (d < hd) { const v = fr(Q[so + d] + bias[bo + d]); out[dst + d] = v; ss += v * v; }
      ss += ss1;
      if (l2) {
        const f = (sH ? sH[h] : 1) / Math.max(Math.sqrt(ss), 1e-12);
        for (let d = 0; d < hd; d++) out[dst + d] *= f;
      }
    }
  }
}
