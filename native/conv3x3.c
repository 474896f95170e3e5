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

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec * 1e-6;
}

/*
 * out[B, Cout, H, W] = conv3x3(prologue(X)) + bias (+ Res), H = Hin or 2·Hin (MODE_UP2). `in_place`: out is
 * Res (the sum is added into it). Workspaces from the caller: P (Cin·(H+2)·(W+2) + 2 floats), wk
 * (9·Cout·Cin), band (Cout·R·(W+2)); R output rows per band. ms[4] += milliseconds of the fills, the weight
 * repack, the GEMMs (bias preset included) and the copies out. Returns 0, or −1 when no BLAS is bound.
 */
int actvar_conv3x3(const float *X, i64 B, i64 Cin, i64 Hin, i64 Win, int mode, i64 groups, const float *gw,
                   const float *gb, double eps, const float *Wt, const float *bias, i64 Cout, const float *Res,
                   int in_place, float *out, float *P, float *wk, float *band, i64 R, double *ms) {
  if (!blas_sgemm) return -1;
  const int up = mode == MODE_UP2;
  const i64 H = up ? 2 * Hin : Hin, W = up ? 2 * Win : Win, Wp = W + 2, plane = (H + 2) * Wp;
  const int threads = actvar_pool_threads();
  double t0 = now_ms(), t1;
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
