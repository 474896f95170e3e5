/*
 * actvar's own thread pool and the threaded sgemm built on it (part of the native kernels library,
 * see kernels.c and scripts/build-native.mjs).
 *
 * Why: with OpenBLAS's own threads, its pool thread keeps spinning on the second core after every
 * GEMM, so nothing else can use that core: not ActVAR's experts (grouped_ffn.c runs whole experts
 * on different cores), not the row kernels of inference (rows.c), not the few-row GEMMs of VAR's
 * first scales, which stream their weights better through small_gemm.c than through OpenBLAS's
 * packing (2–3.5× at 2–8 rows; docs/BENCHMARKS.md, `node dist/bench/gemm-threads.js`). So when this
 * pool is bound to the BLAS library, OpenBLAS is set to one thread and every sgemm is split here:
 * by columns when there are enough of them, else by rows, else not at all. For large GEMMs the split
 * is as fast as OpenBLAS's own threads (same benchmark).
 *
 * Results do not depend on the thread count: a part of C is computed by the same single-threaded
 * routine over the same k-loop as the whole would be (parts stay above OpenBLAS's small-matrix size,
 * see SPLIT_MIN_PART_MNK; the tests compare split and unsplit calls bit for bit), and the split of a
 * job is a function of its shape and the configured thread count only, never of timing.
 *
 * The pool: `threads − 1` workers plus the calling thread. A job is published by bumping a
 * generation counter; workers spin on it for a short while (≈ SPIN_NS, so back-to-back GEMMs of
 * one block do not pay a wake-up) and then sleep on a condition variable. The caller runs part 0
 * itself and spins until the workers are done. Only one job runs at a time; a second thread that
 * finds the pool busy (e.g. a worker_thread of the host) runs all parts itself, with the same result.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "threads.h"

#define SPIN_NS 2000000L /* 2 ms */

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ volatile("yield");
#endif
}

static long elapsed_ns(const struct timespec *t0) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (t.tv_sec - t0->tv_sec) * 1000000000L + (t.tv_nsec - t0->tv_nsec);
}

static struct {
  int threads;  /* parts per job, 1 = run in the caller */
  int started;  /* workers created so far (they are never stopped) */
  pthread_t tid[MAX_THREADS];
  atomic_uint gen;
  atomic_int pending;
  atomic_int sleepers;
  atomic_flag busy;
  task_fn fn;
  void *arg;
  int parts;
  pthread_mutex_t mu;
  pthread_cond_t cv;
} pool = {.threads = 1, .busy = ATOMIC_FLAG_INIT, .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

/* The generation each worker was created at: a worker must not read it when it starts running, as a
 * job published in between would then be skipped and its caller would wait for it forever. */
static unsigned start_gen[MAX_THREADS];

static void *worker_main(void *p) {
  const int me = (int)(intptr_t)p;
  unsigned seen = start_gen[me];
  for (;;) {
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    unsigned g;
    long k = 0;
    while ((g = atomic_load_explicit(&pool.gen, memory_order_acquire)) == seen) {
      cpu_relax();
      if ((++k & 255) == 0 && elapsed_ns(&t0) > SPIN_NS) {
        /* Sleep. The caller bumps gen before it reads sleepers (both sequentially consistent), so
         * either it sees us here and signals, or we see its new gen below and do not wait. */
        pthread_mutex_lock(&pool.mu);
        atomic_fetch_add(&pool.sleepers, 1);
        while (atomic_load(&pool.gen) == seen) pthread_cond_wait(&pool.cv, &pool.mu);
        atomic_fetch_sub(&pool.sleepers, 1);
        pthread_mutex_unlock(&pool.mu);
      }
    }
    seen = g;
    if (me < pool.parts) pool.fn(pool.arg, me, pool.parts);
    atomic_fetch_sub_explicit(&pool.pending, 1, memory_order_release);
  }
  return NULL;
}

/* The workers run this library's code until the process ends, so it must never be unmapped (the
 * host may dlclose it at exit): take a reference that dlclose cannot drop. */
static int pin_library(void) {
  Dl_info info;
  if (!dladdr((void *)&pin_library, &info) || !info.dli_fname) return -1;
  return dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE) ? 0 : -1;
}

