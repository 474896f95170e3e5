/**
 * The residual multi-scale vector quantiser (official `VectorQuantizer2`, docs/VAR.md §4.1, §4.3, §5, §6).
 *
 * Parameters are read by their official state-dict names from a shared `Map<string, Tensor>`:
 *   quantize.embedding.weight            codebook [V, Cvae]
 *   quantize.quant_resi.qresi_ls.{k}.*   K partially shared Phi convs (share_quant_resi = K ≥ 2)
 *   quantize.quant_resi.qresi.*          one shared Phi (share_quant_resi = 1)
 *   quantize.quant_resi.{i}.*            one Phi per scale (share_quant_resi = 0)
 * A quant_resi ratio of 0 makes every Phi the identity (no keys at all).
 *
 * Everything is built from differentiable tensor ops (conv2d, bicubic, area, embedding) so the
 * tokenizer can be trained; the nearest-code search itself is discrete and runs outside the graph.
 */
import {
  Tensor, noGrad, zeros, add, sub, scale, mean, square, reshape, permute, transpose, concat, gemmCounted, flopsTag,
} from '../tensor/index.js';
import { conv2d } from '../tensor/ops/conv.js';
import { embedding } from '../tensor/ops/indexing.js';
import { areaDownsample, bicubicUpsample } from '../tensor/ops/resample.js';
import type { StateDict } from './basic-vae.js';

export interface QuantizerConfig {
  /** Codebook size V. */
  vocabSize: number;
  /** Channels of the latent (= z channels). */
  Cvae: number;
  /** Side of each scale's token map, coarse to fine; the last equals the latent side. */
  patchNums: readonly number[];
  /** Phi mixing ratio r in Phi(h) = (1−r)·h + r·Conv3×3(h); 0 disables Phi. Official 0.5. */
  quantResi: number;
  /** 0: one Phi per scale; 1: one shared Phi; K ≥ 2: K partially shared Phis (official 4). */
  shareQuantResi: number;
  /** Number of Phi convs when shareQuantResi = 0 (official: `default_qresi_counts or len(patch_nums)`). */
  numPhis?: number;
  /** Commitment weight of the training loss (official 0.25). */
  beta?: number;
}

// ---------------------------------------------------------------------------------------------
// Phi selection (docs/VAR.md §4.1)

/**
 * numpy.linspace(start, stop, num) in float64 exactly as numpy computes it:
 * step = (stop − start)/(num − 1), y_k = k·step + start, and the last element set to `stop`.
 */
export function linspaceNumpy(start: number, stop: number, num: number): number[] {
  if (num <= 0) return [];
  if (num === 1) return [start];
  const div = num - 1, delta = stop - start, step = delta / div;
  const y = new Array<number>(num);
  for (let k = 0; k < num; k++) y[k] = step === 0 ? (k / div) * delta + start : k * step + start;
  y[num - 1] = stop;
  return y;
}

/**
 * The ticks of the official PhiPartiallyShared / PhiNonShared: K = 4 → linspace(1/3/K, 1−1/3/K, K),
 * else linspace(1/2/K, 1−1/2/K, K). (`1/3/K` is evaluated left to right, as Python does.)
 */
export function phiTicks(K: number): number[] {
  return K === 4 ? linspaceNumpy(1 / 3 / K, 1 - 1 / 3 / K, K) : linspaceNumpy(1 / 2 / K, 1 - 1 / 2 / K, K);
}

/**
 * Index of the Phi used at scale `si` of `SN` scales, given `numPhis` Phi convs (K; 1 for the fully
 * shared case): argmin_k |ticks_k − si/(SN−1)|, first minimum wins, all in float64 (docs/VAR.md §4.1).
 * SN = 1 (where the official code divides by zero) uses position 0.
 */
export function phiIndex(si: number, SN: number, numPhis: number): number {
  if (!Number.isInteger(si) || si < 0 || si >= SN) throw new RangeError(`phiIndex: scale ${si} is outside 0..${SN - 1}`);
  if (!Number.isInteger(numPhis) || numPhis < 1) throw new RangeError(`phiIndex: need at least one Phi, got ${numPhis}`);
  if (numPhis === 1) return 0;
  const at = SN > 1 ? si / (SN - 1) : 0;
  const ticks = phiTicks(numPhis);
  let best = 0, bestD = Math.abs(ticks[0] - at);
  for (let k = 1; k < ticks.length; k++) {
    const d = Math.abs(ticks[k] - at);
    if (d < bestD) { best = k; bestD = d; }
  }
  return best;
}

/** The Phi index of every scale: e.g. SN = 10, K = 4 → [0,0,1,1,1,2,2,3,3,3]. */
export function phiMap(SN: number, numPhis: number): number[] {
  return Array.from({ length: SN }, (_, si) => phiIndex(si, SN, numPhis));
}

