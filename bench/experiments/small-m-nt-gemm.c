/*
 * Experiment (docs/BENCHMARKS.md, issue #4; not part of actvar): a hand-written "NT" GEMM for few rows,
 * C[M, N] = A[M, K] · W[N, K]ᵀ (both operands K-contiguous: a tile of 4 rows of A × 4 rows of W accumulates
 * 16 vector dot products along K, no packing), split over N on pthreads. Compiled and timed against OpenBLAS
 * by small-m-nt-gemm.mjs.
 */
#include <stdint.h>
#include <string.h>
#include <pthread.h>
typedef int64_t i64;
#if defined(__AVX512F__)
#define VW 16
#else
#define VW 8
#endif
typedef float vf __attribute__((vector_size(VW * 4)));
static inline vf ldv(const float *p) { vf v; memcpy(&v, p, sizeof v); return v; }
static inline float hsum(vf v) { float s = 0; for (int i = 0; i < VW; i++) s += v[i]; return s; }

static void tile_4x4(const float *A, i64 lda, const float *W, i64 ldw, float *C, i64 ldc, i64 K, int beta) {
  const i64 Kv = K - K % VW;
  const float *a0 = A + 0 * lda;
  const float *a1 = A + 1 * lda;
  const float *a2 = A + 2 * lda;
  const float *a3 = A + 3 * lda;
  const float *w0 = W + 0 * ldw;
  const float *w1 = W + 1 * ldw;
  const float *w2 = W + 2 * ldw;
  const float *w3 = W + 3 * ldw;
  vf c00 = {0}, c01 = {0}, c02 = {0}, c03 = {0}, c10 = {0}, c11 = {0}, c12 = {0}, c13 = {0}, c20 = {0}, c21 = {0}, c22 = {0}, c23 = {0}, c30 = {0}, c31 = {0}, c32 = {0}, c33 = {0};
  for (i64 k = 0; k < Kv; k += VW) {
    const vf x0 = ldv(a0 + k), x1 = ldv(a1 + k), x2 = ldv(a2 + k), x3 = ldv(a3 + k);
    { const vf y = ldv(w0 + k); c00 += x0 * y; c10 += x1 * y; c20 += x2 * y; c30 += x3 * y; }
    { const vf y = ldv(w1 + k); c01 += x0 * y; c11 += x1 * y; c21 += x2 * y; c31 += x3 * y; }
    { const vf y = ldv(w2 + k); c02 += x0 * y; c12 += x1 * y; c22 += x2 * y; c32 += x3 * y; }
    { const vf y = ldv(w3 + k); c03 += x0 * y; c13 += x1 * y; c23 += x2 * y; c33 += x3 * y; }
  }
  { float s = hsum(c00); for (i64 k = Kv; k < K; k++) s += a0[k] * w0[k]; C[0 * ldc + 0] = beta ? C[0 * ldc + 0] + s : s; }
  { float s = hsum(c01); for (i64 k = Kv; k < K; k++) s += a0[k] * w1[k]; C[0 * ldc + 1] = beta ? C[0 * ldc + 1] + s : s; }
  { float s = hsum(c02); for (i64 k = Kv; k < K; k++) s += a0[k] * w2[k]; C[0 * ldc + 2] = beta ? C[0 * ldc + 2] + s : s; }
  { float s = hsum(c03); for (i64 k = Kv; k < K; k++) s += a0[k] * w3[k]; C[0 * ldc + 3] = beta ? C[0 * ldc + 3] + s : s; }
  { float s = hsum(c10); for (i64 k = Kv; k < K; k++) s += a1[k] * w0[k]; C[1 * ldc + 0] = beta ? C[1 * ldc + 0] + s : s; }
  { float s = hsum(c11); for (i64 k = Kv; k < K; k++) s += a1[k] * w1[k]; C[1 * ldc + 1] = beta ? C[1 * ldc + 1] + s : s; }
  { float s = hsum(c12); for (i64 k = Kv; k < K; k++) s += a1[k] * w2[k]; C[1 * ldc + 2] = beta ? C[1 * ldc + 2] + s : s; }
  { float s = hsum(c13); for (i64 k = Kv; k < K; k++) s += a1[k] * w3[k]; C[1 * ldc + 3] = beta ? C[1 * ldc + 3] + s : s; }
  { float s = hsum(c20); for (i64 k = Kv; k < K; k++) s += a2[k] * w0[k]; C[2 * ldc + 0] = beta ? C[2 * ldc + 0] + s : s; }
  { float s = hsum(c21); for (i64 k = Kv; k < K; k++) s += a2[k] * w1[k]; C[2 * ldc + 1] = beta ? C[2 * ldc + 1] + s : s; }
  { float s = hsum(c22); for (i64 k = Kv; k < K; k++) s += a2[k] * w2[k]; C[2 * ldc + 2] = beta ? C[2 * ldc + 2] + s : s; }
  { float s = hsum(c23); for (i64 k = Kv; k < K; k++) s += a2[k] * w3[k]; C[2 * ldc + 3] = beta ? C[2 * ldc + 3] + s : s; }
  { float s = hsum(c30); for (i64 k = Kv; k < K; k++) s += a3[k] * w0[k]; C[3 * ldc + 0] = beta ? C[3 * ldc + 0] + s : s; }
  { float s = hsum(c31); for (i64 k = Kv; k < K; k++) s += a3[k] * w1[k]; C[3 * ldc + 1] = beta ? C[3 * ldc + 1] + s : s; }
  { float s = hsum(c32); for (i64 k = Kv; k < K; k++) s += a3[k] * w2[k]; C[3 * ldc + 2] = beta ? C[3 * ldc + 2] + s : s; }
  { float s = hsum(c33); for (i64 k = Kv; k < K; k++) s += a3[k] * w3[k]; C[3 * ldc + 3] = beta ? C[3 * ldc + 3] + s : s; }
}
static void tile_2x4(const float *A, i64 lda, const float *W, i64 ldw, float *C, i64 ldc, i64 K, int beta) {
  const i64 Kv = K - K % VW;
  const float *a0 = A + 0 * lda;
  const float *a1 = A + 1 * lda;
  const float *w0 = W + 0 * ldw;
  const float *w1 = W + 1 * ldw;
  const float *w2 = W + 2 * ldw;
  const float *w3 = W + 3 * ldw;
  vf c00 = {0}, c01 = {0}, c02 = {0}, c03 = {0}, c10 = {0}, c11 = {0}, c12 = {0}, c13 = {0};
  for (i64 k = 0; k < Kv; k += VW) {
    const vf x0 = ldv(a0 + k), x1 = ldv(a1 + k);
    { const vf y = ldv(w0 + k); c00 += x0 * y; c10 += x1 * y; }
    { const vf y = ldv(w1 + k); c01 += x0 * y; c11 += x1 * y; }
    { const vf y = ldv(w2 + k); c02 += x0 * y; c12 += x1 * y; }
    { const vf y = ldv(w3 + k); c03 += x0 * y; c13 += x1 * y; }
  }
  { float s = hsum(c00); for (i64 k = Kv; k < K; k++) s += a0[k] * w0[k]; C[0 * ldc + 0] = beta ? C[0 * ldc + 0] + s : s; }
  { float s = hsum(c01); for (i64 k = Kv; k < K; k++) s += a0[k] * w1[k]; C[0 * ldc + 1] = beta ? C[0 * ldc + 1] + s : s; }
  { float s = hsum(c02); for (i64 k = Kv; k < K; k++) s += a0[k] * w2[k]; C[0 * ldc + 2] = beta ? C[0 * ldc + 2] + s : s; }
  { float s = hsum(c03); for (i64 k = Kv; k < K; k++) s += a0[k] * w3[k]; C[0 * ldc + 3] = beta ? C[0 * ldc + 3] + s : s; }
  { float s = hsum(c10); for (i64 k = Kv; k < K; k++) s += a1[k] * w0[k]; C[1 * ldc + 0] = beta ? C[1 * ldc + 0] + s : s; }
  { float s = hsum(c11); for (i64 k = Kv; k < K; k++) s += a1[k] * w1[k]; C[1 * ldc + 1] = beta ? C[1 * ldc + 1] + s : s; }
  { float s = hsum(c12); for (i64 k = Kv; k < K; k++) s += a1[k] * w2[k]; C[1 * ldc + 2] = beta ? C[1 * ldc + 2] + s : s; }
  { float s = hsum(c13); for (i64 k = Kv; k < K; k++) s += a1[k] * w3[k]; C[1 * ldc + 3] = beta ? C[1 * ldc + 3] + s : s; }
}
static void tile_1x4(const float *A, i64 lda, const float *W, i64 ldw, float *C, i64 ldc, i64 K, int beta) {
  const i64 Kv = K - K % VW;
  const float *a0 = A + 0 * lda;
  const float *w0 = W + 0 * ldw;
  const float *w1 = W + 1 * ldw;
  const float *w2 = W + 2 * ldw;
  const float *w3 = W + 3 * ldw;
  vf c00 = {0}, c01 = {0}, c02 = {0}, c03 = {0};
  for (i64 k = 0; k < Kv; k += VW) {
    const vf x0 = ldv(a0 + k);
    { const vf y = ldv(w0 + k); c00 += x0 * y; }
    { const vf y = ldv(w1 + k); c01 += x0 * y; }
    { const vf y = ldv(w2 + k); c02 += x0 * y; }
    { const vf y = ldv(w3 + k); c03 += x0 * y; }
  }
  { float s = hsum(c00); for (i64 k = Kv; k < K; k++) s += a0[k] * w0[k]; C[0 * ldc + 0] = beta ? C[0 * ldc + 0] + s : s; }
  { float s = hsum(c01); for (i64 k = Kv; k < K; k++) s += a0[k] * w1[k]; C[0 * ldc + 1] = beta ? C[0 * ldc + 1] + s : s; }
  { float s = hsum(c02); for (i64 k = Kv; k < K; k++) s += a0[k] * w2[k]; C[0 * ldc + 2] = beta ? C[0 * ldc + 2] + s : s; }
  { float s = hsum(c03); for (i64 k = Kv; k < K; k++) s += a0[k] * w3[k]; C[0 * ldc + 3] = beta ? C[0 * ldc + 3] + s : s; }
}
static void tile_4x1(const float *A, i64 lda, const float *W, i64 ldw, float *C, i64 ldc, i64 K, int beta) {
  const i64 Kv = K - K % VW;
  const float *a0 = A + 0 * lda;
  const float *a1 = A + 1 * lda;
  const float *a2 = A + 2 * lda;
  const float *a3 = A + 3 * lda;
  const float *w0 = W + 0 * ldw;
  vf c00 = {0}, c10 = {0}, c20 = {0}, c30 = {0};
  for (i64 k = 0; k < Kv; k += VW) {
    const vf x0 = ldv(a0 + k), x1 = ldv(a1 + k), x2 = ldv(a2 + k), x3 = ldv(a3 + k);
    { const vf y = ldv(w0 + k); c00 += x0 * y; c10 += x1 * y; c20 += x2 * y; c30 += x3 * y; }
  }
  { float s = hsum(c00); for (i64 k = Kv; k < K; k++) s += a0[k] * w0[k]; C[0 * ldc + 0] = beta ? C[0 * ldc + 0] + s : s; }
  { float s = hsum(c10); for (i64 k = Kv; k < K; k++) s += a1[k] * w0[k]; C[1 * ldc + 0] = beta ? C[1 * ldc + 0] + s : s; }
  { float s = hsum(c20); for (i64 k = Kv; k < K; k++) s += a2[k] * w0[k]; C[2 * ldc + 0] = beta ? C[2 * ldc + 0] + s : s; }
  { float s = hsum(c30); for (i64 k = Kv; k < K; k++) s += a3[k] * w0[k]; C[3 * ldc + 0] = beta ? C[3 * ldc + 0] + s : s; }
}
static void tile_2x1(const float *A, i64 lda, const float *W, i64 ldw, float *C, i64 ldc, i64 K, int beta) {
  const i64 Kv = K - K % VW;
  const float *a0 = A + 0 * lda;
  const float *a1 = A + 1 * lda;
  const float *w0 = W + 0 * ldw;
  vf c00 = {0}, c10 = {0};
  for (i64 k = 0; k < Kv; k += VW) {
    const vf x0 = ldv(a0 + k), x1 = ldv(a1 + k);
    { const vf y = ldv(w0 + k); c00 += x0 * y; c10 += x1 * y; }
  }
  { float s = hsum(c00); for (i64 k = Kv; k < K; k++) s += a0[k] * w0[k]; C[0 * ldc + 0] = beta ? C[0 * ldc + 0] + s : s; }
  { float s = hsum(c10); for (i64 k = Kv; k < K; k++) s += a1[k] * w0[k]; C[1 * ldc + 0] = beta ? C[1 * ldc + 0] + s : s; }
}
static void tile_1x1(const float *A, i64 lda, const float *W, i64 ldw, float *C, i64 ldc, i64 K, int beta) {
  const i64 Kv = K - K % VW;
  const float *a0 = A + 0 * lda;
  const float *w0 = W + 0 * ldw;
  vf c00 = {0};
  for (i64 k = 0; k < Kv; k += VW) {
    const vf x0 = ldv(a0 + k);
    { const vf y = ldv(w0 + k); c00 += x0 * y; }
  }
  { float s = hsum(c00); for (i64 k = Kv; k < K; k++) s += a0[k] * w0[k]; C[0 * ldc + 0] = beta ? C[0 * ldc + 0] + s : s; }
}

