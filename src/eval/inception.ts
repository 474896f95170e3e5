/**
 * The FID Inception network: pytorch-fid's `fid_inception_v3()` (the TensorFlow 2015-12-05 Inception
 * graph ported to PyTorch, torchvision's Inception v3 layout with the FID block variants), inference
 * only, as a FeatureExtractor: pool3 features [B, 2048] (FID, precision/recall) and the 1008-class
 * `fc` logits (Inception Score). Facts from pytorch-fid (mseitzer/pytorch-fid, src/pytorch_fid/
 * inception.py) and torchvision (models/inception.py); spec notes in the fid-inception fixture README.
 *
 *   input  [B, C, H, W] in [0, 1]; C = 1 is repeated to 3 channels; bilinear resize to 299×299
 *          (align_corners=False), then 2x − 1
 *   block0 Conv2d_1a_3x3 (stride 2), Conv2d_2a_3x3, Conv2d_2b_3x3 (padding 1), max pool 3/2   → 64×73×73
 *   block1 Conv2d_3b_1x1, Conv2d_4a_3x3, max pool 3/2                                         → 192×35×35
 *   block2 Mixed_5b/5c/5d (FIDInceptionA), Mixed_6a (InceptionB), Mixed_6b…6e (FIDInceptionC) → 768×17×17
 *   block3 Mixed_7a (InceptionD), Mixed_7b (FIDInceptionE_1), Mixed_7c (FIDInceptionE_2),
 *          adaptive average pool to 1×1                                                       → 2048 (pool3)
 *   logits fc: 2048 → 1008
 *
 * Every conv is BasicConv2d: conv (no bias) → BatchNorm2d(eps 0.001) → ReLU; the BatchNorm is folded
 * into the conv at load: w' = w·γ/√(σ² + ε), b' = β − μ·γ/√(σ² + ε). The FID variants' pool branches:
 * FIDInceptionA / C / E_1 average-pool 3×3 / 1 / padding 1 with count_include_pad=False;
 * FIDInceptionE_2 (Mixed_7c) max-pools there instead.
 */
import { Tensor, noGrad } from '../tensor/tensor.js';
import { conv2d } from '../tensor/ops/conv.js';
import { concat } from '../tensor/ops/shape.js';
import { linear } from '../tensor/ops/matmul.js';
import { avgPool2d, globalAvgPool, maxPool2d } from '../tensor/ops/pool.js';
import { bilinearResize } from '../tensor/ops/bilinear.js';
import { readSafetensors } from '../io/safetensors.js';
import { readPth } from '../io/pth.js';
import { nodeFs, sha256Hex } from '../io/node-fs.js';
import type { FeatureExtractor } from './features.js';

export const INCEPTION_SIZE = 299;
export const INCEPTION_FEATURES = 2048;
export const INCEPTION_CLASSES = 1008;
const BN_EPS = 0.001;

type Pad = [number, number, number, number]; // top, bottom, left, right

/** BasicConv2d with its BatchNorm folded in: conv(x)·scale + shift, then ReLU. */
export class BasicConv {
  constructor(readonly name: string, readonly weight: Tensor, readonly bias: Tensor, readonly stride: number, readonly padding: Pad) {}
  forward(x: Tensor, prof?: Map<string, number>): Tensor {
    const t0 = prof ? performance.now() : 0;
    const y = conv2d(x, this.weight, this.bias, { stride: this.stride, padding: this.padding });
    const d = y.data as Float32Array;
    for (let i = 0; i < d.length; i++) if (!(d[i] > 0)) d[i] = 0; // ReLU (in place: y is ours)
    if (prof) prof.set(this.name, (prof.get(this.name) ?? 0) + performance.now() - t0);
    return y;
  }
}

