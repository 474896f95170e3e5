/*
 * The VQVAE's inference 3×3 'same' convolution (stride 1, padding 1), the whole op in C: the native path
 * of src/tensor/ops/conv3x3.ts (`conv3x3Same`), which holds the TypeScript reference of every step.
 *
 * Per batch item: (1) fill the zero-padded planes P[ci, 1 + y, 1 + x] (row length Wp = W + 2) from the
 * input through the layer's prologue: a copy, SiLU, nearest ×2 upsampling, or GroupNorm then SiLU;
 * (2) per band of output rows, out'[co, y·Wp + x] = bias[co] + Σ_tap Σ_ci W[co, ci, tap] · P[ci, shifted by
 * the tap] as 9 GEMMs (actvar_sgemm of threads.c: cut into parts by the shape alone), the columns
 * x = W, W + 1 of out' being junk; (3) copy the band out without the junk columns, adding the residual.
 * Steps (1) and (3) and the weight repack are split over the pool of threads.c by channels (GroupNorm by
 * groups); each element is computed on its own, so the result does not depend on the thread count.
 *
 * Numerics: GroupNorm exactly as the tensor op (src/tensor/ops/row-stats.ts and conv3x3.ts's fillKernel):
 * float64 statistics shifted by the group's first value, y = (float)(x·scale + shift) in float64 with
 * scale = rstd·w[c], shift = b[c] − mean·scale. SiLU is y·(1/(1 + e^(−y))) in float32 with the
 * exponential below (a Cody–Waite range reduction and the degree-5 polynomial of Cephes' expf, relative
 * error ≈ 2e-7), vectorised by the compiler, where the TypeScript loop uses Math.exp in float64: the
 * two agree to a few float32 ulps.
 */
#define _POSIX_C_SOURCE 199309L /* clock_gettime */
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "kernel.h"
#include "threads.h"

int actvar_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
                 float beta, float *C, int ldc);

enum { MODE_COPY = 0, MODE_SILU = 1, MODE_UP2 = 2, MODE_GN_SILU = 3 };

/* e^x for x in [−87, 88] (clamped there): x = n·ln2 + r, |r| ≤ ln2/2, e^r by Cephes' expf polynomial,
 * 2^n through the exponent bits. Plain float arithmetic (the library is built with -ffp-contract=off),
 * so every vector width gives the same bits. */
static inline float exp_clamped(float x) {
  x = x < -87.0f ? -87.0f : x > 88.0f ? 88.0f : x;
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round to nearest */
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float e = p * (r * r) + r + 1.0f;
  const int32_t bits = ((int32_t)n + 127) << 23;
  float s;
  memcpy(&s, &bits, sizeof s);
  return e * s;
}

static inline float silu(float v) { return v * (1.0f / (1.0f + exp_clamped(-v))); }

typedef struct {
  const float *X; /* one batch item [Cin, Hin, Win] */
  float *P;       /* [Cin, H + 2, Wp] */
  i64 Cin, Hin, Win, Wp, plane, groups;
  int mode;
  const float *gw, *gb;
  double eps;
} fill_job;

/* Channels [c0, c1) of P (group bounds in GroupNorm mode). */
KERNEL static void fill_channels(const fill_job *j, i64 c0, i64 c1) {
  const int up = j->mode == MODE_UP2;
  const i64 Hin = j->Hin, Win = j->Win, hw = Hin * Win, Wp = j->Wp, plane = j->plane;
  const i64 H = up ? 2 * Hin : Hin, W = up ? 2 * Win : Win;
  const i64 cpg = j->mode == MODE_GN_SILU ? j->Cin / j->groups : 1;
  double mean = 0, rstd = 1;
  for (i64 c = c0; c < c1; c++) {
    const float *Xc = j->X + c * hw;
    if (j->mode == MODE_GN_SILU && (c - c0) % cpg == 0) {
      /* the group's statistics, as rowStatsInto: float64 sums shifted by the first value, in order */
      const i64 n = cpg * hw;
      const double k = n > 0 ? Xc[0] : 0;
      double s = 0, s2 = 0;
      for (i64 i = 0; i < n; i++) {
        const double d = (double)Xc[i] - k;
        s += d;
        s2 += d * d;
      }
      const double md = s / (double)n, var = s2 / (double)n - md * md;
      mean = k + md;
      rstd = 1.0 / __builtin_sqrt((var > 0 ? var : 0) + j->eps);
    }
    double scale = 1, shift = 0;
    if (j->mode == MODE_GN_SILU) {
      scale = rstd * (double)j->gw[c];
      shift = (double)j->gb[c] - mean * scale;
    }
    float *Pc = j->P + c * plane;
    memset(Pc, 0, (size_t)(Wp + 1) * sizeof(float)); /* top border row, left border of row 1 */
    for (i64 y = 0; y < H; y++) {
      float *d = Pc + (y + 1) * Wp + 1;
      if (up) {
        const float *s = Xc + (y >> 1) * Win;
        for (i64 i = 0; i < Win; i++) d[2 * i] = d[2 * i + 1] = s[i];
      } else {
        const float *s = Xc + y * Win;
        if (j->mode == MODE_GN_SILU) {
          for (i64 i = 0; i < Win; i++) d[i] = silu((float)((double)s[i] * scale + shift));
        } else if (j->mode == MODE_SILU) {
          for (i64 i = 0; i < Win; i++) d[i] = silu(s[i]);
        } else {
          memcpy(d, s, (size_t)Win * sizeof(float));
        }
      }
      d[W] = 0; /* right border, left border of the next row */
      d[W + 1] = 0;
    }
    memset(Pc + (H + 1) * Wp, 0, (size_t)(plane - (H + 1) * Wp) * sizeof(float)); /* bottom border row */
  }
}

