/**
 * Seeded random initialisation of a VAR (`--random-init`, benchmarks, training from scratch),
 * following the official `VAR.__init__` + `init_weights` (docs/VAR.md §3.7):
 * - init_std = √(1/(3C)); every Linear weight and both embeddings, pos_start and pos_1LC
 *   ~ trunc_normal(0, init_std) with absolute bounds ±2 (effectively untruncated); biases 0.
 * - head.weight ×= init_head (0.02); head_nm.ada_lin weight ×= init_adaln (0.5).
 * - per block: proj.weight and fc2.weight /= √(2·depth); ada_lin weight rows [2C:] ×= init_adaln,
 *   rows [:2C] (the gammas) ×= init_adaln_gamma (1e-5); shared AdaLN: ada_gss ~ N(0,1)/√C with the
 *   same two factors on its chunks.
 * - q_bias = v_bias = 0; scale_mul_1H11 = ln 4.
 * Draws come from our Rng in the parameter order of `varParamShapes`, so a seed fixes the weights.
 */
import { Tensor, Rng, toBf16Array } from '../tensor/index.js';
import { isBf16Weight, type WeightsDtype } from './weights-dtype.js';
import { type VarConfig } from './config.js';
import { VAR, varParamShapes } from './var.js';

export interface VarInitOptions {
  initAdaln?: number;
  initAdalnGamma?: number;
  initHead?: number;
  /** Weight std; default √(1/(3C)). */
  initStd?: number;
  /** 'bf16': the weight matrices of src/var/weights-dtype.ts stored as bf16, each converted as soon as it is drawn
   *  (the same values as `toBf16Weights` of the float32 model, without ever holding all of it). Default 'fp32'. */
  weightsDtype?: WeightsDtype;
}

/**
 * d ~ trunc_normal(0, std) with absolute bounds ±2 (`trunc_normal_`), by Marsaglia's polar method
 * on our Rng's uniforms (no trig: ~2× faster than Box–Muller, which matters for 310M weights).
 */
function truncNormal(d: Float32Array, rng: Rng, std: number): void {
  let i = 0;
  while (i < d.length) {
    const u = 2 * rng.uniform() - 1, v = 2 * rng.uniform() - 1, s = u * u + v * v;
    if (s >= 1 || s === 0) continue;
    const m = std * Math.sqrt((-2 * Math.log(s)) / s);
    const a = u * m, b = v * m;
    if (a >= -2 && a <= 2) d[i++] = a;
    if (i < d.length && b >= -2 && b <= 2) d[i++] = b;
  }
}

/** Seeded parameters of a config (official init, §3.7), keyed by the official names. */
export function initVarParams(config: VarConfig, rng: Rng, opts: VarInitOptions = {}): Map<string, Tensor> {
  const C = config.width;
  const std = opts.initStd ?? Math.sqrt(1 / (3 * C));
  const initAdaln = opts.initAdaln ?? 0.5, initGamma = opts.initAdalnGamma ?? 1e-5, initHead = opts.initHead ?? 0.02;
  const depthScale = 1 / Math.sqrt(2 * config.depth);
  const out = new Map<string, Tensor>();
  for (const [k, shape] of varParamShapes(config)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const d = new Float32Array(n);
    if (k.endsWith('.bias') || k.endsWith('q_bias') || k.endsWith('v_bias')) {
      // zero
    } else if (k.endsWith('scale_mul_1H11')) {
      d.fill(Math.log(4));
    } else if (k.endsWith('ada_gss')) {
      truncNormal(d, rng, 1 / Math.sqrt(C)); // randn/√C (|x| > 2 has probability ~0 at this std)
      for (let i = 0; i < n; i++) d[i] *= i < 2 * C ? initGamma : initAdaln; // (1,1,6,C): chunks 0,1 are gammas
    } else {
      truncNormal(d, rng, std);
      if (k === 'head.weight') for (let i = 0; i < n; i++) d[i] *= initHead;
      else if (k === 'head_nm.ada_lin.1.weight') for (let i = 0; i < n; i++) d[i] *= initAdaln;
      else if (k.endsWith('attn.proj.weight') || k.endsWith('ffn.fc2.weight')) for (let i = 0; i < n; i++) d[i] *= depthScale;
      else if (/^blocks\.\d+\.ada_lin\.1\.weight$/.test(k)) {
        // rows [:2C] are gamma1, gamma2; rows [2C:] scales and shifts (weight is (6C, C))
        for (let i = 0; i < n; i++) d[i] *= i < 2 * C * C ? initGamma : initAdaln;
      }
    }
    const t = opts.weightsDtype === 'bf16' && isBf16Weight(k) ? new Tensor(toBf16Array(d), shape) : new Tensor(d, shape);
    t.name = k;
    out.set(k, t);
  }
  return out;
}

/** A VAR with seeded random weights. */
export function randomVar(config: VarConfig, seed = 0, opts: VarInitOptions = {}): VAR {
  return new VAR(config, initVarParams(config, new Rng(seed), opts));
}