/** State-dict prefix (without the trailing '.') of Phi number k for a given share_quant_resi. */
export function phiKeyPrefix(shareQuantResi: number, k: number): string {
  if (shareQuantResi === 0) return `quantize.quant_resi.${k}`;
  if (shareQuantResi === 1) return 'quantize.quant_resi.qresi';
  return `quantize.quant_resi.qresi_ls.${k}`;
}

/** How many Phi convs a config has (0 when the ratio is 0 and every Phi is the identity). */
export function phiCount(cfg: QuantizerConfig): number {
  if (Math.abs(cfg.quantResi) <= 1e-6) return 0;
  if (cfg.shareQuantResi === 0) return cfg.numPhis ?? cfg.patchNums.length;
  if (cfg.shareQuantResi === 1) return 1;
  return cfg.shareQuantResi;
}

// ---------------------------------------------------------------------------------------------

/** Result of the training forward (official `VectorQuantizer2.forward`). */
export interface QuantizerOutput {
  /** Straight-through f̂: value f̂ (as (f̂ − f) + f), gradient flows to f unchanged. */
  fHat: Tensor;
  /** mean over scales of β·mse(sg[f̂], f) + mse(f̂, sg[f]) (commitment + codebook/Phi loss). */
  vqLoss: Tensor;
  /** Codebook hits per scale, [SN][V] (for usage statistics and dead-code restarts). */
  hits: Int32Array[];
  /** Token indices per scale, int32 [B, pn²]. */
  idx: Tensor[];
}

export class VectorQuantizer {
  readonly vocabSize: number;
  readonly Cvae: number;
  readonly patchNums: readonly number[];
  readonly quantResi: number;
  readonly shareQuantResi: number;
  readonly numPhis: number;
  readonly beta: number;

  constructor(readonly sd: StateDict, cfg: QuantizerConfig) {
    if (!cfg.patchNums.length || cfg.patchNums.some((p) => !Number.isInteger(p) || p < 1)) {
      throw new RangeError(`VectorQuantizer: patchNums must be positive integers, got [${cfg.patchNums.join(', ')}]`);
    }
    if (!Number.isInteger(cfg.shareQuantResi) || cfg.shareQuantResi < 0) {
      throw new RangeError(`VectorQuantizer: shareQuantResi must be 0 (one Phi per scale), 1 (shared) or K ≥ 2, got ${cfg.shareQuantResi}`);
    }
    this.vocabSize = cfg.vocabSize;
    this.Cvae = cfg.Cvae;
    this.patchNums = cfg.patchNums.slice();
    this.quantResi = cfg.quantResi;
    this.shareQuantResi = cfg.shareQuantResi;
    this.numPhis = phiCount(cfg);
    this.beta = cfg.beta ?? 0.25;
  }

  /** The codebook [V, Cvae]. */
  get codebook(): Tensor { return this.param('quantize.embedding.weight'); }

  private param(key: string): Tensor {
    const t = this.sd.get(key);
    if (!t) throw new Error(`VQVAE quantiser: parameter '${key}' is missing from the state dict`);
    return t;
  }

  /** Side of the latent map (the last patch number). */
  get latentSize(): number { return this.patchNums[this.patchNums.length - 1]; }

  /** The Phi index map for SN scales (defaults to this quantiser's patch numbers). */
  phiMap(SN = this.patchNums.length): number[] {
    return this.numPhis === 0 ? new Array<number>(SN).fill(-1) : phiMap(SN, this.numPhis);
  }

  /**
   * Phi at scale si of SN: (1−r)·h + r·Conv3×3(h) (official `Phi.forward`: h·(1−r) + conv(h)·r, each
   * factor rounded to float32 as torch does with a Python scalar). Identity when r = 0.
   */
  phi(si: number, SN: number, h: Tensor): Tensor {
    if (this.numPhis === 0) return h;
    const k = phiIndex(si, SN, this.numPhis);
    const pre = phiKeyPrefix(this.shareQuantResi, k);
    const r = Math.abs(this.quantResi);
    const conv = conv2d(h, flopsTag(this.param(`${pre}.weight`), 'phi'), this.sd.get(`${pre}.bias`) ?? null, { padding: 1 });
    return add(scale(h, Math.fround(1 - r)), scale(conv, Math.fround(r)));
  }