/* Threads for later jobs (1 … MAX_THREADS); starts workers as needed. Returns the count in effect. */
int actvar_pool_set_threads(int n) {
  if (n < 1) n = 1;
  if (n > MAX_THREADS) n = MAX_THREADS;
  if (n > 1 && pool.started == 0 && pin_library() != 0) return pool.threads = 1;
  while (pool.started < n - 1) {
    start_gen[pool.started + 1] = atomic_load(&pool.gen);
    if (pthread_create(&pool.tid[pool.started], NULL, worker_main, (void *)(intptr_t)(pool.started + 1)) != 0) break;
    pthread_detach(pool.tid[pool.started]);
    pool.started++;
  }
  pool.threads = n <= pool.started + 1 ? n : pool.started + 1;
  return pool.threads;
}

int actvar_pool_threads(void) { return pool.threads; }

void pool_run(task_fn fn, void *arg, int parts) {
  if (parts <= 1 || pool.started == 0 || atomic_flag_test_and_set(&pool.busy)) {
    for (int i = 0; i < parts; i++) fn(arg, i, parts);
    return;
  }
  pool.fn = fn;
  pool.arg = arg;
  pool.parts = parts;
  atomic_store(&pool.pending, pool.started);
  atomic_fetch_add(&pool.gen, 1);
  if (atomic_load(&pool.sleepers) > 0) {
    pthread_mutex_lock(&pool.mu);
    pthread_cond_broadcast(&pool.cv);
    pthread_mutex_unlock(&pool.mu);
  }
  fn(arg, 0, parts);
  while (atomic_load_explicit(&pool.pending, memory_order_acquire) > 0) cpu_relax();
  atomic_flag_clear(&pool.busy);
}

void *part_scratch_get(part_scratch *s, int part, size_t bytes) {
  if (s->bytes[part] < bytes) {
    free(s->buf[part]);
    s->buf[part] = malloc(bytes);
    s->bytes[part] = s->buf[part] ? bytes : 0;
  }
  return s->buf[part];
}

/* ------------------------------------------------------------------------------------------------
 * threaded sgemm */

cblas_sgemm_fn blas_sgemm = NULL;

/* Bind cblas_sgemm of the BLAS library the host already loaded (`library`: the name or path it was
 * loaded from). Returns 0 on success, −1 if the library or symbol cannot be found. */
int actvar_pool_bind_sgemm(const char *library) {
  void *h = dlopen(library, RTLD_NOW | RTLD_NOLOAD);
  if (!h) h = dlopen(library, RTLD_NOW);
  if (!h) return -1;
  void *f = dlsym(h, "cblas_sgemm");
  if (!f) return -1;
  blas_sgemm = (cblas_sgemm_fn)f;
  return 0;
}

/* Few-row X·Wᵀ products go to small_gemm.c when M ≤ this (0 = never; settable for benchmarks). */
static int small_gemm_max_m = SMALL_GEMM_MAX_M;
int actvar_set_small_gemm_max_m(int m) { int prev = small_gemm_max_m; small_gemm_max_m = m; return prev; }

/* Smallest part worth a thread, in M·N·K. It also keeps every part of a split job above OpenBLAS's
 * "small matrix" size (M·N·K ≤ 100³, a different kernel with another summation order, used by its
 * SkylakeX sgemm in 0.3.21): a part then takes the same kernel as the whole job, so a split never
 * changes a result (test/native-threads.test.ts checks 1 vs 2 threads bit for bit). */
#define SPLIT_MIN_PART_MNK 1.05e6
/* Column parts are multiples of this (whole vector registers for the BLAS micro-kernels). */
#define COL_ALIGN 16
#define ROW_ALIGN 8

typedef struct {
  int ta, tb, M, N, K;
  float alpha, beta;
  const float *A, *B;
  float *C;
  int lda, ldb, ldc;
  int by_cols, align;
} gemm_job;

int64_t pool_part_start(int64_t n, int part, int parts, int align) {
  const int64_t per = ((n + parts - 1) / parts + align - 1) / align * align, s = per * part;
  return s < n ? s : n;
}

