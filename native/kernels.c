/*
 * actvar's native elementwise kernels: the non-GEMM work of a training step and of VAR inference
 * (GELU, softmax rows, LayerNorm, AdamW, column sums, accumulation) in C, so that the compiler vectorises it (AVX2 /
 * AVX-512 clones, see KERNEL in kernel.h). Built at install time by scripts/build-native.mjs and called through
 * koffi (src/backend/native.ts) on the caller's Float32Arrays, without copies. Optional: every kernel
 * has a TypeScript twin in src/tensor/ops, used when this library is not built or ACTVAR_NATIVE=0.
 *
 * Contract with the TypeScript side: same formulas, results within float32 rounding (the tests in
 * test/native-kernels.test.ts compare both on the same inputs). AdamW is bit-identical: it uses the
 * same float64 arithmetic in the same order (built with -ffp-contract=off, so no fused multiply-adds).
 * Loops that reduce carry `omp simd reduction` (compiled with -fopenmp-simd: vector pragmas only,
 * no OpenMP runtime), which allows the reassociation a vector sum needs.
 */
#include <math.h>
#include <string.h>

#include "kernel.h"

/* e^x in float32 for x in [-87.3, 88.7] (callers clamp): x = k·ln2 + r, |r| ≤ ln2/2, ln2 split in two
 * parts (Cody–Waite), e^r by its Taylor polynomial to degree 7 (truncation < 6e-9 relative), 2^k built
 * in the exponent bits. Written without branches or calls, so loops around it vectorise. */
static inline float exp_f32(float x) {
  const float k = floorf(x * 1.44269504088896341f + 0.5f);
  const float r = (x - k * 0.693145751953125f) - k * 1.42860682030941723212e-6f;
  const float p = 1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 + r * (1.0f / 720 + r * (1.0f / 5040)))))));
  const int32_t bits = ((int32_t)k + 127) << 23;
  float scale;
  memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

/* e^x for x ≤ 0 (a max-subtracted softmax): exactly 0 below −87.3 (and for −∞), where float32
 * leaves its normal range. */
static inline float exp_nonpositive(float x) {
  const float e = exp_f32(x < -87.3f ? -87.3f : x);
  return x < -87.3f ? 0.0f : e;
}

/* e^x in float64 for x in [−708, 709] (callers clamp): x = k·ln2 + r, |r| ≤ ln2/2 (ln2 in two parts),
 * e^r by its Taylor polynomial to degree 11 (truncation < 1.3e-14 relative; Horner with fused
 * multiply-adds; a libm call in the baseline clone, which has no FMA), 2^k in the exponent bits. */
