/**
 * Inception Score (Salimans et al. 2016, "Improved techniques for training GANs", §4):
 *   IS = exp(E_x KL(p(y|x) ‖ p(y))),  p(y) = the mean of p(y|x) over the set,
 * evaluated on `splits` consecutive parts of the set, reported as the mean and the population
 * standard deviation (ddof 0) over the parts.
 *
 * Conventions (the ones of Salimans et al.'s reference code and of the fixture in
 * ../shared/fixtures/metrics): parts as `np.array_split` makes them (consecutive rows, the first
 * N mod splits parts one row longer), default 10 parts, p(y|x) = softmax of the logits, computed in
 * float64 through log-softmax. The OpenAI evaluator (guided-diffusion's evaluator.py, used by VAR's
 * authors) cuts fixed parts of 5,000 rows and reports their mean; at its 50,000 samples that is the
 * same as 10 splits here.
 */

export interface InceptionScore {
  mean: number;
  std: number;
  /** The score of every part. */
  perSplit: number[];
}

export function inceptionScore(logits: Float32Array | Float64Array, numClasses: number, splits = 10): InceptionScore {
  const C = numClasses;
  if (C < 1 || logits.length % C !== 0) throw new RangeError(`inceptionScore: ${logits.length} logits are not rows of ${C} classes`);
  const N = logits.length / C;
  if (!Number.isInteger(splits) || splits < 1 || splits > N) throw new RangeError(`inceptionScore: splits must be an integer in 1..${N} (the number of rows), got ${splits}`);
  // log p(y|x), row by row (log-softmax with the max subtracted)
  const logp = new Float64Array(N * C);
  for (let i = 0; i < N; i++) {
    const o = i * C;
    let m = -Infinity;
    for (let c = 0; c < C; c++) m = Math.max(m, logits[o + c]);
    let s = 0;
    for (let c = 0; c < C; c++) s += Math.exp(logits[o + c] - m);
    const lse = m + Math.log(s);
    for (let c = 0; c < C; c++) logp[o + c] = logits[o + c] - lse;
  }
  const perSplit: number[] = [];
  const base = Math.floor(N / splits), extra = N % splits;
  let start = 0;
  const py = new Float64Array(C);
  for (let s = 0; s < splits; s++) {
    const len = base + (s < extra ? 1 : 0), end = start + len;
    py.fill(0);
    for (let i = start; i < end; i++) for (let c = 0; c < C; c++) py[c] += Math.exp(logp[i * C + c]);
    for (let c = 0; c < C; c++) py[c] /= len;
    let kl = 0;
    for (let i = start; i < end; i++) {
      for (let c = 0; c < C; c++) {
        const lp = logp[i * C + c], p = Math.exp(lp);
        if (p > 0) kl += p * (lp - Math.log(py[c]));
      }
    }
    perSplit.push(Math.exp(kl / len));
    start = end;
  }
  const mean = perSplit.reduce((a, b) => a + b, 0) / splits;
  const std = Math.sqrt(perSplit.reduce((a, b) => a + (b - mean) * (b - mean), 0) / splits);
  return { mean, std, perSplit };
}