static void gemm_part(void *p, int part, int parts) {
  const gemm_job *j = p;
  const int total = j->by_cols ? j->N : j->M;
  const int s = (int)pool_part_start(total, part, parts, j->align), e = (int)pool_part_start(total, part + 1, parts, j->align);
  if (e <= s) return;
  const int ta = j->ta ? TRANS : NO_TRANS, tb = j->tb ? TRANS : NO_TRANS;
  if (j->by_cols) {
    /* columns [s, e) of C = op(A) · columns [s, e) of op(B) */
    const float *B = j->tb ? j->B + (size_t)s * j->ldb : j->B + s;
    blas_sgemm(ROW_MAJOR, ta, tb, j->M, e - s, j->K, j->alpha, j->A, j->lda, B, j->ldb, j->beta, j->C + s, j->ldc);
  } else {
    /* rows [s, e) of C = rows [s, e) of op(A) · op(B) */
    const float *A = j->ta ? j->A + s : j->A + (size_t)s * j->lda;
    blas_sgemm(ROW_MAJOR, ta, tb, e - s, j->N, j->K, j->alpha, A, j->lda, j->B, j->ldb, j->beta, j->C + (size_t)s * j->ldc, j->ldc);
  }
}

/* Size of the smallest of `parts` parts of n items (see pool_part_start). */
static int smallest_part(int n, int parts, int align) {
  int least = n;
  for (int p = 0; p < parts; p++) {
    const int len = (int)(pool_part_start(n, p + 1, parts, align) - pool_part_start(n, p, parts, align));
    if (len < least) least = len;
  }
  return least;
}

/* How a job is split for `threads` parts: 1 = columns, 0 = rows, −1 = not split. Each part reads
 * all of the operand that is not split, so the larger side is split (for inference, the weights' N). */
static int split_kind(int M, int N, int K, int threads) {
  if (threads <= 1) return -1;
  const int cols = (double)M * smallest_part(N, threads, COL_ALIGN) * K > SPLIT_MIN_PART_MNK;
  const int rows = (double)smallest_part(M, threads, ROW_ALIGN) * N * K > SPLIT_MIN_PART_MNK;
  if (cols && (N >= M || !rows)) return 1;
  return rows ? 0 : -1;
}

static int use_small_gemm(int ta, int tb, int M, int N, int K) { return !ta && tb && M <= small_gemm_max_m && N >= 4 && K >= 16; }

int sgemm_row_half(int ta, int tb, int M, int N, int K) {
  const int least = smallest_part(M, 2, ROW_ALIGN);
  if ((double)least * N * K <= SPLIT_MIN_PART_MNK || use_small_gemm(ta, tb, least, N, K)) return 0;
  return (int)pool_part_start(M, 1, 2, ROW_ALIGN);
}

/* actvar_sgemm in the calling thread only (the same kernel choice, so the same results). */
void sgemm_serial(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
                  float beta, float *C, int ldc) {
  if (use_small_gemm(ta, tb, M, N, K)) small_gemm(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, 1);
  else blas_sgemm(ROW_MAJOR, ta ? TRANS : NO_TRANS, tb ? TRANS : NO_TRANS, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* C = alpha·op(A)·op(B) + beta·C, row-major, as cblas_sgemm; split over the pool (see the header).
 * The caller has checked every argument (src/backend/openblas.ts). Returns −1 when unbound. */
int actvar_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
                 float beta, float *C, int ldc) {
  if (!blas_sgemm) return -1;
  if (use_small_gemm(ta, tb, M, N, K)) {
    small_gemm(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, (double)M * N * K < 2 * SPLIT_MIN_PART_MNK ? 1 : pool.threads);
    return 0;
  }
  const int kind = split_kind(M, N, K, pool.threads);
  if (kind < 0) {
    sgemm_serial(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return 0;
  }
  gemm_job j = {ta, tb, M, N, K, alpha, beta, A, B, C, lda, ldb, ldc, kind, kind ? COL_ALIGN : ROW_ALIGN};
  pool_run(gemm_part, &j, pool.threads);
  return 0;
}