  /** Codebook vectors of idx (int32, B·pn² entries, row-major per scale) as [B, Cvae, pn, pn]. */
  embedIdx(idx: Tensor, pn: number): Tensor {
    if (idx.dtype !== 'int32') throw new TypeError(`embedIdx: indices must be an int32 tensor, got ${idx.dtype}`);
    const l = pn * pn;
    if (!Number.isInteger(pn) || pn < 1 || idx.size % l !== 0 || idx.ndim < 1) {
      throw new RangeError(`embedIdx: indices [${idx.shape.join(', ')}] do not form [B, ${pn}·${pn}]`);
    }
    const B = idx.size / l;
    const e = embedding(this.codebook, reshape(idx, [B, l])); // [B, l, C]
    return reshape(transpose(e, 1, 2), [B, this.Cvae, pn, pn]);
  }

  /**
   * Nearest codes of the rows of z [N, C] (float32 data, no graph): argmin_v (|z|² + |e_v|²) − 2·z·e_v,
   * computed as the official addmm (beta = 1 on the norms, alpha = −2 on z·eᵀ); first minimum wins.
   */
  nearest(z: Float32Array, N: number): Int32Array {
    const E = this.codebook.f32, V = this.vocabSize, C = this.Cvae;
    if (E.length !== V * C) throw new RangeError(`nearest: codebook has ${E.length} values, expected ${V}×${C}`);
    const ee = new Float32Array(V);
    for (let v = 0; v < V; v++) { let s = 0; for (let c = 0; c < C; c++) { const x = E[v * C + c]; s += x * x; } ee[v] = s; }
    const out = new Int32Array(N);
    const rowsPer = Math.max(1, Math.min(N, Math.floor((4 << 20) / V)));
    const d = new Float32Array(rowsPer * V);
    for (let n0 = 0; n0 < N; n0 += rowsPer) {
      const rows = Math.min(rowsPer, N - n0);
      for (let i = 0; i < rows; i++) {
        let s = 0;
        const o = (n0 + i) * C;
        for (let c = 0; c < C; c++) { const x = z[o + c]; s += x * x; }
        const zz = Math.fround(s);
        for (let v = 0; v < V; v++) d[i * V + v] = zz + ee[v];
      }
      gemmCounted(false, true, rows, V, C, -2, z, n0 * C, C, E, 0, C, 1, d, 0, V);
      for (let i = 0; i < rows; i++) {
        let best = 0, bd = d[i * V];
        for (let v = 1; v < V; v++) { const x = d[i * V + v]; if (x < bd) { bd = x; best = v; } }
        out[n0 + i] = best;
      }
    }
    return out;
  }

  /** The tokens of one scale: z = area(f_rest → pn) (or f_rest itself at the last scale), then nearest codes. */
  private quantizeScale(fRest: Tensor, pn: number, last: boolean): Int32Array {
    const B = fRest.shape[0];
    const z = last ? fRest : areaDownsample(fRest, pn, pn);
    const zNC = permute(z, [0, 2, 3, 1]); // [B, pn, pn, C] row-major: one row per token
    return this.nearest(zNC.f32, B * pn * pn);
  }

  /** h of scale si for the residual update: Phi(bicubic(embed(idx) → H×W)), no interpolation at the last scale. */
  private residual(idx: Tensor, si: number, SN: number, pn: number, H: number, W: number): Tensor {
    let h = this.embedIdx(idx, pn);
    if (si !== SN - 1) h = bicubicUpsample(h, H, W);
    return this.phi(si, SN, h);
  }

  private checkF(f: Tensor, op: string, patchNums: readonly number[]): [number, number, number, number] {
    if (f.ndim !== 4 || f.shape[1] !== this.Cvae) throw new RangeError(`${op}: expected f [B, ${this.Cvae}, H, W], got [${f.shape.join(', ')}]`);
    const [B, C, H, W] = f.shape;
    const last = patchNums[patchNums.length - 1];
    if (H !== last || W !== last) {
      throw new RangeError(`${op}: the latent is ${H}×${W} but the last patch number is ${last}; they must be equal`);
    }
    return [B, C, H, W];
  }

  /**
   * Official `f_to_idxBl_or_fhat` (docs/VAR.md §4.3): the residual multi-scale quantisation of f.
   * Returns per scale either the tokens (int32 [B, pn²]) or the cumulative f̂ after that scale ([B, C, H, W]).
   * Runs without a graph (the official code detaches f; the outputs are targets, not trainable paths).
   */
  fToIdxBlOrFhat(f: Tensor, toFhat: boolean, patchNums: readonly number[] = this.patchNums): Tensor[] {
    return noGrad(() => {
      const [B, C, H, W] = this.checkF(f, 'fToIdxBlOrFhat', patchNums);
      const SN = patchNums.length;
      let fRest = f.detach();
      let fHat = zeros([B, C, H, W]);
      const out: Tensor[] = [];
      for (let si = 0; si < SN; si++) {
        const pn = patchNums[si];
        const idx = new Tensor(this.quantizeScale(fRest, pn, si === SN - 1), [B, pn * pn]);
        const h = this.residual(idx, si, SN, pn, H, W);
        fHat = add(fHat, h);
        fRest = sub(fRest, h);
        out.push(toFhat ? fHat : idx);
      }
      return out;
    });
  }

