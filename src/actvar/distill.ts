/**
 * ActVAR's two-stage distillation (paper §3.2–3.3 and Supplementary §6, eq. (5)–(7), (10)–(11),
 * (13)–(22)): the losses of one batch, the parameters each stage trains, held-out validation.
 * The training loop itself (optimiser, schedule, checkpoints) lives in src/train/distill.ts.
 * docs/ACTVAR.md "Training (distillation)" is the reference; in short:
 *
 * Forward. The student is the ActVAR (its VAR + routers + selectors) in the teacher-forced forward
 * (teacher.ts: the same sparse blocks as inference, on the whole pyramid); the teacher is the dense
 * VAR, a frozen copy (`cloneVar`), run under noGrad. Both get the same teacher-forcing input
 * (vae.idxBlToVarInput, as src/train/train-var.ts `varBatchLoss`) and the same labels (label dropout,
 * when training, is drawn once and shared). Drop-path is not used.
 *
 * Stage 1 (eq. (19)): L = L_cls + Σ_blocks [α·(L_dis^w + L_dis^t) + β·(L_bl^w + L_bl^t)], α = 0.05,
 * β = 0.01; only routers and selectors train. Per block and activated scale (a block's terms are the
 * mean over its activated scales):
 * - Pseudo-labels are computed with the TEACHER's weights on the STUDENT's hidden states: the
 *   selector's from the teacher's dense block applied to the student's block input q_{m−1}
 *   (d^t_i = ‖q*_m,i − q_{m−1,i}‖, eq. (10)/(16)), the router's from the teacher's FFN and its expert
 *   split applied to the student's FFN input of each kept token (d^w_e = MSE(e_e(h), F(h)), eq. (5)/(13)).
 *   These are the inputs the gates see at inference; labels from the teacher's own hidden states would
 *   describe a trajectory the sparse model never follows after its first sparse block.
 * - A = softmax(top-k(s)/τ) with s = −d^w (router) or d^t (selector), standardised within the row
 *   (z-score: the paper gives no scale for the distances, and raw MSEs or norms would make the softmax
 *   uniform or one-hot depending on the model), zero outside the top-k, then smoothed
 *   Ã = (1 − ε)·A + ε/n so that the KL below is finite (τ = 1, ε = 0.01 by default, `DistillHyper`).
 * - L_dis = KL(p ‖ Ã) in the direction the paper writes it (eq. (6), (11), (14), (17)):
 *   Σ p·log(p/Ã), with p_w = softmax(router logits) over the N experts and p_t = softmax of the
 *   selector's gate logits over the l tokens of the row at that scale (the gate is a per-token
 *   sigmoid at inference; its logits are monotone in the sigmoid, so softmax over the row ranks the
 *   tokens exactly as the inference top-K_t does).
 * - L_bl (Switch Transformer style, eq. (7)/(15)/(18)): router (N/K_w)·Σ_e f_e·P_e with f_e the
 *   fraction of kept tokens routed to expert e and P_e the mean p_w,e; selector (l/K_t)·Σ_i f_i·P_i
 *   with f_i the fraction of rows that keep position i and P_i the mean p_t,i over the rows. Both
 *   are 1 when perfectly balanced; the gradient flows through P.
 * - L_cls = the VAR's token cross-entropy. It reaches router and selector by the straight-through
 *   factors p/stopgrad(p) of teacher.ts (1 in the forward pass).
 *
 * Stage 2 (eq. (22)): L = L_cls + L_f + (1/D)·Σ_m L_b^m; routers and selectors are fixed, every
 * VAR weight of the student trains (experts = the FFN's weights, attention, AdaLN, embeddings, head).
 * L_f = KL(p ‖ p̄) (eq. (21), student p first, as written) of the token distributions over all tokens;
 * L_b^m = MSE of block m's output, student vs teacher, over all tokens (eq. (20)). Co-activation
 * grouping is refused here: its experts are permuted copies, so training them would not change the
 * VAR's FFN weights.
 */
