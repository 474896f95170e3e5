/**
 * Central finite-difference gradient check, in float64 arithmetic on the loss side:
 * loss = Σ f(inputs) · w with fixed random weights w, compared against autodiff.
 */
import assert from 'node:assert/strict';
import { Tensor, noGrad } from '../../src/tensor/index.js';
import { Rng } from '../../src/tensor/rng.js';

export function randTensor(rng: Rng, shape: number[], requiresGrad = true, scale = 1): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const d = new Float32Array(n);
  for (let i = 0; i < n; i++) d[i] = rng.normal() * scale;
  return new Tensor(d, shape, requiresGrad);
}

/**
 * Checks d(Σ w·f(x))/dx for every input that requires grad. `eps` is the step in float32;
 * tolerance is relative to the gradient's scale. Checks at most `maxChecks` coordinates per input.
 */
export function gradcheck(f: (...xs: Tensor[]) => Tensor, inputs: Tensor[], opts: { eps?: number; tol?: number; seed?: number; maxChecks?: number } = {}): void {
  const eps = opts.eps ?? 1e-2, tol = opts.tol ?? 2e-2, maxChecks = opts.maxChecks ?? 40;
  const rng = new Rng(opts.seed ?? 123);
  const out0 = noGrad(() => f(...inputs));
  const w = new Float32Array(out0.size);
  for (let i = 0; i < w.length; i++) w[i] = rng.normal();
  const lossOf = (): number => {
    const o = noGrad(() => f(...inputs)).f32;
    let s = 0;
    for (let i = 0; i < o.length; i++) s += o[i] * w[i];
    return s;
  };
  for (const x of inputs) x.grad = null;
  const out = f(...inputs);
  out.backward(w.slice());
  for (const [k, x] of inputs.entries()) {
    if (!x.requiresGrad) continue;
    assert.ok(x.grad, `input ${k} got no gradient`);
    const g = x.grad.f32, d = x.f32;
    let gscale = 1e-3;
    for (let i = 0; i < g.length; i++) gscale = Math.max(gscale, Math.abs(g[i]));
    const idx = g.length <= maxChecks ? [...g.keys()] : Array.from({ length: maxChecks }, () => Math.floor(rng.uniform() * g.length));
    for (const i of idx) {
      const orig = d[i];
      d[i] = orig + eps; const lp = lossOf();
      d[i] = orig - eps; const lm = lossOf();
      d[i] = orig;
      const num = (lp - lm) / (2 * eps);
      const err = Math.abs(num - g[i]) / gscale;
      assert.ok(err < tol, `input ${k} [${x.shape}] coord ${i}: autodiff ${g[i]} vs numeric ${num} (rel err ${err.toExponential(2)})`);
    }
  }
}