static void fill_task(void *p, int part, int parts) {
  const fill_job *j = p;
  const i64 units = j->mode == MODE_GN_SILU ? j->groups : j->Cin, per = j->mode == MODE_GN_SILU ? j->Cin / j->groups : 1;
  const i64 u0 = pool_part_start(units, part, parts, 1), u1 = pool_part_start(units, part + 1, parts, 1);
  if (u1 > u0) fill_channels(j, u0 * per, u1 * per);
}

typedef struct {
  const float *Wt; /* [Cout, Cin, 3, 3] */
  float *wk;       /* 9 × [Cout, Cin] */
  i64 Cout, Cin;
} taps_job;

static void taps_task(void *p, int part, int parts) {
  const taps_job *j = p;
  const i64 n = j->Cout * j->Cin, r0 = pool_part_start(n, part, parts, 64), r1 = pool_part_start(n, part + 1, parts, 64);
  for (int k = 0; k < 9; k++) {
    float *o = j->wk + k * n;
    for (i64 d = r0; d < r1; d++) o[d] = j->Wt[d * 9 + k];
  }
}

typedef struct {
  float *band;
  const float *bias, *Res;
  float *out;
  i64 Cout, N, Wp, W, rows, o0, HW; /* N = rows·Wp; o0: offset of (b, co = 0, y0) in out; HW = H·W */
  int in_place;
  int copy_out; /* 0: preset the band with the bias, 1: copy it out */
} band_job;

KERNEL static void band_task(void *p, int part, int parts) {
  const band_job *j = p;
  const i64 c0 = pool_part_start(j->Cout, part, parts, 1), c1 = pool_part_start(j->Cout, part + 1, parts, 1);
  for (i64 co = c0; co < c1; co++) {
    float *bd = j->band + co * j->N;
    if (!j->copy_out) {
      const float b = j->bias[co];
      for (i64 i = 0; i < j->N; i++) bd[i] = b;
      continue;
    }
    for (i64 r = 0; r < j->rows; r++) {
      const float *s = bd + r * j->Wp;
      const i64 dst = j->o0 + co * j->HW + r * j->W;
      float *o = j->out + dst;
      if (j->in_place) {
        for (i64 i = 0; i < j->W; i++) o[i] += s[i];
      } else if (j->Res) {
        const float *res = j->Res + dst;
        for (i64 i = 0; i < j->W; i++) o[i] = res[i] + s[i];
      } else {
        memcpy(o, s, (size_t)j->W * sizeof(float));
      }
    }
  }
}

/* ------------------------------------------------------------------------------------------------
 * Winograd F(2×2, 3×3) (Lavin & Gray 2016, "Fast Algorithms for Convolutional Neural Networks"): each 2×2
 * output tile is Aᵀ[Σ_ci (G g Gᵀ) ⊙ (Bᵀ d B)]A with d the tile's 4×4 input window, so the 9·Cin
 * multiply-adds per output become 16·Cin per 4 outputs (2.25× fewer), done as 16 GEMMs
 * M[ξ] (Cout × tiles) = U[ξ] (Cout × Cin) · V[ξ] (Cin × tiles), ξ the 16 positions of the transformed tile:
 *   Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1],  G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1],  Aᵀ = [1 1 1 0; 0 1 −1 −1].
 * The tiles are taken in bands of whole tile rows (a size fixed by the shape); every GEMM of a band is one
 * single-threaded BLAS call on one of the pool's threads, and the transforms are elementwise, so the
 * result does not depend on the thread count. Even H and W only (the caller checks). */