import {
  Tensor, noGrad, reshape, slice, crossEntropy, klDivergence, klDivergenceReverse, mseLoss, softmax, mean,
  sum, mul, add, scale as scaleT, argmax, Rng,
} from '../tensor/index.js';
import { VAR, groundTruthBL } from '../var/var.js';
import { blockForward, type VarBlock } from '../var/basic-var.js';
import type { VQVAE } from '../vqvae/vqvae.js';
import { ActVAR } from './actvar.js';
import { ActVarConfigError, type KvPolicy } from './config.js';
import { ExpertFFN } from './experts.js';
import { topKRows } from './router.js';
import type { BlockRecord, ScaleRecord } from './teacher.js';

export type { KvPolicy };
export type DistillStage = 1 | 2;

/** One batch: per-scale int32 token maps [B, pn²] and the class of every image (as `varBatchLoss`). */
export interface DistillBatch { idxBl: Tensor[]; labels: ArrayLike<number> }

/** Loss weights and pseudo-label settings. */
export interface DistillHyper {
  /** α of eq. (19), weight of L_dis^w + L_dis^t (paper: 0.05). */
  alpha: number;
  /** β of eq. (19), weight of L_bl^w + L_bl^t (paper: 0.01). */
  beta: number;
  /** Temperature τ of the pseudo-label softmax over the standardised distances (default 1). */
  tau: number;
  /** Smoothing ε of the pseudo-labels, Ã = (1−ε)·A + ε/n (default 0.01; 0 makes KL(p‖Ã) infinite). */
  labelEps: number;
  [k: string]: number;
}

export const DEFAULT_DISTILL_HYPER: Readonly<DistillHyper> = Object.freeze({ alpha: 0.05, beta: 0.01, tau: 1, labelEps: 0.01 });

export interface DistillStepResult {
  /** The stage's total loss (backward-able). */
  loss: Tensor;
  /** Named parts (unweighted, summed over blocks): stage 1 L_cls, L_dis_w, L_dis_t, L_bl_w, L_bl_t; stage 2 L_cls, L_f, L_b (mean over blocks); and total. */
  parts: Record<string, number>;
  /** Tokens whose argmax equals the ground truth, of `tokens`. */
  correct: number;
  tokens: number;
}

/** The subset of the VQVAE that distillation needs. */
export type DistillVqvae = Pick<VQVAE, 'idxBlToVarInput'>;

export interface DistillLossOptions {
  /** Label dropout (the VAR's condDropRate) drawn from `rng`, shared by student and teacher. */
  training: boolean;
  rng?: Rng;
  hyper?: Partial<DistillHyper>;
}

// ---------------------------------------------------------------------------------------------
// parameters

const gateKey = (i: number, k: string): string => `actvar.blocks.${i}.${k}`;

/**
 * The parameters a stage trains, by name, marked requiresGrad (ready for an optimiser; `distillLoss`
 * also turns gradients off for everything else). Stage 1: router and selector of every block
 * (`actvar.blocks.{i}.router.weight` …, ActVAR.parameters()'s names). Stage 2: every weight of the
 * student's VAR under its state-dict name (never router/selector). Throws ActVarConfigError for stage
 * 2 with co-activation grouping (see the header).
 */
export function trainableParameters(student: ActVAR, stage: DistillStage): Map<string, Tensor> {
  const m = new Map<string, Tensor>();
  if (stage === 1) {
    student.blocks.forEach((b, i) => {
      m.set(gateKey(i, 'router.weight'), b.router.weight);
      m.set(gateKey(i, 'router.bias'), b.router.bias);
      m.set(gateKey(i, 'selector.weight'), b.selector.weight);
      m.set(gateKey(i, 'selector.bias'), b.selector.bias);
    });
    for (const t of m.values()) t.requiresGrad = true;
    return m;
  }
  if (stage !== 2) throw new ActVarConfigError(`distillation stage must be 1 or 2, got ${String(stage)}`);
  if (student.blocks.some((b) => b.experts.perm)) {
    throw new ActVarConfigError('stage 2 cannot fine-tune an ActVAR with co-activation grouping: its experts are permuted copies of the FFN weights, so training them would not change the VAR (distill with --grouping contiguous, or run stage 1 only)');
  }
  for (const [k, t] of student.model.params) { m.set(k, t); t.requiresGrad = true; }
  return m;
}

/** Gradients on for the stage's parameters only (student), off for everything else and the teacher. */
export function prepareStage(student: ActVAR, teacher: VAR, stage: DistillStage): void {
  const train = new Set(trainableParameters(student, stage).values());
  const all = [...student.model.params.values(), ...student.blocks.flatMap((b) => [b.router.weight, b.router.bias, b.selector.weight, b.selector.bias])];
  for (const t of all) t.requiresGrad = train.has(t);
  if (teacher !== student.model) for (const t of teacher.params.values()) t.requiresGrad = false;
}

