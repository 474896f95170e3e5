/*
 * Experiment (docs/BENCHMARKS.md, issue #4; not part of actvar): a hand-written "NT" GEMM for few rows,
 * C[M, N] = A[M, K] · W[N, K]ᵀ (both operands K-contiguous: a tile of 4 rows of A × 4 rows of W accumulates
 * 16 vector dot products along K, no packing; single dot products at the edges), split over N on pthreads. Compiled and timed against OpenBLAS
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

/* C[0..4) × [0..4) (+)= A rows 0..3 · W rows 0..3 over all K: 16 vector accumulators. */
static void tile_4x4(const float *A, i64 lda, const float *W, i64 ldw, float *C, i64 ldc, i64 K, int beta) {
  const i64 Kv = K - K % VW;
  const float *a0 = A, *a1 = A + lda, *a2 = A + 2 * lda, *a3 = A + 3 * lda;
  const float *w0 = W, *w1 = W + ldw, *w2 = W + 2 * ldw, *w3 = W + 3 * ldw;
  vf c00 = {0}, c01 = {0}, c02 = {0}, c03 = {0}, c10 = {0}, c11 = {0}, c12 = {0}, c13 = {0};
  vf c20 = {0}, c21 = {0}, c22 = {0}, c23 = {0}, c30 = {0}, c31 = {0}, c32 = {0}, c33 = {0};
  for (i64 k = 0; k < Kv; k += VW) {
    const vf x0 = ldv(a0 + k), x1 = ldv(a1 + k), x2 = ldv(a2 + k), x3 = ldv(a3 + k);
    vf y = ldv(w0 + k); c00 += x0 * y; c10 += x1 * y; c20 += x2 * y; c30 += x3 * y;
    y = ldv(w1 + k); c01 += x0 * y; c11 += x1 * y; c21 += x2 * y; c31 += x3 * y;
    y = ldv(w2 + k); c02 += x0 * y; c12 += x1 * y; c22 += x2 * y; c32 += x3 * y;
    y = ldv(w3 + k); c03 += x0 * y; c13 += x1 * y; c23 += x2 * y; c33 += x3 * y;
  }
  const vf acc[16] = {c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23, c30, c31, c32, c33};
  for (int i = 0; i < 4; i++) for (int j = 0; j < 4; j++) {
    float s = hsum(acc[4 * i + j]);
    for (i64 k = Kv; k < K; k++) s += A[i * lda + k] * W[j * ldw + k];
    C[i * ldc + j] = beta ? C[i * ldc + j] + s : s;
  }
}

/* One row of A against one row of W (the edges). */
static void tile_1x1(const float *A, const float *W, float *C, i64 K, int beta) {
  const i64 Kv = K - K % VW;
  vf c = {0};
  for (i64 k = 0; k < Kv; k += VW) c += ldv(A + k) * ldv(W + k);
  float s = hsum(c);
  for (i64 k = Kv; k < K; k++) s += A[k] * W[k];
  *C = beta ? *C + s : s;
}

static void nt_range(const float *A, i64 lda, const float *W, i64 ldw, float *C, i64 ldc, i64 M, i64 n0, i64 n1, i64 K, int beta) {
  const i64 M4 = M - M % 4;
  i64 n = n0;
  for (; n + 4 <= n1; n += 4)
    for (i64 m = 0; m < M4; m += 4) tile_4x4(A + m * lda, lda, W + n * ldw, ldw, C + m * ldc + n, ldc, K, beta);
  /* the edges: rows past the last 4-row block (all columns), columns past the last 4-column block */
  for (i64 m = M4; m < M; m++) for (i64 j = n0; j < n1; j++) tile_1x1(A + m * lda, W + j * ldw, C + m * ldc + j, K, beta);
  for (i64 m = 0; m < M4; m++) for (i64 j = n; j < n1; j++) tile_1x1(A + m * lda, W + j * ldw, C + m * ldc + j, K, beta);
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