typedef struct {
  const float *Wt;
  float *U; /* [16][Cout][Cin] */
  i64 Cout, Cin;
} wtrans_job;

/* U[ξ][co][ci] = (G g Gᵀ)[ξ] for g = W[co, ci] (3×3): the 9 taps first as 9 contiguous rows in the last 9 slices
 * of U (each d is read before it is overwritten), then the transform in scalars, vectorised over the kernels. */
#define G4(o, a0, a1, a2) \
  const float o##0 = (a0), o##1 = 0.5f * (((a0) + (a1)) + (a2)), o##2 = 0.5f * (((a0) - (a1)) + (a2)), o##3 = (a2);
#define W_COL(c) G4(t##c##_, g[c * n + d], g[(3 + c) * n + d], g[(6 + c) * n + d])
#define W_ROW(k)                                                                                                 \
  {                                                                                                              \
    G4(e, t0_##k, t1_##k, t2_##k)                                                                                \
    U[(k * 4 + 0) * n + d] = e0, U[(k * 4 + 1) * n + d] = e1, U[(k * 4 + 2) * n + d] = e2, U[(k * 4 + 3) * n + d] = e3; \
  }
KERNEL static void wtrans_task(void *p, int part, int parts) {
  const wtrans_job *j = p;
  const i64 n = j->Cout * j->Cin, r0 = pool_part_start(n, part, parts, 64), r1 = pool_part_start(n, part + 1, parts, 64);
  float *U = j->U;
  const float *g = U + 7 * n;
  for (int k = 0; k < 9; k++)
    for (i64 d = r0; d < r1; d++) U[(7 + k) * n + d] = j->Wt[d * 9 + k];
#pragma omp simd
  for (i64 d = r0; d < r1; d++) {
    W_COL(0) W_COL(1) W_COL(2)
    W_ROW(0) W_ROW(1) W_ROW(2) W_ROW(3)
  }
}
#undef G4
#undef W_COL
#undef W_ROW

typedef struct {
  const float *P; /* padded input planes [Cin][H + 2][Wp] */
  float *V;       /* [16][Cin][Tb] */
  const float *U;
  float *M; /* [16][Cout][Tb] */
  const float *bias, *Res;
  float *out;
  i64 Cin, Cout, Wp, plane, W, HW, tw, ty0, Tb, ob; /* ty0: first tile row of the band, Tb its tiles, ob: offset of item b in out */
  int in_place;
} wband_job;

/* V[ξ][ci][t] = (Bᵀ d B)[ξ] for the band's tiles t, channels of this part. */
KERNEL static void wtrans_in_task(void *p, int part, int parts) {
  const wband_job *j = p;
  const i64 c0 = pool_part_start(j->Cin, part, parts, 1), c1 = pool_part_start(j->Cin, part + 1, parts, 1);
  const i64 tw = j->tw, Wp = j->Wp, Tb = j->Tb, rows = Tb / tw, stride = j->Cin * Tb;
  for (i64 ci = c0; ci < c1; ci++) {
    for (i64 r = 0; r < rows; r++) {
      const float *d0 = j->P + ci * j->plane + 2 * (j->ty0 + r) * Wp, *d1 = d0 + Wp, *d2 = d1 + Wp, *d3 = d2 + Wp;
      float *v = j->V + ci * Tb + r * tw;
      float *restrict v0 = v, *restrict v1 = v + stride, *restrict v2 = v + 2 * stride, *restrict v3 = v + 3 * stride;
      float *restrict v4 = v + 4 * stride, *restrict v5 = v + 5 * stride, *restrict v6 = v + 6 * stride, *restrict v7 = v + 7 * stride;
      float *restrict v8 = v + 8 * stride, *restrict v9 = v + 9 * stride, *restrict v10 = v + 10 * stride, *restrict v11 = v + 11 * stride;
      float *restrict v12 = v + 12 * stride, *restrict v13 = v + 13 * stride, *restrict v14 = v + 14 * stride, *restrict v15 = v + 15 * stride;
#pragma omp simd
      for (i64 x = 0; x < tw; x++) {
        /* t = Bᵀ d, column c: (d0 − d2, d1 + d2, d2 − d1, d1 − d3) */
#define COLT(c) \
  const float a0##c = d0[2 * x + c], a1##c = d1[2 * x + c], a2##c = d2[2 * x + c], a3##c = d3[2 * x + c]; \
  const float t0##c = a0##c - a2##c, t1##c = a1##c + a2##c, t2##c = a2##c - a1##c, t3##c = a1##c - a3##c;
        COLT(0) COLT(1) COLT(2) COLT(3)
#undef COLT
        /* V row q = t row q · B: (t0 − t2, t1 + t2, t2 − t1, t1 − t3) */
        v0[x] = t00 - t02, v1[x] = t01 + t02, v2[x] = t02 - t01, v3[x] = t01 - t03;
        v4[x] = t10 - t12, v5[x] = t11 + t12, v6[x] = t12 - t11, v7[x] = t11 - t13;
        v8[x] = t20 - t22, v9[x] = t21 + t22, v10[x] = t22 - t21, v11[x] = t21 - t23;
        v12[x] = t30 - t32, v13[x] = t31 + t32, v14[x] = t32 - t31, v15[x] = t31 - t33;
      }
    }
  }
}

/* The 16 GEMMs of the band, split by ξ: each one whole single-threaded BLAS call. */
static void wgemm_task(void *p, int part, int parts) {
  const wband_job *j = p;
  const int Co = (int)j->Cout, Ci = (int)j->Cin, Tb = (int)j->Tb;
  for (int xi = part; xi < 16; xi += parts) {
    blas_sgemm(ROW_MAJOR, NO_TRANS, NO_TRANS, Co, Tb, Ci, 1.0f, j->U + (i64)xi * Co * Ci, Ci, j->V + (i64)xi * Ci * Tb, Tb, 0.0f,
               j->M + (i64)xi * Co * Tb, Tb);
  }
}

/* out = Aᵀ M A + bias (+ Res) for the band's tiles, output channels of this part. */
KERNEL static void wtrans_out_task(void *p, int part, int parts) {
  const wband_job *j = p;
  const i64 c0 = pool_part_start(j->Cout, part, parts, 1), c1 = pool_part_start(j->Cout, part + 1, parts, 1);
  const i64 tw = j->tw, Tb = j->Tb, rows = Tb / tw, stride = j->Cout * Tb, W = j->W;
  for (i64 co = c0; co < c1; co++) {
    const float b = j->bias[co];
    for (i64 r = 0; r < rows; r++) {
      const float *m = j->M + co * Tb + r * tw;
      const i64 o = j->ob + co * j->HW + 2 * (j->ty0 + r) * W;
      float *y0 = j->out + o, *y1 = y0 + W;
      const float *q0 = j->in_place ? y0 : j->Res ? j->Res + o : NULL, *q1 = q0 ? q0 + W : NULL;
      const float *m0 = m, *m1 = m + stride, *m2 = m + 2 * stride, *m3 = m + 3 * stride, *m4 = m + 4 * stride, *m5 = m + 5 * stride;
      const float *m6 = m + 6 * stride, *m7 = m + 7 * stride, *m8 = m + 8 * stride, *m9 = m + 9 * stride, *m10 = m + 10 * stride;
      const float *m11 = m + 11 * stride, *m12 = m + 12 * stride, *m13 = m + 13 * stride, *m14 = m + 14 * stride, *m15 = m + 15 * stride;
      /* s = Aᵀ m, column c: (m0 + m1 + m2, m1 − m2 − m3) over the rows; then y = s · A the same way over columns */
#define OUTT(Y0, Y1, Y2, Y3)                                                                                     \
  for (i64 x = 0; x < tw; x++) {                                                                                \
    const float s00 = (m0[x] + m4[x]) + m8[x], s01 = (m1[x] + m5[x]) + m9[x], s02 = (m2[x] + m6[x]) + m10[x], \
                s03 = (m3[x] + m7[x]) + m11[x];                                                                 \
    const float s10 = (m4[x] - m8[x]) - m12[x], s11 = (m5[x] - m9[x]) - m13[x], s12 = (m6[x] - m10[x]) - m14[x], \
                s13 = (m7[x] - m11[x]) - m15[x];                                                                \
    y0[2 * x] = Y0(((s00 + s01) + s02) + b, 2 * x);                                                              \
    y0[2 * x + 1] = Y1(((s01 - s02) - s03) + b, 2 * x + 1);                                                      \
    y1[2 * x] = Y2(((s10 + s11) + s12) + b, 2 * x);                                                              \
    y1[2 * x + 1] = Y3(((s11 - s12) - s13) + b, 2 * x + 1);                                                      \
  }
#define PLAIN(v, i) (v)
#define RES0(v, i) (q0[i] + (v))
#define RES1(v, i) (q1[i] + (v))
      if (q0) {
#pragma omp simd
        OUTT(RES0, RES0, RES1, RES1)
      } else {
#pragma omp simd
        OUTT(PLAIN, PLAIN, PLAIN, PLAIN)
      }
#undef OUTT
#undef PLAIN
#undef RES0
#undef RES1
    }
  }
}

/* ------------------------------------------------------------------------------------------------
 * Winograd F(4×4, 3×3) (same paper): 4×4 output tiles from 6×6 input windows, 36 GEMMs, 2.25 multiplies per
 * output and input channel instead of 4 (F(2×2, 3×3)) or 9 (direct), with the interpolation points 0, ±1, ±2, ∞:
 *   Bᵀ = [4 0 −5 0 1 0; 0 −4 −4 1 1 0; 0 4 −4 −1 1 0; 0 −2 −1 2 1 0; 0 2 −1 −2 1 0; 0 4 0 −5 0 1],
 *   G = [¼ 0 0; −⅙ −⅙ −⅙; −⅙ ⅙ −⅙; 1/24 1/12 ⅙; 1/24 −1/12 ⅙; 0 0 1],
 *   Aᵀ = [1 1 1 1 1 0; 0 1 −1 2 −2 0; 0 1 1 4 4 0; 0 1 −1 8 −8 1].
 * H and W multiples of 4 (the caller checks). Same banding and threading as F(2×2, 3×3). */

/* U[ξ][co][ci] = (G g Gᵀ)[ξ] (written out in scalars so that the compiler vectorises over the kernels). */
#define G6(o, a0, a1, a2)                                                                                  \
  const float o##0 = 0.25f * (a0), o##1 = -((a0) + (a1) + (a2)) * (1.0f / 6), o##2 = -((a0) - (a1) + (a2)) * (1.0f / 6), \
              o##3 = ((a0) * (1.0f / 24) + (a1) * (1.0f / 12)) + (a2) * (1.0f / 6),                          \
              o##4 = ((a0) * (1.0f / 24) - (a1) * (1.0f / 12)) + (a2) * (1.0f / 6), o##5 = (a2);
#define W_COL(c) G6(t##c##_, g[c * n + d], g[(3 + c) * n + d], g[(6 + c) * n + d])
#define W_ROW(k)                                                                     \
  {                                                                                  \
    G6(e, t0_##k, t1_##k, t2_##k)                                                    \
    U[(k * 6 + 0) * n + d] = e0, U[(k * 6 + 1) * n + d] = e1, U[(k * 6 + 2) * n + d] = e2; \
    U[(k * 6 + 3) * n + d] = e3, U[(k * 6 + 4) * n + d] = e4, U[(k * 6 + 5) * n + d] = e5; \
  }
KERNEL static void wtrans43_task(void *p, int part, int parts) {
  const wtrans_job *j = p;
  const i64 n = j->Cout * j->Cin, r0 = pool_part_start(n, part, parts, 64), r1 = pool_part_start(n, part + 1, parts, 64);
  float *U = j->U;
  /* the 9 taps first, as 9 contiguous rows in the last 9 slices of U (each d is read before it is overwritten) */
  const float *g = U + 27 * n;
  for (int k = 0; k < 9; k++)
    for (i64 d = r0; d < r1; d++) U[(27 + k) * n + d] = j->Wt[d * 9 + k];
#pragma omp simd
  for (i64 d = r0; d < r1; d++) {
    /* tC_K = (G g)[K][C], then row K of (G g) times Gᵀ */
    W_COL(0) W_COL(1) W_COL(2)
    W_ROW(0) W_ROW(1) W_ROW(2) W_ROW(3) W_ROW(4) W_ROW(5)
  }
}
#undef G6
#undef W_COL
#undef W_ROW

/* V[ξ][ci][t] = (Bᵀ d B)[ξ] for the band's tiles t, channels of this part (written out in scalars so that the
 * compiler vectorises over the tiles). */
#define BT6(o, a0, a1, a2, a3, a4, a5)                                                                      \
  const float o##0 = (4.0f * (a0) - 5.0f * (a2)) + (a4), o##1 = ((a3) + (a4)) - 4.0f * ((a1) + (a2)),        \
              o##2 = ((a4) - (a3)) + 4.0f * ((a1) - (a2)), o##3 = ((a4) - (a2)) + 2.0f * ((a3) - (a1)),       \
              o##4 = ((a4) - (a2)) - 2.0f * ((a3) - (a1)), o##5 = (4.0f * (a1) - 5.0f * (a3)) + (a5);
#define IN_COL(c) BT6(u##c##_, d[4 * x + c], d[Wp + 4 * x + c], d[2 * Wp + 4 * x + c], d[3 * Wp + 4 * x + c], \
                      d[4 * Wp + 4 * x + c], d[5 * Wp + 4 * x + c])
#define IN_ROW(k)                                                                                        \
  {                                                                                                      \
    BT6(e, u0_##k, u1_##k, u2_##k, u3_##k, u4_##k, u5_##k)                                               \
    v[(k * 6 + 0) * stride + x] = e0, v[(k * 6 + 1) * stride + x] = e1, v[(k * 6 + 2) * stride + x] = e2; \
    v[(k * 6 + 3) * stride + x] = e3, v[(k * 6 + 4) * stride + x] = e4, v[(k * 6 + 5) * stride + x] = e5; \
  }
KERNEL static void wtrans43_in_task(void *p, int part, int parts) {
  const wband_job *j = p;
  const i64 c0 = pool_part_start(j->Cin, part, parts, 1), c1 = pool_part_start(j->Cin, part + 1, parts, 1);
  const i64 tw = j->tw, Wp = j->Wp, Tb = j->Tb, rows = Tb / tw, stride = j->Cin * Tb;
  for (i64 ci = c0; ci < c1; ci++) {
    for (i64 r = 0; r < rows; r++) {
      const float *d = j->P + ci * j->plane + 4 * (j->ty0 + r) * Wp;
      float *v = j->V + ci * Tb + r * tw;
#pragma omp simd
      for (i64 x = 0; x < tw; x++) {
        /* uC_K = (Bᵀ d)[K][C] (column C of d transformed), then row K of that transformed */
        IN_COL(0) IN_COL(1) IN_COL(2) IN_COL(3) IN_COL(4) IN_COL(5)
        IN_ROW(0) IN_ROW(1) IN_ROW(2) IN_ROW(3) IN_ROW(4) IN_ROW(5)
      }
    }
  }
}
#undef IN_COL
#undef IN_ROW

/* The 36 GEMMs of the band, split by ξ. */
static void wgemm43_task(void *p, int part, int parts) {
  const wband_job *j = p;
  const int Co = (int)j->Cout, Ci = (int)j->Cin, Tb = (int)j->Tb;
  for (int xi = part; xi < 36; xi += parts) {
    blas_sgemm(ROW_MAJOR, NO_TRANS, NO_TRANS, Co, Tb, Ci, 1.0f, j->U + (i64)xi * Co * Ci, Ci, j->V + (i64)xi * Ci * Tb, Tb, 0.0f,
               j->M + (i64)xi * Co * Tb, Tb);
  }
}

/* Aᵀ·m for one column or row of six */
#define AT6(o, m0, m1, m2, m3, m4, m5)                                                                    \
  const float o##a = (m1) + (m2), o##b = (m1) - (m2), o##c = (m3) + (m4), o##d = (m3) - (m4);              \
  const float o##0 = ((m0) + o##a) + o##c, o##1 = o##b + 2.0f * o##d, o##2 = o##a + 4.0f * o##c,          \
              o##3 = (o##b + 8.0f * o##d) + (m5);
#define OUT_COL(c) AT6(s##c##_, m[(0 + c) * stride + x], m[(6 + c) * stride + x], m[(12 + c) * stride + x], \
                       m[(18 + c) * stride + x], m[(24 + c) * stride + x], m[(30 + c) * stride + x])
#define OUT_ROW(i, RES)                                                                          \
  {                                                                                              \
    AT6(e, s0_##i, s1_##i, s2_##i, s3_##i, s4_##i, s5_##i)                                       \
    float *yy = y + i * W + 4 * x;                                                               \
    yy[0] = RES(i, 0, e0 + b), yy[1] = RES(i, 1, e1 + b), yy[2] = RES(i, 2, e2 + b), yy[3] = RES(i, 3, e3 + b); \
  }
#define PLAIN(i, k, v) (v)
#define WITH_RES(i, k, v) (q[i * W + 4 * x + k] + (v))

/* out = Aᵀ M A + bias (+ Res) for the band's tiles, output channels of this part. */
KERNEL static void wtrans43_out_task(void *p, int part, int parts) {
  const wband_job *j = p;
  const i64 c0 = pool_part_start(j->Cout, part, parts, 1), c1 = pool_part_start(j->Cout, part + 1, parts, 1);
  const i64 tw = j->tw, Tb = j->Tb, rows = Tb / tw, stride = j->Cout * Tb, W = j->W;
  for (i64 co = c0; co < c1; co++) {
    const float b = j->bias[co];
    for (i64 r = 0; r < rows; r++) {
      const float *m = j->M + co * Tb + r * tw;
      const i64 o = j->ob + co * j->HW + 4 * (j->ty0 + r) * W;
      float *y = j->out + o;
      const float *q = j->in_place ? y : j->Res ? j->Res + o : NULL;
      if (q) {
#pragma omp simd
        for (i64 x = 0; x < tw; x++) {
          OUT_COL(0) OUT_COL(1) OUT_COL(2) OUT_COL(3) OUT_COL(4) OUT_COL(5)
          OUT_ROW(0, WITH_RES) OUT_ROW(1, WITH_RES) OUT_ROW(2, WITH_RES) OUT_ROW(3, WITH_RES)
        }
      } else {
#pragma omp simd
        for (i64 x = 0; x < tw; x++) {
          OUT_COL(0) OUT_COL(1) OUT_COL(2) OUT_COL(3) OUT_COL(4) OUT_COL(5)
          OUT_ROW(0, PLAIN) OUT_ROW(1, PLAIN) OUT_ROW(2, PLAIN) OUT_ROW(3, PLAIN)
        }
      }
    }
  }
}
#undef OUT_COL
#undef OUT_ROW
#undef PLAIN
#undef WITH_RES

/* Whole bands on the pool's threads (band i on thread i mod parts): the input transform, the ξ GEMMs and the
 * output transform of a band in one thread, in its own scratch, so a conv needs one barrier for all its bands
 * instead of three per band. Each band is computed exactly as the phase-by-phase path computes it. */
typedef struct {
  wband_job base;
  i64 th, R;
  int wino;
  float *mem[MAX_THREADS];
} wall_job;

static part_scratch wscratch;
static atomic_flag wscratch_busy = ATOMIC_FLAG_INIT;

static void wall_task(void *p, int part, int parts) {
  const wall_job *a = p;
  const i64 nb = (a->th + a->R - 1) / a->R, tiles = a->R * a->base.tw, nxi = (a->wino + 2) * (a->wino + 2);
  for (i64 bi = part; bi < nb; bi += parts) {
    wband_job bj = a->base;
    bj.ty0 = bi * a->R;
    bj.Tb = (a->th - bj.ty0 < a->R ? a->th - bj.ty0 : a->R) * bj.tw;
    bj.V = a->mem[part];
    bj.M = a->mem[part] + nxi * bj.Cin * tiles;
    if (a->wino == 2) {
      wtrans_in_task(&bj, 0, 1), wgemm_task(&bj, 0, 1), wtrans_out_task(&bj, 0, 1);
    } else {
      wtrans43_in_task(&bj, 0, 1), wgemm43_task(&bj, 0, 1), wtrans43_out_task(&bj, 0, 1);
    }
  }
}

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec * 1e-6;
}

/*
 * out[B, Cout, H, W] = conv3x3(prologue(X)) + bias (+ Res), H = Hin or 2·Hin (MODE_UP2). `in_place`: out is
 * Res (the sum is added into it). Workspaces from the caller: P (Cin·(H+2)·(W+2) + 2 floats), wk
 * (9·Cout·Cin), band (Cout·R·(W+2)); R output rows per band. ms[4] += milliseconds of the fills, the weight
 * repack, the GEMMs (bias preset included) and the copies out. With wino = m ∈ {2, 4} (H and W multiples of m)
 * by Winograd F(m×m, 3×3) instead, ξ = (m + 2)² GEMMs: wk then holds ξ·Cout·Cin floats, band ξ·Cout·R·(W/m), V
 * ξ·Cin·R·(W/m), R counts tile rows (m output rows each), and ms[0] includes the input transform, ms[1] the weight
 * transform, ms[3] the output transform. Returns 0, or −1 when no BLAS is bound.
 */
int actvar_conv3x3(const float *X, i64 B, i64 Cin, i64 Hin, i64 Win, int mode, i64 groups, const float *gw,
                   const float *gb, double eps, const float *Wt, const float *bias, i64 Cout, const float *Res,
                   int in_place, float *out, float *P, float *wk, float *band, i64 R, float *V, int wino, double *ms) {
  if (!blas_sgemm) return -1;
  const int up = mode == MODE_UP2;
  const i64 H = up ? 2 * Hin : Hin, W = up ? 2 * Win : Win, Wp = W + 2, plane = (H + 2) * Wp;
  const int threads = actvar_pool_threads();
  double t0 = now_ms(), t1;
  if (wino == 2 || wino == 4) {
    /* Winograd F(m×m, 3×3), m = wino: wk holds U [ξ][Cout][Cin], band M [ξ][Cout][R·tw], V [ξ][Cin][R·tw]; R tile rows
     * per band; ξ = (m + 2)² */
    const i64 th = H / wino, tw = W / wino;
    const int nxi = (wino + 2) * (wino + 2);
    wtrans_job wj = {Wt, wk, Cout, Cin};
    pool_run(wino == 2 ? wtrans_task : wtrans43_task, &wj, threads);
    t1 = now_ms();
    ms[1] += t1 - t0;
    for (i64 b = 0; b < B; b++) {
      fill_job fj = {X + b * Cin * Hin * Win, P, Cin, Hin, Win, Wp, plane, mode == MODE_GN_SILU ? groups : Cin, mode, gw, gb, eps};
      const i64 units = mode == MODE_GN_SILU ? groups : Cin;
      pool_run(fill_task, &fj, units < threads ? (int)units : threads);
      t0 = now_ms();
      ms[0] += t0 - t1;
      const i64 nb = (th + R - 1) / R;
      if (threads > 1 && nb >= threads && !atomic_flag_test_and_set(&wscratch_busy)) {
        /* at least a band per thread: whole bands per thread (one barrier) */
        wall_job aj = {{P, V, wk, band, bias, in_place ? NULL : Res, out, Cin, Cout, Wp, plane, W, H * W, tw, 0, 0,
                        b * Cout * H * W, in_place}, th, R, wino, {0}};
        int ok = 1;
        for (int t = 0; t < threads && ok; t++) {
          aj.mem[t] = part_scratch_get(&wscratch, t, (size_t)(nxi * (Cin + Cout) * R * tw) * sizeof(float));
          ok = aj.mem[t] != NULL;
        }
        if (ok) pool_run(wall_task, &aj, threads);
        atomic_flag_clear(&wscratch_busy);
        if (ok) {
          t1 = now_ms();
          ms[2] += t1 - t0; /* transforms included */
          continue;
        }
      }
      for (i64 ty0 = 0; ty0 < th; ty0 += R) {
        const i64 rows = th - ty0 < R ? th - ty0 : R;
        wband_job bj = {P, V, wk, band, bias, in_place ? NULL : Res, out, Cin, Cout, Wp, plane, W, H * W, tw, ty0, rows * tw,
                        b * Cout * H * W, in_place};
        pool_run(wino == 2 ? wtrans_in_task : wtrans43_in_task, &bj, Cin < threads ? (int)Cin : threads);
        t1 = now_ms();
        ms[0] += t1 - t0;
        pool_run(wino == 2 ? wgemm_task : wgemm43_task, &bj, threads < nxi ? threads : nxi);
        t0 = now_ms();
        ms[2] += t0 - t1;
        pool_run(wino == 2 ? wtrans_out_task : wtrans43_out_task, &bj, Cout < threads ? (int)Cout : threads);
        t1 = now_ms();
        ms[3] += t1 - t0;
        t0 = t1;
      }
      t1 = now_ms();
    }
    return 0;
  }
  taps_job tj = {Wt, wk, Cout, Cin};
  pool_run(taps_task, &tj, threads);
  t1 = now_ms();
  ms[1] += t1 - t0;
  for (i64 b = 0; b < B; b++) {
    fill_job fj = {X + b * Cin * Hin * Win, P, Cin, Hin, Win, Wp, plane, mode == MODE_GN_SILU ? groups : Cin, mode, gw, gb, eps};
    const i64 units = mode == MODE_GN_SILU ? groups : Cin;
    pool_run(fill_task, &fj, units < threads ? (int)units : threads);
    P[Cin * plane] = 0; /* the last tap's GEMM reads two floats past the last plane */
    P[Cin * plane + 1] = 0;
    t0 = now_ms();
    ms[0] += t0 - t1;
    for (i64 y0 = 0; y0 < H; y0 += R) {
      const i64 rows = H - y0 < R ? H - y0 : R, N = rows * Wp;
      band_job bj = {band, bias, in_place ? NULL : Res, out, Cout, N, Wp, W, rows, (b * Cout * H + y0) * W, H * W, in_place, 0};
      const int bparts = Cout < threads ? (int)Cout : threads;
      pool_run(band_task, &bj, bparts);
      for (int k = 0; k < 9; k++) {
        const i64 off = (y0 + k / 3) * Wp + k % 3;
        actvar_sgemm(0, 0, (int)Cout, (int)N, (int)Cin, 1.0f, wk + k * Cout * Cin, (int)Cin, P + off, (int)plane, 1.0f, band,
                     (int)N);
      }
      t1 = now_ms();
      ms[2] += t1 - t0;
      bj.copy_out = 1;
      pool_run(band_task, &bj, bparts);
      t0 = now_ms();
      ms[3] += t0 - t1;
    }
    t1 = now_ms();
  }
  return 0;
}