/** A deep copy of a VAR (same config, copied weights): the frozen teacher of stage 2. */
export function cloneVar(model: VAR): VAR {
  const params = new Map<string, Tensor>();
  for (const [k, t] of model.params) params.set(k, new Tensor(t.f32.slice(), t.shape));
  return new VAR({ ...model.config }, params);
}

// ---------------------------------------------------------------------------------------------
// pseudo-labels (eq. (5)/(13), (10)/(16))

/**
 * log Ã per row of `scores` (rows × n): A = softmax(top-k(z)/τ) with z the row's scores standardised
 * (mean 0, std 1; all-equal rows give z = 0), zero outside the K largest (ties → lower index), and
 * Ã = (1 − ε)·A + ε/n. Returned as logits (log-probabilities), rows × n.
 */
export function topkTargetLogits(scores: Float32Array, rows: number, n: number, K: number, tau = 1, eps = 0.01): Float32Array {
  if (!(tau > 0)) throw new RangeError(`pseudo-label temperature must be > 0, got ${tau}`);
  if (!(eps >= 0 && eps < 1)) throw new RangeError(`pseudo-label smoothing must be in [0, 1), got ${eps}`);
  const top = topKRows(scores, rows, n, K);
  const out = new Float32Array(rows * n);
  const z = new Float64Array(n), a = new Float64Array(n);
  for (let r = 0; r < rows; r++) {
    const b = r * n;
    let m = 0;
    for (let i = 0; i < n; i++) m += scores[b + i];
    m /= n;
    let v = 0;
    for (let i = 0; i < n; i++) v += (scores[b + i] - m) ** 2;
    const sd = Math.sqrt(v / n);
    for (let i = 0; i < n; i++) z[i] = sd > 0 ? (scores[b + i] - m) / sd : 0;
    a.fill(0);
    let zmax = -Infinity;
    for (let k = 0; k < K; k++) zmax = Math.max(zmax, z[top[r * K + k]] / tau);
    let s = 0;
    for (let k = 0; k < K; k++) { const i = top[r * K + k]; a[i] = Math.exp(z[i] / tau - zmax); s += a[i]; }
    for (let i = 0; i < n; i++) out[b + i] = Math.log((1 - eps) * (a[i] / s) + eps / n);
  }
  return out;
}

/** d^t: per row of the scale, ‖q*_m,i − q_{m−1,i}‖ of its l tokens (B × l), from full-sequence tensors [B, ed, C]. */
export function tokenChange(input: Tensor, denseOut: Tensor, range: [number, number]): Float32Array {
  const [B, ed, C] = input.shape, [bg, en] = range, l = en - bg;
  const X = input.f32, Y = denseOut.f32, d = new Float32Array(B * l);
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < l; i++) {
      const o = (b * ed + bg + i) * C;
      let s = 0;
      for (let c = 0; c < C; c++) { const v = Y[o + c] - X[o + c]; s += v * v; }
      d[b * l + i] = Math.sqrt(s);
    }
  }
  return d;
}

/** d^w: per token of h (n × C), MSE(e_e(h), F(h)) for every expert e (n × N), F the dense FFN and e_e(x) = its expert's output + b₂ (paper eq. (4)). */
export function expertDistances(ffn: ExpertFFN, h: Float32Array, n: number): Float32Array {
  const { norms, dots, totalNorm2 } = ffn.expertStats(h, n);
  const N = ffn.N, C = ffn.C, d = new Float32Array(n * N);
  // F − e_e = S − s_e with S = Σ s (without b₂): ‖S‖² − 2⟨S, s_e⟩ + ‖s_e‖²
  for (let t = 0; t < n; t++) for (let e = 0; e < N; e++) d[t * N + e] = Math.max(0, totalNorm2[t] - 2 * dots[t * N + e] + norms[t * N + e] ** 2) / C;
  return d;
}