  /**
   * Official `idxBl_to_var_input` (docs/VAR.md §5): teacher-forcing input [B, L − first_l, Cvae] from the
   * tokens of all scales. Differentiable in the codebook and Phi (it is a pure function of them).
   */
  idxBlToVarInput(idx: readonly Tensor[]): Tensor {
    const pns = this.patchNums, SN = pns.length;
    if (idx.length !== SN) throw new RangeError(`idxBlToVarInput: got ${idx.length} scales of indices, the quantiser has ${SN}`);
    const B = idx[0].shape[0], HW = this.latentSize;
    if (SN === 1) return zeros([B, 0, this.Cvae]);
    let fHat = zeros([B, this.Cvae, HW, HW]);
    const next: Tensor[] = [];
    for (let si = 0; si < SN - 1; si++) {
      const pn = pns[si];
      if (idx[si].size !== B * pn * pn) throw new RangeError(`idxBlToVarInput: scale ${si} has ${idx[si].size} indices, expected ${B}×${pn * pn}`);
      fHat = add(fHat, this.phi(si, SN, bicubicUpsample(this.embedIdx(idx[si], pn), HW, HW)));
      const pnNext = pns[si + 1];
      // area(f̂ → pn') viewed as (B, C, pn'²) then transposed to (B, pn'², C)
      next.push(transpose(reshape(areaDownsample(fHat, pnNext, pnNext), [B, this.Cvae, pnNext * pnNext]), 1, 2));
    }
    return concat(next, 1);
  }

  /**
   * Official `get_next_autoregressive_input` (docs/VAR.md §6): add scale si's h_BChw ([B, C, pn, pn]) to f̂
   * through Phi (after bicubic upsampling to the latent size, except at the last scale) and return the
   * new f̂ with the next scale's input map area(f̂ → pn_{si+1}) ([B, C, pn', pn']; f̂ itself at the last
   * scale). f̂ is not modified in place: the returned fHat is a new tensor.
   */
  getNextAutoregressiveInput(si: number, SN: number, fHat: Tensor, hBChw: Tensor): { fHat: Tensor; next: Tensor } {
    const HW = this.latentSize;
    if (SN !== this.patchNums.length) throw new RangeError(`getNextAutoregressiveInput: SN = ${SN} but the quantiser has ${this.patchNums.length} scales`);
    if (si !== SN - 1) {
      const h = this.phi(si, SN, bicubicUpsample(hBChw, HW, HW));
      const f = add(fHat, h);
      const pn = this.patchNums[si + 1];
      return { fHat: f, next: areaDownsample(f, pn, pn) };
    }
    const f = add(fHat, this.phi(si, SN, hBChw));
    return { fHat: f, next: f };
  }

  /**
   * Training forward (official `VectorQuantizer2.forward`): residual quantisation of f with the
   * straight-through estimator. The loss per scale is β·mse(sg[f̂], f) + mse(f̂, sg[f]), averaged over
   * scales; the gradient of the returned f̂ w.r.t. f is the identity.
   */
  forward(f: Tensor): QuantizerOutput {
    const [B, C, H, W] = this.checkF(f, 'VectorQuantizer.forward', this.patchNums);
    const pns = this.patchNums, SN = pns.length;
    const fNoGrad = f.detach();
    let fRest = fNoGrad;
    let fHat = zeros([B, C, H, W]);
    let loss: Tensor | null = null;
    const hits: Int32Array[] = [];
    const idxs: Tensor[] = [];
    for (let si = 0; si < SN; si++) {
      const pn = pns[si];
      const ids = noGrad(() => this.quantizeScale(fRest, pn, si === SN - 1));
      const hit = new Int32Array(this.vocabSize);
      for (const v of ids) hit[v]++;
      hits.push(hit);
      const idx = new Tensor(ids, [B, pn * pn]);
      idxs.push(idx);
      const h = this.residual(idx, si, SN, pn, H, W);
      fHat = add(fHat, h);
      fRest = noGrad(() => sub(fRest, h.detach()));
      const commit = scale(mean(square(sub(fHat.detach(), f))), Math.fround(this.beta));
      const codebook = mean(square(sub(fHat, fNoGrad)));
      const l = add(commit, codebook);
      loss = loss ? add(loss, l) : l;
    }
    const vqLoss = scale(loss as Tensor, 1 / SN);
    // f̂ = (f̂.data − f_no_grad) + f
    const delta = noGrad(() => sub(fHat.detach(), fNoGrad));
    return { fHat: add(delta, f), vqLoss, hits, idx: idxs };
  }
}
