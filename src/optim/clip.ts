/**
 * Gradient-norm clipping, as torch.nn.utils.clip_grad_norm_ (VAR clips at tclip=2.0, docs/VAR.md §7):
 * total = ‖(‖g₁‖, ‖g₂‖, …)‖ over all gradients (2-norm, or the max-abs for Infinity);
 * if maxNorm / (total + 1e-6) < 1, every gradient is multiplied by that factor.
 * Returns the total norm before clipping. Sums run in float64. Parameters without grad are skipped.
 */
import type { Tensor } from '../tensor/tensor.js';

export function clipGradNorm(params: Iterable<Tensor>, maxNorm: number, normType: 2 | typeof Infinity = 2): number {
  if (!(maxNorm >= 0)) throw new RangeError(`clipGradNorm: maxNorm must be ≥ 0, got ${maxNorm}`);
  if (normType !== 2 && normType !== Infinity) throw new RangeError(`clipGradNorm: normType must be 2 or Infinity, got ${normType}`);
  const grads: Float32Array[] = [];
  for (const p of params) if (p.grad) grads.push(p.grad.f32);
  if (grads.length === 0) return 0;
  let total = 0;
  if (normType === Infinity) {
    for (const g of grads) for (let i = 0; i < g.length; i++) { const a = Math.abs(g[i]); if (a > total || a !== a) total = a; }
  } else {
    let sq = 0;
    for (const g of grads) for (let i = 0; i < g.length; i++) sq += g[i] * g[i];
    total = Math.sqrt(sq);
  }
  const coef = maxNorm / (total + 1e-6);
  if (coef < 1) {
    for (const g of grads) for (let i = 0; i < g.length; i++) g[i] *= coef;
  }
  return total;
}
