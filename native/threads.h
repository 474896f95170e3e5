/* The thread pool and the bound BLAS sgemm (threads.c), shared by the kernels that use them. */
#ifndef ACTVAR_THREADS_H
#define ACTVAR_THREADS_H

#include <stddef.h>
#include <stdint.h>

#define MAX_THREADS 64

typedef void (*task_fn)(void *arg, int part, int parts);

/* Run fn(arg, part, parts) for every part in [0, parts): in parallel on the pool when it is free,
 * else all in the calling thread. Returns when every part is done. */
void pool_run(task_fn fn, void *arg, int parts);

/* Start of part `part` of n items split into `parts` parts for the pool: each part a multiple of
 * `align` items (the last takes the rest, later ones may be empty). Part `parts` starts at n. */
int64_t pool_part_start(int64_t n, int part, int parts, int align);

/* Per-part scratch memory that a pool kernel keeps between calls (one set per kernel, guarded by the
 * kernel's own in-use flag). */
typedef struct {
  void *buf[MAX_THREADS];
  size_t bytes[MAX_THREADS];
} part_scratch;

/* At least `bytes` of part `part`'s scratch (grown when too small; old contents not kept), or NULL when
 * memory ran out. */
void *part_scratch_get(part_scratch *s, int part, size_t bytes);

/* Threads of the pool (calling thread included) in effect for the next job. */
int actvar_pool_threads(void);

typedef void (*cblas_sgemm_fn)(int order, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                               const float *B, int ldb, float beta, float *C, int ldc);
/* cblas_sgemm of the host's BLAS (single-threaded while the pool is in use), or NULL before
 * actvar_pool_bind_sgemm. */
extern cblas_sgemm_fn blas_sgemm;

/* The sgemm of actvar_sgemm (the few-row kernel or BLAS, chosen by shape) in the calling thread. */
void sgemm_serial(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
                  float beta, float *C, int ldc);

/* Where an M-row sgemm may be cut in two row ranges that sgemm_serial_rows computes exactly as the
 * whole job is computed (a bound between the row parts of its plan, threads.c): the first row of the
 * second range, or 0 when the job is not split by rows. */
int sgemm_row_cut(int ta, int tb, int M, int N, int K);

/* Rows [r0, r1) of the M-row job of sgemm_serial, computed as that job computes them; r0 and r1 are 0,
 * M or a cut of sgemm_row_cut. A and C point at row r0 of op(A) and of C. */
void sgemm_serial_rows(int ta, int tb, int M, int N, int K, int r0, int r1, float alpha, const float *A, int lda,
                       const float *B, int ldb, float beta, float *C, int ldc);

enum { ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112 };

/* C = alpha·X·Wᵀ + beta·C for few rows (small_gemm.c), split over `parts` threads of the pool. */
#define SMALL_GEMM_MAX_M 72
void small_gemm(int M, int N, int K, float alpha, const float *X, int ldx, const float *W, int ldw, float beta, float *C,
                int ldc, int parts);

#endif
