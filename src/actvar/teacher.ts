/**
 * ActVAR in the teacher-forced forward (training, validation): the sparse blocks of actvar.ts run on
 * the whole token pyramid at once, differentiably, and compute exactly what KV-cache inference
 * computes (test/distill.test.ts checks the logits of every scale against inference, both KV policies,
 * CFG off and on).
 *
 * For one block, with the block input x [B, ed, C] (ed tokens of the pyramid):
 *
 *   1. select  — at every activated scale s, `ActVAR.selectTokens` (the same member inference calls)
 *                picks K_s = round(rate·l_s) positions per row from the scale's tokens.
 *   2. gather  — K_s is the same for every row, so each row's computed tokens — all tokens of the
 *                dense scales plus the kept tokens of every activated scale, in pyramid order — form a
 *                compact sequence of one fixed length Lc (`gatherRows` on the flattened [B·ed, C]).
 *                The scale of every compact position is the same for all rows, so ONE block-causal
 *                mask over the compact positions serves the batch (no per-sample mask).
 *   3. attend  — kvPolicy 'kept': attention over the compact sequence with that mask; this is what the
 *                KV cache holds in inference (dense scales' tokens, kept tokens of activated scales).
 *                kvPolicy 'all': keys/values of all ed tokens, queries of the compact tokens only,
 *                mask [Lc, ed] by scale (inference appends every token's K/V).
 *   4. FFN     — dense FFN for the dense scales' tokens; at an activated scale the expert FFN with the
 *                top-K_w experts from `ActVAR.routeTokens` (b₂ once, experts.ts).
 *   5. scatter — `scatterRows` writes the compact tokens back; unselected tokens keep their input
 *                (paper eq. (9)).
 *
 * Straight-through gradient path (option `straightThrough`, used by distillation stage 1): a kept
 * token's update is scaled by p_t/stopgrad(p_t) and every chosen expert's output by
 * p_w/stopgrad(p_w) (`expertFFNWeighted`). Both factors are exactly 1 in the forward pass (x/x = 1 in
 * IEEE arithmetic), so the output is unchanged, while the token loss gets the gradient
 * ∂L/∂log p of the selections made — the score-function form of a hard top-k's straight-through
 * estimator. p_t is the selector's distribution over the row's tokens (softmax of its gate logits
 * over the l tokens of the scale, as paper eq. (11) compares it), p_w the router's softmax.
 *
 * Drop-path is not applied in the sparse blocks (the shipped models train without it).
 */
import {
  Tensor, reshape, slice, concat, add, sub, mul, div, softmax, layerNorm, gatherRows, scatterRows,
  intTensor, zeros, expertFFNWeighted,
} from '../tensor/index.js';
import {
  attentionQKV, attend, attnProj, ffn, adaLNModulate, gatedResidual,
} from '../var/basic-var.js';
import type { BlockContext } from '../var/var.js';
import { tokensToKeep, expertsToKeep } from './config.js';
import type { ActVAR } from './actvar.js';

/** What the sparse teacher-forced forward did at one activated scale of one block (for the losses). */
export interface ScaleRecord {
  scaleIndex: number;
  /** Token range [begin, end) of the scale in the pyramid. */
  range: [number, number];
  /** Tokens per row l, kept per row K. */
  l: number;
  K: number;
  /** B × K kept positions (within the scale, ascending per row). */
  selected: Int32Array;
  /** Selector gate logits [B, l] (differentiable in the selector's weights; null when not requested). */
  selectorLogits: Tensor | null;
  /** FFN input of the kept tokens [B·K, C] (detached), in the order of `selected`. */
  h: Tensor;
  /** Router logits of the kept tokens [B·K, N] (differentiable in the router's weights; null when not requested). */
  routerLogits: Tensor | null;
  Kw: number;
  /** (B·K) × K_w expert ids. */
  route: Int32Array;
}

/** One block of the sparse teacher-forced forward. */
export interface BlockRecord {
  blockIndex: number;
  /** The block input [B, ed, C] (detached). */
  input: Tensor;
  scales: ScaleRecord[];
}

export interface TeacherForwardOptions {
  /** Scale kept tokens' updates and chosen experts' outputs by p/stopgrad(p) (see the header). */
  straightThrough?: boolean;
  /** Differentiable selector/router logits in the records (implied by straightThrough). */
  gateLogits?: boolean;
  /** Receives one record per block that has an activated scale. */
  record?: (r: BlockRecord) => void;
}

