/*
 * C = alpha·X·Wᵀ + beta·C for few rows of X (M ≤ SMALL_GEMM_MAX_M): the linear layers of VAR's first
 * scales (2 … 32 rows against 1024 × 4096 weights). There a GEMM is bound by reading W once from
 * memory, and BLAS libraries, which first copy ("pack") W into a blocked layout, reach a third of the
 * memory bandwidth (docs/BENCHMARKS.md). This kernel streams W once, four rows at a time, and keeps
 * the rows of X in cache: each group of four W rows is dotted with every X row straight from W's own
 * layout.
 *
 * Every output element is one dot product summed the same way (16 lanes over k, k ascending within a
 * lane, then a fixed tree over the lanes), whatever M, the thread count or the part of the job it falls
 * in, so splitting the job over threads never changes a result.
 */
#include <string.h>

#include "kernel.h"
#include "threads.h"

/* The dot products may use fused multiply-adds (this file only; the library is otherwise built with
 * -ffp-contract=off so that AdamW matches the TypeScript bit for bit). */
#pragma GCC optimize("fp-contract=fast")

typedef float v16 __attribute__((vector_size(64)));
typedef float v16u __attribute__((vector_size(64), aligned(4)));

#define load16(p) (*(const v16u *)(p))

/* Fixed-order sum of the 16 lanes, then the k tail (k ≥ K16) in order. */
static inline __attribute__((always_inline)) float finish(const v16 *a, const float *x, const float *w, int K16, int K) {
  float h[8];
  for (int i = 0; i < 8; i++) h[i] = (*a)[i] + (*a)[i + 8];
  for (int i = 0; i < 4; i++) h[i] = h[i] + h[i + 4];
  float s = (h[0] + h[2]) + (h[1] + h[3]);
  for (int k = K16; k < K; k++) s += x[k] * w[k];
  return s;
}

static inline __attribute__((always_inline)) void store(float *c, float acc, float alpha, float beta) {
  *c = beta == 0.0f ? alpha * acc : alpha * acc + beta * *c;
}

typedef struct {
  int M, N, K;
  float alpha, beta;
  const float *X, *W;
  float *C;
  int ldx, ldw, ldc;
} small_job;

/* Columns [n0, n1) of C: W rows four at a time, each group against X rows four at a time (16 accumulators). */
KERNEL static void small_gemm_cols(const small_job *j, int n0, int n1) {
  const int M = j->M, K = j->K, K16 = K & ~15;
  int n = n0;
  for (; n + 4 <= n1; n += 4) {
    const float *w0 = j->W + (int64_t)n * j->ldw, *w1 = w0 + j->ldw, *w2 = w1 + j->ldw, *w3 = w2 + j->ldw;
    int m = 0;
    for (; m + 4 <= M; m += 4) {
      const float *x0 = j->X + (int64_t)m * j->ldx, *x1 = x0 + j->ldx, *x2 = x1 + j->ldx, *x3 = x2 + j->ldx;
      v16 a[4][4] = {{{0}}};
      for (int k = 0; k < K16; k += 16) {
        const v16 b0 = load16(w0 + k), b1 = load16(w1 + k), b2 = load16(w2 + k), b3 = load16(w3 + k);
        v16 p = load16(x0 + k);
        a[0][0] += p * b0; a[0][1] += p * b1; a[0][2] += p * b2; a[0][3] += p * b3;
        p = load16(x1 + k);
        a[1][0] += p * b0; a[1][1] += p * b1; a[1][2] += p * b2; a[1][3] += p * b3;
        p = load16(x2 + k);
        a[2][0] += p * b0; a[2][1] += p * b1; a[2][2] += p * b2; a[2][3] += p * b3;
        p = load16(x3 + k);
        a[3][0] += p * b0; a[3][1] += p * b1; a[3][2] += p * b2; a[3][3] += p * b3;
      }
      const float *xs[4] = {x0, x1, x2, x3}, *ws[4] = {w0, w1, w2, w3};
      for (int r = 0; r < 4; r++) {
        float *c = j->C + (int64_t)(m + r) * j->ldc + n;
        for (int q = 0; q < 4; q++) store(c + q, finish(&a[r][q], xs[r], ws[q], K16, K), j->alpha, j->beta);
      }
    }
    for (; m < M; m++) {
      const float *x0 = j->X + (int64_t)m * j->ldx;
      v16 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
      for (int k = 0; k < K16; k += 16) {
        const v16 p = load16(x0 + k);
        a0 += p * load16(w0 + k); a1 += p * load16(w1 + k); a2 += p * load16(w2 + k); a3 += p * load16(w3 + k);
      }
      float *c0 = j->C + (int64_t)m * j->ldc + n;
      store(c0 + 0, finish(&a0, x0, w0, K16, K), j->alpha, j->beta);
      store(c0 + 1, finish(&a1, x0, w1, K16, K), j->alpha, j->beta);
      store(c0 + 2, finish(&a2, x0, w2, K16, K), j->alpha, j->beta);
      store(c0 + 3, finish(&a3, x0, w3, K16, K), j->alpha, j->beta);
    }
  }
  for (; n < n1; n++) {
    const float *w0 = j->W + (int64_t)n * j->ldw;
    for (int m = 0; m < M; m++) {
      const float *x0 = j->X + (int64_t)m * j->ldx;
      v16 a0 = {0};
      for (int k = 0; k < K16; k += 16) a0 += load16(x0 + k) * load16(w0 + k);
      store(j->C + (int64_t)m * j->ldc + n, finish(&a0, x0, w0, K16, K), j->alpha, j->beta);
    }
  }
}

static void small_part(void *p, int part, int parts) {
  const small_job *j = p;
  /* parts of whole 4-row groups of W */
  const int n0 = (int)pool_part_start(j->N, part, parts, 4), n1 = (int)pool_part_start(j->N, part + 1, parts, 4);
  if (n0 < n1) small_gemm_cols(j, n0, n1);
}

/* C (M × N, ldc) = alpha·X·Wᵀ + beta·C with X M × K (ldx), W N × K (ldw); split over `parts` threads. */
void small_gemm(int M, int N, int K, float alpha, const float *X, int ldx, const float *W, int ldw, float beta, float *C,
                int ldc, int parts) {
  small_job j = {M, N, K, alpha, beta, X, W, C, ldx, ldw, ldc};
  pool_run(small_part, &j, parts);
}
