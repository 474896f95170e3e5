/**
 * Statistics of the reproduction report: mean ± sample standard deviation over seeds, and the verdict
 * of a paired comparison.
 *
 * A claim is tested on per-seed paired differences d_s oriented so that d_s > 0 means "as the paper
 * claims". With n ≥ 2 seeds the 95 % t-interval of the mean difference, mean ± t(0.975, n−1)·sd/√n,
 * decides: entirely above 0 → holds, entirely below 0 → does not hold at this scale, otherwise
 * inconclusive (the difference is inside the seed spread). With one seed there is no spread: the
 * verdict is inconclusive and says which way the single difference points. A difference that does not
 * vary between seeds (an exact FLOPs count) decides by its sign.
 */

export interface Agg { mean: number; std: number; n: number; values: number[] }

export function aggregate(values: number[]): Agg {
  const v = values.filter((x) => Number.isFinite(x));
  const n = v.length;
  const mean = n ? v.reduce((a, b) => a + b, 0) / n : NaN;
  const std = n > 1 ? Math.sqrt(v.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1)) : NaN;
  return { mean, std, n, values: v };
}

/** Two-sided 95 % Student t quantiles t(0.975, df), df = 1..30 (standard tables). */
const T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.16, 2.145, 2.131,
  2.12, 2.11, 2.101, 2.093, 2.086, 2.08, 2.074, 2.069, 2.064, 2.06, 2.056, 2.052, 2.048, 2.045, 2.042];
export function t975(df: number): number { return df < 1 ? NaN : df <= 30 ? T975[df - 1] : 1.96; }

export type VerdictKind = 'holds' | 'does not hold at this scale' | 'inconclusive' | 'not measured';

export interface Verdict {
  kind: VerdictKind;
  /** Mean paired difference (positive = as claimed) and its 95 % half-width (NaN with one seed). */
  mean: number;
  half: number;
  n: number;
  /** The sentence after the verdict word. */
  why: string;
}

/**
 * `exact`: the quantity has no sampling noise (an exact FLOPs count with fixed K_t, K_w): the verdict
 * follows the sign of the differences, from one seed on.
 */
export function verdictOf(d: number[], fmt: (v: number) => string = (v) => v.toPrecision(3), opts: { exact?: boolean } = {}): Verdict {
  const a = aggregate(d);
  if (a.n === 0) return { kind: 'not measured', mean: NaN, half: NaN, n: 0, why: 'no paired runs' };
  if (opts.exact) {
    const why = `exact count, no sampling noise: ${a.n > 1 && a.std > 0 ? `${fmt(Math.min(...a.values))} … ${fmt(Math.max(...a.values))}` : fmt(a.mean)}`;
    const kind: VerdictKind = a.values.every((v) => v > 0) ? 'holds' : a.values.every((v) => v < 0) ? 'does not hold at this scale' : 'inconclusive';
    return { kind, mean: a.mean, half: 0, n: a.n, why };
  }
  if (a.n === 1) {
    return { kind: 'inconclusive', mean: a.mean, half: NaN, n: 1, why: `one seed, no spread measured; the difference (${fmt(a.mean)}) points ${a.mean > 0 ? 'the claimed way' : a.mean < 0 ? 'against the claim' : 'nowhere'}` };
  }
  const half = a.std === 0 ? 0 : t975(a.n - 1) * a.std / Math.sqrt(a.n);
  const lo = a.mean - half, hi = a.mean + half;
  const ci = `difference ${fmt(a.mean)} ± ${fmt(half)} (95 % t-interval over ${a.n} seeds)`;
  if (lo > 0) return { kind: 'holds', mean: a.mean, half, n: a.n, why: ci };
  if (hi < 0) return { kind: 'does not hold at this scale', mean: a.mean, half, n: a.n, why: ci };
  return { kind: 'inconclusive', mean: a.mean, half, n: a.n, why: `${ci}: inside the seed spread` };
}

/** Spearman rank correlation (average ranks for ties). */
export function spearman(x: number[], y: number[]): number {
  const rank = (v: number[]): number[] => {
    const idx = v.map((x, i) => [x, i] as const).sort((a, b) => a[0] - b[0]);
    const r = new Array<number>(v.length);
    for (let i = 0; i < idx.length;) {
      let j = i;
      while (j + 1 < idx.length && idx[j + 1][0] === idx[i][0]) j++;
      for (let k = i; k <= j; k++) r[idx[k][1]] = (i + j) / 2;
      i = j + 1;
    }
    return r;
  };
  const rx = rank(x), ry = rank(y), n = x.length;
  const mx = rx.reduce((a, b) => a + b, 0) / n, my = ry.reduce((a, b) => a + b, 0) / n;
  let sxy = 0, sxx = 0, syy = 0;
  for (let i = 0; i < n; i++) { sxy += (rx[i] - mx) * (ry[i] - my); sxx += (rx[i] - mx) ** 2; syy += (ry[i] - my) ** 2; }
  return sxx && syy ? sxy / Math.sqrt(sxx * syy) : NaN;
}

/** "1.234 ± 0.056" (± only with ≥ 2 values). */
export function pm(a: Agg, digits: number, scale = 1): string {
  if (!a.n) return '–';
  const m = (a.mean * scale).toFixed(digits);
  return a.n > 1 ? `${m} ± ${(a.std * scale).toFixed(digits)}` : m;
}