static void nt_range(const float *A, i64 lda, const float *W, i64 ldw, float *C, i64 ldc, i64 M, i64 n0, i64 n1, i64 K, int beta) {
  i64 n = n0;
  for (; n + 4 <= n1; n += 4) {
    const float *w = W + n * ldw;
    i64 m = 0;
    for (; m + 4 <= M; m += 4) tile_4x4(A + m * lda, lda, w, ldw, C + m * ldc + n, ldc, K, beta);
    for (; m + 2 <= M; m += 2) tile_2x4(A + m * lda, lda, w, ldw, C + m * ldc + n, ldc, K, beta);
    for (; m < M; m++) tile_1x4(A + m * lda, lda, w, ldw, C + m * ldc + n, ldc, K, beta);
  }
  for (; n < n1; n++) {
    const float *w = W + n * ldw;
    i64 m = 0;
    for (; m + 4 <= M; m += 4) tile_4x1(A + m * lda, lda, w, ldw, C + m * ldc + n, ldc, K, beta);
    for (; m + 2 <= M; m += 2) tile_2x1(A + m * lda, lda, w, ldw, C + m * ldc + n, ldc, K, beta);
    for (; m < M; m++) tile_1x1(A + m * lda, lda, w, ldw, C + m * ldc + n, ldc, K, beta);
  }
}