/** Fold `<name>.bn.*` into `<name>.conv.weight` (float64 arithmetic, float32 result). */
function basicConv(sd: Map<string, Tensor>, name: string, stride = 1, padding: Pad = [0, 0, 0, 0]): BasicConv {
  const get = (k: string): Tensor => {
    const t = sd.get(`${name}.${k}`);
    if (!t) throw new Error(`FID Inception weights: missing '${name}.${k}'`);
    if (t.dtype !== 'float32') throw new Error(`FID Inception weights: '${name}.${k}' is ${t.dtype}, expected float`);
    return t;
  };
  const w = get('conv.weight'), g = get('bn.weight'), b = get('bn.bias'), mu = get('bn.running_mean'), v = get('bn.running_var');
  if (w.ndim !== 4) throw new Error(`FID Inception weights: '${name}.conv.weight' has shape [${w.shape.join(', ')}], expected 4 dims`);
  const cout = w.shape[0], per = w.size / cout;
  for (const t of [g, b, mu, v]) if (t.size !== cout) throw new Error(`FID Inception weights: '${name}.bn.*' has ${t.size} values, expected ${cout}`);
  const W = w.data as Float32Array, out = new Float32Array(w.size), shift = new Float32Array(cout);
  for (let c = 0; c < cout; c++) {
    const s = g.data[c] / Math.sqrt(v.data[c] + BN_EPS);
    for (let i = c * per; i < (c + 1) * per; i++) out[i] = W[i] * s;
    shift[c] = b.data[c] - mu.data[c] * s;
  }
  return new BasicConv(name, new Tensor(out, w.shape), new Tensor(shift, [cout]), stride, padding);
}

const P1: Pad = [1, 1, 1, 1], P2: Pad = [2, 2, 2, 2];
const P_1x7: Pad = [0, 0, 3, 3], P_7x1: Pad = [3, 3, 0, 0], P_1x3: Pad = [0, 0, 1, 1], P_3x1: Pad = [1, 1, 0, 0];

const fidAvgPool = (x: Tensor): Tensor => avgPool2d(x, { kernel: 3, stride: 1, padding: 1, countIncludePad: false });

/** The network with folded weights. */
export class InceptionV3FID {
  private readonly c: Map<string, BasicConv>;
  readonly fcWeight: Tensor;
  readonly fcBias: Tensor;

  constructor(sd: Map<string, Tensor>) {
    const c = new Map<string, BasicConv>();
    const add = (name: string, stride = 1, pad: Pad = [0, 0, 0, 0]): void => { c.set(name, basicConv(sd, name, stride, pad)); };
    add('Conv2d_1a_3x3', 2); add('Conv2d_2a_3x3'); add('Conv2d_2b_3x3', 1, P1); add('Conv2d_3b_1x1'); add('Conv2d_4a_3x3');
    for (const m of ['Mixed_5b', 'Mixed_5c', 'Mixed_5d']) { // InceptionA
      add(`${m}.branch1x1`); add(`${m}.branch5x5_1`); add(`${m}.branch5x5_2`, 1, P2);
      add(`${m}.branch3x3dbl_1`); add(`${m}.branch3x3dbl_2`, 1, P1); add(`${m}.branch3x3dbl_3`, 1, P1); add(`${m}.branch_pool`);
    }
    add('Mixed_6a.branch3x3', 2); add('Mixed_6a.branch3x3dbl_1'); add('Mixed_6a.branch3x3dbl_2', 1, P1); add('Mixed_6a.branch3x3dbl_3', 2); // InceptionB
    for (const m of ['Mixed_6b', 'Mixed_6c', 'Mixed_6d', 'Mixed_6e']) { // InceptionC
      add(`${m}.branch1x1`); add(`${m}.branch7x7_1`); add(`${m}.branch7x7_2`, 1, P_1x7); add(`${m}.branch7x7_3`, 1, P_7x1);
      add(`${m}.branch7x7dbl_1`); add(`${m}.branch7x7dbl_2`, 1, P_7x1); add(`${m}.branch7x7dbl_3`, 1, P_1x7);
      add(`${m}.branch7x7dbl_4`, 1, P_7x1); add(`${m}.branch7x7dbl_5`, 1, P_1x7); add(`${m}.branch_pool`);
    }
    add('Mixed_7a.branch3x3_1'); add('Mixed_7a.branch3x3_2', 2); // InceptionD
    add('Mixed_7a.branch7x7x3_1'); add('Mixed_7a.branch7x7x3_2', 1, P_1x7); add('Mixed_7a.branch7x7x3_3', 1, P_7x1); add('Mixed_7a.branch7x7x3_4', 2);
    for (const m of ['Mixed_7b', 'Mixed_7c']) { // InceptionE
      add(`${m}.branch1x1`); add(`${m}.branch3x3_1`); add(`${m}.branch3x3_2a`, 1, P_1x3); add(`${m}.branch3x3_2b`, 1, P_3x1);
      add(`${m}.branch3x3dbl_1`); add(`${m}.branch3x3dbl_2`, 1, P1); add(`${m}.branch3x3dbl_3a`, 1, P_1x3); add(`${m}.branch3x3dbl_3b`, 1, P_3x1);
      add(`${m}.branch_pool`);
    }
    this.c = c;
    const fw = sd.get('fc.weight'), fb = sd.get('fc.bias');
    if (!fw || !fb || fw.ndim !== 2 || fw.shape[1] !== INCEPTION_FEATURES || fb.size !== fw.shape[0]) {
      throw new Error(`FID Inception weights: 'fc.weight' [N, ${INCEPTION_FEATURES}] and 'fc.bias' [N] are required`);
    }
    this.fcWeight = fw; this.fcBias = fb;
  }