/** The activated scales that lie wholly inside the first `ed` tokens. */
export function activeScales(a: ActVAR, ed: number): number[] {
  const be = a.model.beginEnds;
  return a.config.scales.filter((si) => be[si][1] <= ed);
}

/** Copy rows [bg, ed) of every sample of x [B, L, C] into a fresh [B, ed−bg, C] tensor (no grad). */
function sliceTokens(x: Tensor, bg: number, ed: number): Tensor {
  const [B, L, C] = x.shape, n = ed - bg, X = x.f32, out = new Float32Array(B * n * C);
  for (let b = 0; b < B; b++) out.set(X.subarray((b * L + bg) * C, (b * L + ed) * C), b * n * C);
  return new Tensor(out, [B, n, C]);
}

/** Block-causal bias between query scales `lq` and key scales `lk`: 0 where lk ≤ lq, −∞ elsewhere. */
function scaleBias(lq: Int32Array, lk: Int32Array): Tensor {
  const out = new Float32Array(lq.length * lk.length);
  for (let i = 0; i < lq.length; i++) for (let j = 0; j < lk.length; j++) out[i * lk.length + j] = lk[j] <= lq[i] ? 0 : -Infinity;
  return new Tensor(out, [lq.length, lk.length]);
}

/** Entries idx[r·k + j] of every row r of p [R, n] → [R·k, 1] (differentiable). */
function pickPerRow(p: Tensor, idx: Int32Array, k: number): Tensor {
  const [R, n] = p.shape, flat = new Int32Array(R * k);
  for (let r = 0; r < R; r++) for (let j = 0; j < k; j++) flat[r * k + j] = r * n + idx[r * k + j];
  return gatherRows(reshape(p, [R * n, 1]), intTensor(flat));
}

/** p/stopgrad(p): 1 in the forward pass, ∂log p in the backward. */
function straightThroughOne(p: Tensor): Tensor { return div(p, p.detach()); }

