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

/* The parts of the sgemm of actvar_sgemm / sgemm_serial (threads.c, plan_of): how many (1 when it is
 * not split), the rows [r0, r1) and columns [c0, c1) of C that part `part` computes, and that part
 * alone, computed exactly as the whole job computes it (for an unsplit job, part 0 is the job). */
int sgemm_parts(int ta, int tb, int M, int N, int K);
void sgemm_part_bounds(int ta, int tb, int M, int N, int K, int part, int *r0, int *r1, int *c0, int *c1);
void sgemm_serial_part(int ta, int tb, int M, int N, int K, int part, float alpha, const float *A, int lda, const float *B,
                       int ldb, float beta, float *C, int ldc);

enum { ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112 };

/* C = alpha·X·Wᵀ + beta·C for few rows (small_gemm.c), split over `parts` threads of the pool. */
#define SMALL_GEMM_MAX_M 72
void small_gemm(int M, int N, int K, float alpha, const float *X, int ldx, const float *W, int ldw, float beta, float *C,
                int ldc, int parts);

#endif
