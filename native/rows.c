/*
 * Row-wise inference kernels of a VAR block (src/tensor/ops/adaln.ts and heads.ts have their TypeScript twins and the
 * formulas): adaLN modulation, the q/k/v head split with cosine normalisation, the gated residual; the
 * gate scores of ActVAR's token selector (twin: src/tensor/ops/gate-scores.ts `gateScores`); and GELU (kernels.c)
 * split over the pool.
 * Rows are spread over the thread pool (threads.c) when there are enough of them. Each row is
 * computed the same way whatever the split, with the same roundings as the TypeScript: float64
 * statistics, float32 products (the library is built with -ffp-contract=off, so no fused
 * multiply-adds); only the order of the float64 sums may differ, which moves a result by at most one
 * float32 rounding.
 */
#include <math.h>
#include <stddef.h>

#include "kernel.h"
#include "threads.h"

/* Fewest floats worth a second thread. */
#define PAR_MIN_FLOATS 65536

static int parts_for(i64 floats) { return floats >= PAR_MIN_FLOATS ? actvar_pool_threads() : 1; }

typedef struct {
  const float *X, *S, *Sh, *G;
  float *Y;
  const float *bias;
  const double *sH;
  double sw, b;
  float *D;
  i64 rows, C, perB, H, hd, L, stride, base, which;
  double eps;
  int l2;
} rows_job;

/* y = LN(x)·(1 + scale_b) + shift_b over rows [r0, r1) (no LN affine; adaLN, docs/VAR.md §3.2). */
KERNEL static void modulate_rows(const rows_job *j, i64 r0, i64 r1) {
  const i64 C = j->C;
  for (i64 r = r0; r < r1; r++) {
    const float *x = j->X + r * C;
    const i64 bo = (r / j->perB) * C;
    const float *s = j->S + bo, *sh = j->Sh + bo;
    float *y = j->Y + r * C;
    double s1 = 0, s2 = 0;
#pragma omp simd reduction(+ : s1, s2)
    for (i64 c = 0; c < C; c++) { const double v = x[c]; s1 += v; s2 += v * v; }
    const double m = s1 / (double)C, var = s2 / (double)C - m * m;
    const double rstd = 1.0 / sqrt((var > 0 ? var : 0) + j->eps);
    for (i64 c = 0; c < C; c++) {
      const float n = (float)((x[c] - m) * rstd);
      const float onePlus = 1.0f + s[c];
      y[c] = n * onePlus + sh[c];
    }
  }
}

/* out = x + branch ⊙ gamma_b over rows [r0, r1). */
KERNEL static void residual_rows(const rows_job *j, i64 r0, i64 r1) {
  const i64 C = j->C;
  for (i64 r = r0; r < r1; r++) {
    const float *x = j->X + r * C, *b = j->S + r * C, *g = j->G + (r / j->perB) * C;
    float *y = j->Y + r * C;
    for (i64 c = 0; c < C; c++) y[c] = x[c] + b[c] * g[c];
  }
}

/* Part `which` (0 q, 1 k, 2 v) of the fused qkv rows [r0, r1) + bias, per head; cosine-normalised
 * (× sH[h] when given) when l2. Row r = (b, i) goes to Y[((b·H + h)·stride + base + i)·hd …]. */
KERNEL static void split_rows(const rows_job *j, i64 r0, i64 r1) {
  const i64 H = j->H, hd = j->hd, C = H * hd;
  for (i64 r = r0; r < r1; r++) {
    const i64 b = r / j->L, i = r - b * j->L;
    const float *q = j->X + r * 3 * C + j->which * C;
    for (i64 h = 0; h < H; h++) {
      float *o = j->Y + ((b * H + h) * j->stride + j->base + i) * hd;
      const float *qh = q + h * hd, *bh = j->bias + h * hd;
      double ss = 0;
#pragma omp simd reduction(+ : ss)
      for (i64 d = 0; d < hd; d++) { const float v = qh[d] + bh[d]; o[d] = v; ss += (double)v * v; }
      if (j->l2) {
        const double nrm = sqrt(ss), f = (j->sH ? j->sH[h] : 1.0) / (nrm > 1e-12 ? nrm : 1e-12);
        for (i64 d = 0; d < hd; d++) o[d] = (float)(o[d] * f);
      }
    }
  }
}