/** The sparse block of the teacher-forced forward (see the header). undefined when no activated scale is inside the forward's tokens. */
export function sparseTeacherBlock(a: ActVAR, ctx: BlockContext, opts: TeacherForwardOptions = {}): Tensor | undefined {
  const { block, x, ada, blockIndex } = ctx;
  const [B, ed, C] = x.shape;
  const acts = activeScales(a, ed);
  if (acts.length === 0) return undefined;
  const st = a.blocks[blockIndex];
  const be = a.model.beginEnds, lvl = a.model.lvl;
  const ST = !!opts.straightThrough, wantLogits = ST || !!opts.gateLogits;
  const Kw = expertsToKeep(a.config.expertRate, a.config.experts);

  // 1. select (the same member as inference), per activated scale
  const sel = new Map<number, { K: number; index: Int32Array; logits: Tensor | null }>();
  for (const si of acts) {
    const [bg, en] = be[si], l = en - bg;
    const K = tokensToKeep(a.config.tokenRates[a.config.scales.indexOf(si)], l);
    const xs = sliceTokens(x, bg, en);
    const index = a.selectTokens(blockIndex, si, xs, K);
    const logits = wantLogits ? reshape(st.selector.logits(layerNorm(slice(x, 1, bg, en), block.eps)), [B, l]) : null;
    sel.set(si, { K, index, logits });
  }

  // 2. the compact sequence: positions (pyramid order) and their scales, the same for every row
  let Lc = 0;
  for (let si = 0; si < be.length && be[si][1] <= ed; si++) Lc += sel.get(si)?.K ?? be[si][1] - be[si][0];
  const flat = new Int32Array(B * Lc), cLvl = new Int32Array(Lc);
  {
    let c = 0;
    for (let si = 0; si < be.length && be[si][1] <= ed; si++) {
      const [bg, en] = be[si];
      const s = sel.get(si);
      if (!s) {
        for (let t = bg; t < en; t++, c++) { cLvl[c] = si; for (let b = 0; b < B; b++) flat[b * Lc + c] = b * ed + t; }
      } else {
        for (let k = 0; k < s.K; k++, c++) { cLvl[c] = si; for (let b = 0; b < B; b++) flat[b * Lc + c] = b * ed + bg + s.index[b * s.K + k]; }
      }
    }
  }
  const flatIdx = intTensor(flat);
  const x2d = reshape(x, [B * ed, C]);
  const xc = reshape(gatherRows(x2d, flatIdx), [B, Lc, C]);

  // 3. attention
  let x1: Tensor;
  if (a.config.kvPolicy === 'kept') {
    const xn = adaLNModulate(xc, ada.scale1, ada.shift1, block.eps);
    const { q, k, v } = attentionQKV(block, xn);
    x1 = gatedResidual(xc, attnProj(block, attend(block, q, k, v, scaleBias(cLvl, cLvl))), ada.gamma1);
  } else {
    const xn = adaLNModulate(x, ada.scale1, ada.shift1, block.eps);
    const { q, k, v } = attentionQKV(block, xn); // [B, H, ed, hd]
    const H = block.heads, hd = block.headDim;
    const qi = new Int32Array(B * H * Lc);
    for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) for (let c = 0; c < Lc; c++) qi[(b * H + h) * Lc + c] = (b * H + h) * ed + (flat[b * Lc + c] - b * ed);
    const qc = reshape(gatherRows(reshape(q, [B * H * ed, hd]), intTensor(qi)), [B, H, Lc, hd]);
    x1 = gatedResidual(xc, attnProj(block, attend(block, qc, k, v, scaleBias(cLvl, lvl.subarray(0, ed)))), ada.gamma1);
  }

  // 4. FFN: dense rows through the dense FFN, each activated scale's rows through the chosen experts
  const h2d = reshape(adaLNModulate(x1, ada.scale2, ada.shift2, block.eps), [B * Lc, C]);
  const denseRows: number[] = [];
  const scaleRows = new Map<number, Int32Array>();
  {
    const starts = new Map<number, number>();
    for (let c = 0; c < Lc; c++) if (!sel.has(cLvl[c])) denseRows.push(c); else if (!starts.has(cLvl[c])) starts.set(cLvl[c], c);
    for (const si of acts) {
      const K = sel.get(si)!.K, c0 = starts.get(si)!, rows = new Int32Array(B * K);
      for (let b = 0; b < B; b++) for (let k = 0; k < K; k++) rows[b * K + k] = b * Lc + c0 + k;
      scaleRows.set(si, rows);
    }
  }
  let f: Tensor = zeros([B * Lc, C]);
  if (denseRows.length) {
    const dr = new Int32Array(B * denseRows.length);
    for (let b = 0; b < B; b++) for (let j = 0; j < denseRows.length; j++) dr[b * denseRows.length + j] = b * Lc + denseRows[j];
    const di = intTensor(dr);
    f = scatterRows(f, di, ffn(block, gatherRows(h2d, di)), 'set');
  }
  const records: ScaleRecord[] = [];
  for (const si of acts) {
    const s = sel.get(si)!, ri = intTensor(scaleRows.get(si)!);
    const hs = gatherRows(h2d, ri); // [B·K, C]
    const hDet = hs.detach();
    const route = a.routeTokens(blockIndex, si, hDet, Kw);
    const rLogits = wantLogits ? st.router.logits(hs) : null;
    const ex = st.experts;
    let y: Tensor;
    if (ST) {
      const gate = reshape(straightThroughOne(pickPerRow(softmax(rLogits!, -1), route, Kw)), [B * s.K, Kw]);
      y = expertFFNWeighted(hs, ex.w1, ex.b1, ex.w2, ex.b2, route, Kw, ex.N, gate);
    } else {
      y = ex.forward(hs, route, Kw);
    }
    f = scatterRows(f, ri, y, 'set');
    const [bg, en] = be[si];
    records.push({
      scaleIndex: si, range: [bg, en], l: en - bg, K: s.K, selected: s.index, selectorLogits: s.logits,
      h: hDet, routerLogits: rLogits, Kw, route,
    });
  }
  let x2 = gatedResidual(x1, reshape(f, [B, Lc, C]), ada.gamma2);

  // straight-through factor of the selector on the kept tokens' updates
  if (ST) {
    const pieces: Tensor[] = [];
    let run = 0;
    const flush = (): void => { if (run) { pieces.push(new Tensor(new Float32Array(B * run).fill(1), [B, run, 1])); run = 0; } };
    for (let si = 0; si < be.length && be[si][1] <= ed; si++) {
      const s = sel.get(si);
      if (!s) { run += be[si][1] - be[si][0]; continue; }
      flush();
      pieces.push(reshape(straightThroughOne(pickPerRow(softmax(s.logits!, -1), s.index, s.K)), [B, s.K, 1]));
    }
    flush();
    const ratio = pieces.length === 1 ? pieces[0] : concat(pieces, 1);
    x2 = add(xc, mul(sub(x2, xc), ratio));
  }

  // 5. scatter back; unselected tokens keep their input
  const out = reshape(scatterRows(x2d, flatIdx, reshape(x2, [B * Lc, C]), 'set'), [B, ed, C]);
  opts.record?.({ blockIndex, input: x.detach(), scales: records });
  return out;
}