  get numClasses(): number { return this.fcWeight.shape[0]; }

  /** [B, C, H, W] in [0, 1], C ∈ {1, 3} → [B, 3, 299, 299] in [−1, 1] (pytorch-fid's resize_input, normalize_input). */
  preprocess(images: Tensor): Tensor {
    if (images.ndim !== 4 || (images.shape[1] !== 1 && images.shape[1] !== 3)) {
      throw new RangeError(`FID Inception: images must be [B, 1 or 3, H, W], got [${images.shape.join(', ')}]`);
    }
    let x = images.shape[1] === 1 ? concat([images, images, images], 1) : images;
    if (x.shape[2] !== INCEPTION_SIZE || x.shape[3] !== INCEPTION_SIZE) x = bilinearResize(x, INCEPTION_SIZE, INCEPTION_SIZE);
    const d = new Float32Array(x.size), s = x.data;
    for (let i = 0; i < d.length; i++) d[i] = 2 * s[i] - 1;
    return new Tensor(d, x.shape);
  }

  /**
   * The wrapper's output blocks for a preprocessed batch: block0..block2 (feature maps) and pool3
   * [B, 2048]. `prof` accumulates milliseconds per conv (and per pooling step).
   */
  blocks(x: Tensor, prof?: Map<string, number>): { block0: Tensor; block1: Tensor; block2: Tensor; pool3: Tensor } {
    return noGrad(() => {
      const cv = (name: string, t: Tensor): Tensor => this.c.get(name)!.forward(t, prof);
      const timed = (name: string, f: () => Tensor): Tensor => {
        if (!prof) return f();
        const t0 = performance.now(), y = f();
        prof.set(name, (prof.get(name) ?? 0) + performance.now() - t0);
        return y;
      };
      const mp = (t: Tensor, name: string): Tensor => timed(name, () => maxPool2d(t, { kernel: 3, stride: 2 }));
      const cat = (ts: Tensor[], name: string): Tensor => timed(name, () => concat(ts, 1));

      const block0 = mp(cv('Conv2d_2b_3x3', cv('Conv2d_2a_3x3', cv('Conv2d_1a_3x3', x))), 'maxpool0');
      const block1 = mp(cv('Conv2d_4a_3x3', cv('Conv2d_3b_1x1', block0)), 'maxpool1');

      let h = block1;
      for (const m of ['Mixed_5b', 'Mixed_5c', 'Mixed_5d']) { // FIDInceptionA
        const b1 = cv(`${m}.branch1x1`, h);
        const b5 = cv(`${m}.branch5x5_2`, cv(`${m}.branch5x5_1`, h));
        const b3 = cv(`${m}.branch3x3dbl_3`, cv(`${m}.branch3x3dbl_2`, cv(`${m}.branch3x3dbl_1`, h)));
        const bp = cv(`${m}.branch_pool`, timed(`${m}.avgpool`, () => fidAvgPool(h)));
        h = cat([b1, b5, b3, bp], `${m}.cat`);
      }
      { // InceptionB
        const m = 'Mixed_6a';
        const b3 = cv(`${m}.branch3x3`, h);
        const bd = cv(`${m}.branch3x3dbl_3`, cv(`${m}.branch3x3dbl_2`, cv(`${m}.branch3x3dbl_1`, h)));
        h = cat([b3, bd, mp(h, `${m}.maxpool`)], `${m}.cat`);
      }
      for (const m of ['Mixed_6b', 'Mixed_6c', 'Mixed_6d', 'Mixed_6e']) { // FIDInceptionC
        const b1 = cv(`${m}.branch1x1`, h);
        const b7 = cv(`${m}.branch7x7_3`, cv(`${m}.branch7x7_2`, cv(`${m}.branch7x7_1`, h)));
        let bd = cv(`${m}.branch7x7dbl_1`, h);
        for (const k of [2, 3, 4, 5]) bd = cv(`${m}.branch7x7dbl_${k}`, bd);
        const bp = cv(`${m}.branch_pool`, timed(`${m}.avgpool`, () => fidAvgPool(h)));
        h = cat([b1, b7, bd, bp], `${m}.cat`);
      }
      const block2 = h;
      { // InceptionD
        const m = 'Mixed_7a';
        const b3 = cv(`${m}.branch3x3_2`, cv(`${m}.branch3x3_1`, h));
        const b7 = cv(`${m}.branch7x7x3_4`, cv(`${m}.branch7x7x3_3`, cv(`${m}.branch7x7x3_2`, cv(`${m}.branch7x7x3_1`, h))));
        h = cat([b3, b7, mp(h, `${m}.maxpool`)], `${m}.cat`);
      }
      for (const m of ['Mixed_7b', 'Mixed_7c']) { // FIDInceptionE_1, FIDInceptionE_2
        const b1 = cv(`${m}.branch1x1`, h);
        const t3 = cv(`${m}.branch3x3_1`, h);
        const b3 = cat([cv(`${m}.branch3x3_2a`, t3), cv(`${m}.branch3x3_2b`, t3)], `${m}.cat`);
        const td = cv(`${m}.branch3x3dbl_2`, cv(`${m}.branch3x3dbl_1`, h));
        const bd = cat([cv(`${m}.branch3x3dbl_3a`, td), cv(`${m}.branch3x3dbl_3b`, td)], `${m}.cat`);
        const pooled = m === 'Mixed_7b'
          ? timed(`${m}.avgpool`, () => fidAvgPool(h))
          : timed(`${m}.maxpool`, () => maxPool2d(h, { kernel: 3, stride: 1, padding: 1 }));
        const bp = cv(`${m}.branch_pool`, pooled);
        h = cat([b1, b3, bd, bp], `${m}.cat`);
      }
      const pool3 = timed('pool3', () => globalAvgPool(h));
      return { block0, block1, block2, pool3 };
    });
  }