/** The teacher's expert split of block i's FFN, with the student's grouping (cached for permuted copies; the teacher is frozen). */
const teacherExpertCache = new WeakMap<VarBlock, ExpertFFN>();
function teacherExperts(student: ActVAR, teacher: VAR, i: number): ExpertFFN {
  const b = teacher.blocks[i], perm = student.blocks[i].experts.perm, N = student.config.experts;
  const cached = teacherExpertCache.get(b);
  if (cached && cached.N === N && sameInts(cached.perm, perm)) return cached;
  const ffn = new ExpertFFN({ fc1Weight: b.fc1W, fc1Bias: b.fc1B, fc2Weight: b.fc2W, fc2Bias: b.fc2B }, N, perm);
  if (perm) teacherExpertCache.set(b, ffn);
  return ffn;
}

function sameInts(a: Int32Array | null, b: Int32Array | null): boolean {
  if (!a || !b) return a === b;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Pseudo-labels of one sparse forward: per block record, per scale: the selector's and the router's distance tables. */
interface BlockLabels { dt: Float32Array[]; dw: Float32Array[] }

function pseudoLabelDistances(student: ActVAR, teacher: VAR, labels: Int32Array, records: BlockRecord[]): BlockLabels[] {
  return noGrad(() => {
    const adas = teacher.blockAdaLNs(teacher.condEmbed(labels));
    return records.map((r) => {
      const ed = r.input.shape[1];
      let bias = teacher.attnBias();
      if (ed < teacher.L) bias = slice(slice(bias, 0, 0, ed), 1, 0, ed);
      const dense = blockForward(teacher.blocks[r.blockIndex], r.input, adas[r.blockIndex], { kind: 'bias', bias });
      const ffn = teacherExperts(student, teacher, r.blockIndex);
      return {
        dt: r.scales.map((s) => tokenChange(r.input, dense, s.range)),
        dw: r.scales.map((s) => expertDistances(ffn, s.h.f32, s.h.shape[0])),
      };
    });
  });
}

// ---------------------------------------------------------------------------------------------
// losses

/**
 * Switch-style load balancing (eq. (7)/(15)/(18)): (n/K)·Σ_j f_j·P_j over the columns of `logits`
 * [rows, n] with P_j the mean of softmax(logits)[:, j] and f_j the fraction of rows whose `chosen`
 * (rows × K ids) contains j. 1 when perfectly balanced.
 */
export function loadBalanceLoss(logits: Tensor, chosen: Int32Array, K: number): Tensor {
  const [rows, n] = logits.shape;
  const f = new Float32Array(n);
  for (let i = 0; i < chosen.length; i++) f[chosen[i]] += 1 / rows;
  const P = mean(softmax(logits, -1), 0); // [n]
  return scaleT(sum(mul(P, new Tensor(f, [n]))), n / K);
}

/** The teacher-forcing input, the labels (with shared label dropout) and the ground-truth tokens of a batch. */
function batchInputs(model: VAR, vae: DistillVqvae, batch: DistillBatch, opts: { training: boolean; rng?: Rng }): { x: Tensor; labels: Int32Array; gt: Tensor; B: number } {
  const { idxBl } = batch;
  const B = idxBl[0].shape[0], L = model.L, nc = model.config.numClasses;
  if (batch.labels.length !== B) throw new RangeError(`distill: ${batch.labels.length} labels for a batch of ${B}`);
  const labels = new Int32Array(B);
  for (let b = 0; b < B; b++) {
    const v = batch.labels[b];
    if (!Number.isInteger(v) || v > nc) throw new RangeError(`class id ${v} is out of range: this model has classes 0..${nc - 1} (and ${nc} = the null class)`);
    labels[b] = v < 0 ? nc : v;
  }
  if (opts.training && model.config.condDropRate > 0) {
    if (!opts.rng) throw new Error('distill: training with label dropout needs an rng');
    for (let b = 0; b < B; b++) if (opts.rng.uniform() < model.config.condDropRate) labels[b] = nc;
  }
  const x = noGrad(() => vae.idxBlToVarInput(idxBl));
  const gt = groundTruthBL(idxBl);
  return { x, labels, gt: new Tensor(gt, [B * L]), B };
}

function countCorrect(flatLogits: Tensor, gt: Tensor): number {
  const pred = noGrad(() => argmax(flatLogits, -1)).i32, g = gt.i32;
  let c = 0;
  for (let i = 0; i < g.length; i++) if (pred[i] === g[i]) c++;
  return c;
}

/** One scale's stage-1 gate losses: [L_dis^w, L_dis^t, L_bl^w, L_bl^t]. */
function gateLosses(s: ScaleRecord, dt: Float32Array, dw: Float32Array, N: number, h: DistillHyper): Tensor[] {
  const B = dt.length / s.l, n = s.h.shape[0];
  const negDw = dw.map((v) => -v);
  const tw = new Tensor(topkTargetLogits(negDw, n, N, s.Kw, h.tau, h.labelEps), [n, N]);
  const tt = new Tensor(topkTargetLogits(dt, B, s.l, s.K, h.tau, h.labelEps), [B, s.l]);
  const selected = new Int32Array(s.selected.length);
  selected.set(s.selected);
  return [
    klDivergenceReverse(s.routerLogits!, tw),
    klDivergenceReverse(s.selectorLogits!, tt),
    loadBalanceLoss(s.routerLogits!, s.route, s.Kw),
    loadBalanceLoss(s.selectorLogits!, selected, s.K),
  ];
}

/**
 * The losses of one batch for `stage` (see the header): builds the teacher-forcing input with
 * vae.idxBlToVarInput, runs the dense teacher (no grad) and the sparse student, and returns the
 * stage's total loss (call .backward()) with its named parts. Sets requiresGrad on exactly the
 * stage's `trainableParameters` (and off on the teacher).
 */
export function distillLoss(stage: DistillStage, student: ActVAR, teacher: VAR, vae: DistillVqvae, batch: DistillBatch, opts: DistillLossOptions): DistillStepResult {
  const h = { ...DEFAULT_DISTILL_HYPER, ...opts.hyper } as DistillHyper;
  if (stage === 2 && teacher === student.model) throw new ActVarConfigError('stage 2 fine-tunes the student\'s VAR: the teacher must be a separate frozen copy (cloneVar)');
  prepareStage(student, teacher, stage);
  const V = student.model.config.vocabSize;
  const { x, labels, gt, B } = batchInputs(student.model, vae, batch, opts);
  const L = student.model.L, tokens = B * L;
  if (stage === 1) {
    const records: BlockRecord[] = [];
    const logits = reshape(student.forward(labels, x, { straightThrough: true, record: (r) => records.push(r) }), [tokens, V]);
    const lcls = crossEntropy(logits, gt);
    const dists = pseudoLabelDistances(student, teacher, labels, records);
    const N = student.config.experts;
    const acc = [0, 0, 0, 0];
    let gates: Tensor | null = null;
    records.forEach((r, m) => {
      const per = r.scales.map((s, j) => gateLosses(s, dists[m].dt[j], dists[m].dw[j], N, h));
      const k = 1 / per.length;
      const term = (i: number): Tensor => per.map((p) => p[i]).reduce((a, b) => add(a, b));
      const parts = [0, 1, 2, 3].map((i) => scaleT(term(i), k));
      parts.forEach((p, i) => { acc[i] += p.f32[0]; });
      const blockLoss = add(scaleT(add(parts[0], parts[1]), h.alpha), scaleT(add(parts[2], parts[3]), h.beta));
      gates = gates ? add(gates, blockLoss) : blockLoss;
    });
    const loss = gates ? add(lcls, gates) : lcls;
    return {
      loss,
      parts: { L_cls: lcls.f32[0], L_dis_w: acc[0], L_dis_t: acc[1], L_bl_w: acc[2], L_bl_t: acc[3], total: loss.f32[0] },
      correct: countCorrect(logits, gt), tokens,
    };
  }
  // stage 2
  const tOut: Tensor[] = [];
  const tLogits = noGrad(() => reshape(teacher.forward(labels, x, { afterBlock: (_c, out) => { tOut.push(out); } }), [tokens, V]));
  const sOut: Tensor[] = [];
  const logits = reshape(student.forward(labels, x, { afterBlock: (_c, out) => { sOut.push(out); } }), [tokens, V]);
  const lcls = crossEntropy(logits, gt);
  const lf = klDivergenceReverse(logits, tLogits);
  let lb = mseLoss(sOut[0], tOut[0]);
  for (let m = 1; m < sOut.length; m++) lb = add(lb, mseLoss(sOut[m], tOut[m]));
  lb = scaleT(lb, 1 / sOut.length);
  const loss = add(add(lcls, lf), lb);
  return {
    loss,
    parts: { L_cls: lcls.f32[0], L_f: lf.f32[0], L_b: lb.f32[0], total: loss.f32[0] },
    correct: countCorrect(logits, gt), tokens,
  };
}

// ---------------------------------------------------------------------------------------------
// validation

export interface DistillValidation {
  /** Mean per-token KL(dense ‖ ActVAR) of the token distributions, over the tokens of every scale from the first activated one on (the only ones that can differ in stage 1). */
  klToDense: number;
  /** Fraction of all tokens (every scale) whose ActVAR argmax is the ground-truth token. */
  tokenAccuracy: number;
  /** Mean over blocks, activated scales and rows of |selector's top-K_t ∩ pseudo-label top-K_t| / K_t. */
  selectorAgreement: number;
  /** Mean over blocks, activated scales and kept tokens of |router's top-K_w ∩ pseudo-label top-K_w| / K_w. */
  routerAgreement: number;
  /** Tokens counted in tokenAccuracy. */
  tokens: number;
  /** Tokens counted in klToDense. */
  klTokens: number;
  /** The dense teacher's token accuracy on the same tokens (for reference). */
  denseTokenAccuracy: number;
}

/** |a ∩ b| of two K-long id lists. */
function overlap(a: Int32Array, ao: number, b: Int32Array, bo: number, K: number): number {
  let c = 0;
  for (let i = 0; i < K; i++) for (let j = 0; j < K; j++) if (a[ao + i] === b[bo + j]) { c++; break; }
  return c;
}

/**
 * Held-out numbers, teacher-forced, no label dropout: KL(dense ‖ ActVAR) per token at the scales
 * from the first activated one on, token accuracy, and the agreement of the selector's and router's
 * hard top-k with the pseudo-labels' top-k (computed as in stage 1: teacher weights on the student's
 * hidden states). `maxBatches` stops early.
 */
export function validateDistill(student: ActVAR, teacher: VAR, vae: DistillVqvae, batches: Iterable<DistillBatch>, opts: { maxBatches?: number } = {}): DistillValidation {
  const V = student.model.config.vocabSize, L = student.model.L;
  const first = Math.min(...student.config.scales);
  const bg = student.model.beginEnds[first][0];
  let klSum = 0, klTokens = 0, correct = 0, denseCorrect = 0, tokens = 0;
  let selSum = 0, selN = 0, rtSum = 0, rtN = 0, nb = 0;
  noGrad(() => {
    for (const batch of batches) {
      if (opts.maxBatches !== undefined && nb >= opts.maxBatches) break;
      nb++;
      const { x, labels, gt, B } = batchInputs(student.model, vae, batch, { training: false });
      const records: BlockRecord[] = [];
      const tl = teacher.forward(labels, x);
      const sl = student.forward(labels, x, { record: (r) => records.push(r) });
      const n = B * (L - bg);
      const kl = klDivergence(reshape(slice(sl, 1, bg, L), [n, V]), reshape(slice(tl, 1, bg, L), [n, V]));
      klSum += kl.f32[0] * n; klTokens += n;
      correct += countCorrect(reshape(sl, [B * L, V]), gt);
      denseCorrect += countCorrect(reshape(tl, [B * L, V]), gt);
      tokens += B * L;
      const dists = pseudoLabelDistances(student, teacher, labels, records);
      records.forEach((r, m) => r.scales.forEach((s, j) => {
        const pt = topKRows(dists[m].dt[j], B, s.l, s.K);
        for (let b = 0; b < B; b++) { selSum += overlap(s.selected, b * s.K, pt, b * s.K, s.K) / s.K; selN++; }
        const nt = s.h.shape[0], N = student.config.experts;
        const pw = topKRows(dists[m].dw[j].map((v) => -v), nt, N, s.Kw);
        for (let t = 0; t < nt; t++) { rtSum += overlap(s.route, t * s.Kw, pw, t * s.Kw, s.Kw) / s.Kw; rtN++; }
      }));
    }
  });
  if (tokens === 0) throw new RangeError('validateDistill: no batches');
  return {
    klToDense: klSum / klTokens, tokenAccuracy: correct / tokens,
    selectorAgreement: selN ? selSum / selN : NaN, routerAgreement: rtN ? rtSum / rtN : NaN,
    tokens, klTokens, denseTokenAccuracy: denseCorrect / tokens,
  };
}