typedef struct { const float *A; i64 lda; const float *W; i64 ldw; float *C; i64 ldc, M, n0, n1, K; int beta; } job_t;
static void *run_job(void *p) { job_t *j = p; nt_range(j->A, j->lda, j->W, j->ldw, j->C, j->ldc, j->M, j->n0, j->n1, j->K, j->beta); return 0; }

void sgemm_nt(const float *A, i64 lda, const float *W, i64 ldw, float *C, i64 ldc, i64 M, i64 N, i64 K, int beta, int threads) {
  if (threads < 2 || N < 64) { nt_range(A, lda, W, ldw, C, ldc, M, 0, N, K, beta); return; }
  if (threads > 16) threads = 16;
  pthread_t th[16]; job_t jobs[16];
  i64 per = ((N + threads - 1) / threads + 3) & ~(i64)3;
  int started = 0;
  for (int t = 0; t < threads; t++) {
    i64 a = t * per, b = a + per < N ? a + per : N;
    jobs[t] = (job_t){A, lda, W, ldw, C, ldc, M, a < N ? a : N, b, K, beta};
  }
  for (int t = 1; t < threads; t++) if (pthread_create(&th[t], 0, run_job, &jobs[t]) == 0) started |= 1 << t; else run_job(&jobs[t]);
  run_job(&jobs[0]);
  for (int t = 1; t < threads; t++) if (started & (1 << t)) pthread_join(th[t], 0);
}