  /** pool3 features [B, 2048] → logits [B, numClasses] (`fc`). */
  logits(pool3: Tensor): Tensor {
    return noGrad(() => linear(pool3, this.fcWeight, this.fcBias));
  }

  /** images in [0, 1] → pool3 features and logits. */
  forward(images: Tensor, prof?: Map<string, number>): { pool3: Tensor; logits: Tensor } {
    const x = noGrad(() => this.preprocess(images));
    const { pool3 } = this.blocks(x, prof);
    return { pool3, logits: this.logits(pool3) };
  }
}

/** The FeatureExtractor over the FID Inception (`inception`). */
export class InceptionExtractor implements FeatureExtractor {
  readonly name = 'inception';
  readonly featureDim = INCEPTION_FEATURES;
  readonly numClasses: number;
  constructor(readonly net: InceptionV3FID, readonly weightsHash: string) { this.numClasses = net.numClasses; }
  extract(images: Tensor): { features: Float32Array; logits: Float32Array } {
    const { pool3, logits } = this.net.forward(images);
    return { features: pool3.data as Float32Array, logits: logits.data as Float32Array };
  }
}

/**
 * The FID Inception from a state dict with pytorch-fid's key names: the user's
 * `pt_inception-2015-12-05-6726825d.pth` (legacy or zip .pth) or a .safetensors with the same keys
 * (the fixture's random F16 weights). `num_batches_tracked` entries are ignored.
 */
export function inceptionFromStateDict(sd: Map<string, Tensor>): InceptionV3FID {
  return new InceptionV3FID(sd);
}

/**
 * Load the weights (a path, or the file's bytes; .pth by content: zip or legacy pickle; else safetensors) as an
 * `inception` FeatureExtractor. `weightsHash` (sha256 of the bytes) is computed through node:crypto unless given,
 * so outside Node pass it.
 */
export function loadInceptionExtractor(weights: string | Uint8Array, weightsHash?: string): FeatureExtractor {
  const bytes = typeof weights === 'string' ? new Uint8Array(nodeFs().readFileSync(weights)) : weights;
  const isZip = bytes[0] === 0x50 && bytes[1] === 0x4b, isPickle = bytes[0] === 0x80;
  const sd = isZip || isPickle ? readPth(bytes) : readSafetensors(bytes);
  return new InceptionExtractor(inceptionFromStateDict(sd), weightsHash ?? sha256Hex(bytes));
}