/* Y[r] = w·LN(x_r) + b = (w·x_r − μ·Σw)/σ + b over rows [r0, r1), statistics in float64 (S = w, sw = Σw). */
KERNEL static void gate_rows(const rows_job *j, i64 r0, i64 r1) {
  const i64 C = j->C;
  const float *w = j->S;
  for (i64 r = r0; r < r1; r++) {
    const float *x = j->X + r * C;
    double s1 = 0, s2 = 0, dot = 0;
#pragma omp simd reduction(+ : s1, s2, dot)
    for (i64 c = 0; c < C; c++) { const double v = x[c]; s1 += v; s2 += v * v; dot += v * w[c]; }
    const double m = s1 / (double)C, var = s2 / (double)C - m * m;
    j->Y[r] = (float)((dot - m * j->sw) / sqrt((var > 0 ? var : 0) + j->eps) + j->b);
  }
}

static void part_range(const void *p, int part, int parts, i64 *r0, i64 *r1) {
  *r0 = pool_part_start(((const rows_job *)p)->rows, part, parts, 1);
  *r1 = pool_part_start(((const rows_job *)p)->rows, part + 1, parts, 1);
}
static void modulate_part(void *p, int part, int parts) {
  i64 r0, r1;
  part_range(p, part, parts, &r0, &r1);
  modulate_rows(p, r0, r1);
}
static void residual_part(void *p, int part, int parts) {
  i64 r0, r1;
  part_range(p, part, parts, &r0, &r1);
  residual_rows(p, r0, r1);
}
static void split_part(void *p, int part, int parts) {
  i64 r0, r1;
  part_range(p, part, parts, &r0, &r1);
  split_rows(p, r0, r1);
}

/* GELU of this part's elements (`rows` counts elements here); each element on its own, so any split gives the same bits. */
static void gelu_part(void *p, int part, int parts) {
  const rows_job *j = p;
  const i64 s = pool_part_start(j->rows, part, parts, 16), e = pool_part_start(j->rows, part + 1, parts, 16);
  if (e > s) actvar_gelu(j->X + s, j->Y + s, j->D ? j->D + s : NULL, e - s);
}

static void gate_part(void *p, int part, int parts) {
  i64 r0, r1;
  part_range(p, part, parts, &r0, &r1);
  gate_rows(p, r0, r1);
}

/* Y = LN(X)·(1 + S[b]) + Sh[b]: X rows × C, S and Sh B × C, rows/B rows per sample. */
void actvar_modulate(const float *X, const float *S, const float *Sh, i64 B, i64 rows, i64 C, double eps, float *Y) {
  if (rows <= 0 || B <= 0) return;
  rows_job j = {.X = X, .S = S, .Sh = Sh, .Y = Y, .rows = rows, .C = C, .perB = rows / B, .eps = eps};
  pool_run(modulate_part, &j, parts_for(rows * C));
}

/* Y = X + Br ⊙ G[b]: X, Br rows × C, G B × C. */
void actvar_gated_residual(const float *X, const float *Br, const float *G, i64 B, i64 rows, i64 C, float *Y) {
  if (rows <= 0 || B <= 0) return;
  rows_job j = {.X = X, .S = Br, .G = G, .Y = Y, .rows = rows, .C = C, .perB = rows / B};
  pool_run(residual_part, &j, parts_for(rows * C));
}

/* The head split of src/tensor/ops/heads.ts `splitHeadsInto`: QKV [B, L, 3·H·hd] → Y as described at split_rows. */
void actvar_split_heads(const float *QKV, i64 B, i64 L, i64 H, i64 hd, i64 part, const float *bias, int l2, const double *sH,
                        float *Y, i64 stride, i64 base) {
  if (B * L <= 0) return;
  rows_job j = {.X = QKV, .Y = Y, .bias = bias, .sH = sH, .rows = B * L, .H = H, .hd = hd, .L = L, .stride = stride,
                .base = base, .which = part, .l2 = l2};
  pool_run(split_part, &j, parts_for(B * L * H * hd));
}

/* The selector's gate logits Y[r] = w·LN(X_r) + b for rows × C inputs X (see gate_rows). */
void actvar_gate_scores(const float *X, i64 rows, i64 C, const float *w, double b, double eps, float *Y) {
  if (rows <= 0) return;
  double sw = 0;
  for (i64 c = 0; c < C; c++) sw += w[c];
  rows_job j = {.X = X, .S = w, .Y = Y, .rows = rows, .C = C, .eps = eps, .sw = sw, .b = b};
  pool_run(gate_part, &j, parts_for(rows * C));
}

/* y = GELU(x) (and d = GELU′(x) unless NULL) over n elements, split over the pool (kernels.c actvar_gelu). */
void actvar_gelu_pool(const float *x, float *y, float *d, i64 n) {
  if (n <= 0) return;
  rows_job j = {.X = x, .Y = y, .D = d, .rows = n};
  pool_run(gelu_part, &j, parts_for(n));
}