static inline double exp_f64(double x) {
  const double k = floor(x * 1.4426950408889634 + 0.5);
  const double r = (x - k * 0.6931471803691238) - k * 1.9082149292705877e-10;
  double p = 1.0 / 39916800;
  p = fma(r, p, 1.0 / 3628800); p = fma(r, p, 1.0 / 362880); p = fma(r, p, 1.0 / 40320); p = fma(r, p, 1.0 / 5040);
  p = fma(r, p, 1.0 / 720); p = fma(r, p, 1.0 / 120); p = fma(r, p, 1.0 / 24); p = fma(r, p, 1.0 / 6);
  p = fma(r, p, 0.5); p = fma(r, p, 1.0); p = fma(r, p, 1.0);
  const int64_t bits = ((int64_t)k + 1023) << 52;
  double scale;
  memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

/*
 * GELU, tanh approximation (docs/VAR.md §3.4), in float64, written with σ(2u) = (1 + tanh u)/2:
 *   u = √(2/π)(x + 0.044715x³), y = x·σ(2u), y′ = σ(2u) + 2x·σ(2u)(1 − σ(2u))·√(2/π)(1 + 3·0.044715x²),
 * rounded to float32 on store (error before rounding ~1e-15; the TypeScript table's is < 1e-9, so the two
 * agree to the last bit except where a value falls within 1e-9 of a float32 rounding boundary).
 * Saturated as the TypeScript table is: x ≥ 8 gives x (y′ = 1), x ≤ −8 gives −0 (y′ = 0).
 * d may be NULL (no derivative wanted).
 */
KERNEL void actvar_gelu(const float *x, float *y, float *d, i64 n) {
  const double c = 0.7978845608028654, a = 0.044715;
  for (i64 i = 0; i < n; i++) {
    const double v = x[i], vc = (v > -8.0) & (v < 8.0) ? v : 0.0; /* NaN stays NaN through v below */
    const double s = 1.0 / (1.0 + exp_f64(-2.0 * c * (vc + a * vc * vc * vc)));
    const double yv = v * s;
    y[i] = v >= 8.0 ? (float)v : (v <= -8.0 ? -0.0f : (float)yv);
    if (d) {
      const double dv = s + 2.0 * v * s * (1.0 - s) * c * (1.0 + 3.0 * a * v * v);
      d[i] = v >= 8.0 ? 1.0f : (v <= -8.0 ? 0.0f : (float)dv);
    }
  }
}

/* o[i] = a[i]·b[i] (GELU's backward: g·y′). */
KERNEL void actvar_mul(const float *a, const float *b, float *o, i64 n) {
  for (i64 i = 0; i < n; i++) o[i] = a[i] * b[i];
}

/* o[i] = a[i] + b[i] (same-shape add: the residual connections). */
KERNEL void actvar_add(const float *a, const float *b, float *o, i64 n) {
  for (i64 i = 0; i < n; i++) o[i] = a[i] + b[i];
}

/* Σ (a[i] − b[i])² in float64 (the MSE loss). */
KERNEL double actvar_sq_dist(const float *a, const float *b, i64 n) {
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (i64 i = 0; i < n; i++) { const double d = (double)a[i] - (double)b[i]; s += d * d; }
  return s;
}

/* o[i] = k·(a[i] − b[i]) (the MSE gradient), in float64 as the TypeScript does (the same bits). */
KERNEL void actvar_scaled_diff(const float *a, const float *b, float *o, i64 n, double k) {
  for (i64 i = 0; i < n; i++) o[i] = (float)(k * ((double)a[i] - (double)b[i]));
}

/* a[i] += b[i] (gradient accumulation). */
KERNEL void actvar_add_into(float *a, const float *b, i64 n) {
  for (i64 i = 0; i < n; i++) a[i] += b[i];
}

/* out[j] = Σ_r g[r·cols + j] (a bias gradient), rows summed in order, in float32. */
KERNEL void actvar_colsum(const float *g, float *out, i64 rows, i64 cols) {
  for (i64 j = 0; j < cols; j++) out[j] = 0.0f;
  for (i64 r = 0; r < rows; r++) {
    const float *row = g + r * cols;
    for (i64 j = 0; j < cols; j++) out[j] += row[j];
  }
}

/* The largest of x[0..n), or 0 if they are all −∞ (a fully masked row: exp(−∞) = 0 everywhere). */
static inline float row_max(const float *x, i64 n) {
  float m = -INFINITY;
#pragma omp simd reduction(max : m)
  for (i64 i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
  return m == -INFINITY ? 0.0f : m;
}

/* y[i] = exp(x[i] − m) for x − m ≤ 0 (y may be x); returns Σ y in float64. */
static inline double row_exp(const float *x, float *y, i64 n, float m) {
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (i64 i = 0; i < n; i++) {
    const float e = exp_nonpositive(x[i] - m);
    y[i] = e;
    s += e;
  }
  return s;
}

/* Row-wise softmax of `rows` contiguous rows of n (y may be x): max-subtracted; a fully masked row
 * gives 0/0 = NaN, as in torch. */
KERNEL void actvar_softmax_rows(const float *x, float *y, i64 rows, i64 n) {
  for (i64 o = 0; o < rows; o++) {
    const float *xr = x + o * n;
    float *yr = y + o * n;
    const float r = (float)(1.0 / row_exp(xr, yr, n, row_max(xr, n)));
    for (i64 i = 0; i < n; i++) yr[i] *= r;
  }
}

/*
 * Unnormalised softmax rows of the KV-cache attention (src/tensor/ops/kv-attention.ts, expRowsInPlace), in place:
 * S ← exp(S − c) per row with c = `bound` when it is finite (cosine attention: the caller guarantees
 * S − c ∈ (−80, 0]) or else the row max; sums[i] = Σ_j of row i's exponentials, in float64.
 */
KERNEL void actvar_exp_rows(float *S, i64 rows, i64 n, double bound, double *sums) {
  const int bounded = bound == bound && bound < 3.0e38 && bound > -3.0e38;
  for (i64 o = 0; o < rows; o++) {
    float *sr = S + o * n;
    sums[o] = row_exp(sr, sr, n, bounded ? (float)bound : row_max(sr, n));
  }
}

/* Softmax backward of `rows` rows of n: dx_i = y_i·(g_i − Σ_j g_j·y_j); dx may be g. */
KERNEL void actvar_softmax_rows_bwd(const float *y, const float *g, float *dx, i64 rows, i64 n) {
  for (i64 o = 0; o < rows; o++) {
    const float *yr = y + o * n, *gr = g + o * n;
    float *dr = dx + o * n;
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (i64 i = 0; i < n; i++) s += gr[i] * yr[i];
    for (i64 i = 0; i < n; i++) dr[i] = yr[i] * (gr[i] - s);
  }
}

/*
 * LayerNorm over rows of C (biased variance, eps inside the root), in float64 (two passes: mean, then
 * the squared deviations), rounded on store:
 * mean[r], rstd[r] = 1/√(σ² + eps) are written for the backward; y = (x − μ)·rstd·w + b
 * (w, b may be NULL).
 */
KERNEL void actvar_layernorm(const float *x, float *y, double *mean, double *rstd, const float *w, const float *b,
                      i64 rows, i64 C, double eps) {
  for (i64 r = 0; r < rows; r++) {
    const float *xr = x + r * C;
    float *yr = y + r * C;
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for (i64 j = 0; j < C; j++) s += xr[j];
    const double mu = C > 0 ? s / (double)C : 0.0;
    double s2 = 0.0;
#pragma omp simd reduction(+ : s2)
    for (i64 j = 0; j < C; j++) { const double dv = xr[j] - mu; s2 += dv * dv; }
    const double rs = 1.0 / sqrt((C > 0 ? s2 / (double)C : 0.0) + eps);
    mean[r] = mu;
    rstd[r] = rs;
    /* x̂ in float64, as the TypeScript computes it (a row with a large mean and a small spread keeps its digits) */
    if (w && b) for (i64 j = 0; j < C; j++) yr[j] = (float)(((double)xr[j] - mu) * rs * w[j] + b[j]);
    else if (w) for (i64 j = 0; j < C; j++) yr[j] = (float)(((double)xr[j] - mu) * rs * w[j]);
    else if (b) for (i64 j = 0; j < C; j++) yr[j] = (float)(((double)xr[j] - mu) * rs + b[j]);
    else for (i64 j = 0; j < C; j++) yr[j] = (float)(((double)xr[j] - mu) * rs);
  }
}

/*
 * LayerNorm backward, x̂ = (x − μ)·rstd recomputed, all in float64 as in the TypeScript: with gx̂ = g·w,
 *   gx = rstd·(gx̂ − mean(gx̂) − x̂·mean(gx̂·x̂)),  gw[j] += Σ_r g·x̂,  gb[j] += Σ_r g.
 * gx, gw, gb may each be NULL; gw and gb accumulate over rows in order (the caller zeroes them); w may be
 * NULL (ones).
 */
KERNEL void actvar_layernorm_bwd(const float *g, const float *x, const double *mean, const double *rstd, const float *w,
                          float *gx, double *gw, double *gb, i64 rows, i64 C) {
  for (i64 r = 0; r < rows; r++) {
    const float *gr = g + r * C, *xr = x + r * C;
    const double mu = mean[r], rs = rstd[r];
    double s1 = 0.0, s2 = 0.0;
#pragma omp simd reduction(+ : s1, s2)
    for (i64 j = 0; j < C; j++) {
      const double gj = gr[j], xh = ((double)xr[j] - mu) * rs, wj = w ? w[j] : 1.0;
      s1 += gj * wj;
      s2 += gj * xh * wj;
    }
    if (gw) for (i64 j = 0; j < C; j++) gw[j] += (double)gr[j] * (((double)xr[j] - mu) * rs);
    if (gb) for (i64 j = 0; j < C; j++) gb[j] += (double)gr[j];
    if (!gx) continue;
    float *dr = gx + r * C;
    const double m1 = s1 / (double)C, m2 = s2 / (double)C;
    for (i64 j = 0; j < C; j++) {
      const double wj = w ? w[j] : 1.0;
      dr[j] = (float)(rs * ((double)gr[j] * wj - m1 - ((double)xr[j] - mu) * rs * m2));
    }
  }
}

/*
 * One AdamW update (src/tensor/ops/adamw-update.ts, torch.optim.AdamW): in float64, rounding m, v and p to
 * float32 on store, in the TypeScript twin's order of operations (so both give the same bits):
 *   p ← p·decay;  m ← β1·m + c1·g;  v ← β2·v + c2·g²;  p ← p − stepSize·m / (√v·rb + eps).
 * decay = 1 skips the first line (as the TypeScript does: p·1 is p, so this changes nothing).
 */
KERNEL void actvar_adamw(float *p, const float *g, float *m, float *v, i64 n, double decay, double b1, double b2,
                  double c1, double c2, double stepSize, double rb, double eps) {
  for (i64 i = 0; i < n; i++) {
    const double gi = g[i];
    const float pi = decay == 1.0 ? p[i] : (float)((double)p[i] * decay);
    const float mi = (float)((double)m[i] * b1 + gi * c1), vi = (float)((double)v[i] * b2 + gi * gi * c2);
    m[i] = mi;
    v[i] = vi;
    p[i] = (float)((double)pi - stepSize * (double)mi / (sqrt((double)vi) * rb + eps));
  }
}
