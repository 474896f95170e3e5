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
 * Results do not depend on the thread count: a split job is cut into parts by its shape alone (and a
 * per-process part count, `split_parts`: the CPUs, not the threads), and every path computes exactly
 * those parts, each with one single-threaded BLAS call — on one thread one after the other (see
 * plan_of and the rule above it; the tests compare 1, 2 and 3 threads bit for bit). Which thread
 * runs a part never matters, and nothing depends on timing.
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
#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

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

/* Few-row X·Wᵀ products go to small_gemm.c when M ≤ this (0 = never; settable for benchmarks). */
static int small_gemm_max_m = SMALL_GEMM_MAX_M;
int actvar_set_small_gemm_max_m(int m) { int prev = small_gemm_max_m; small_gemm_max_m = m; return prev; }

/*
 * The rule that makes results independent of the thread count: a split job is cut into parts by its
 * shape and `split_parts` only, never by the thread count, and every path — the pool on any number
 * of threads, sgemm_serial, the grouped FFN and the attention — computes exactly those parts, each
 * with one single-threaded BLAS call (on one thread they run one after the other).
 *
 * Why not "the whole job on one thread, one part per thread on several": a BLAS call on a part of C
 * is not bit-identical to the same elements of a call on the whole. OpenBLAS 0.3.21 with its Haswell
 * sgemm kernel (OPENBLAS_CORETYPE=Haswell; Zen uses it too) shows it (row-major C = op(A)·op(B) is
 * OpenBLAS's column-major Cᵀ, so our columns are its M, our rows its N):
 *  - its level-3 driver cuts M into blocks of GEMM_P = 320 (the last two of them halved, multiples of
 *    GEMM_UNROLL_M = 8) and, in the first M block only, N into kernel calls of 3·GEMM_UNROLL_N = 12;
 *  - the kernel (sgemm_kernel_8x4_haswell_2.c) computes a 12-column strip in 16-row steps staggered
 *    between its two 6-column halves, with 8-row head and tail steps that sum even and odd k in two
 *    accumulators, and its 4-column strips in that even/odd way too; other steps sum k in order.
 * So an element's summation order depends on where the call's blocks start and end: cutting the
 * columns anywhere but on OpenBLAS's own block bounds changes results, and even there it does when
 * the row count is 8–11 mod 12 (no column cut of a 44 × 1280 × 256 job is exact); rows cut on
 * multiples of 12 are. Measured with cblas_sgemm on the two parts vs the whole, every cut position:
 * bench/experiments/sgemm-part-bits.c.
 * With the SkylakeX kernel (Cooperlake too), column cuts at 1–8 mod 16 are not exact, and parts at or
 * below OpenBLAS's small-matrix size (M·N·K ≤ 100³) take another kernel. All of these are internals of
 * one BLAS version and core type; parts fixed by the shape need none of them.
 */
static int split_parts = 0; /* 0 until bound: then the CPUs this process may use, 2 … MAX_THREADS */

static int cpus_available(void) {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) return CPU_COUNT(&set);
  const long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}

/* Parts of a split sgemm (at least 2, so that the split is exercised on a single CPU too); 0 = the
 * default above. For tests and benchmarks; returns the previous count. Results depend on it. */
int actvar_set_split_parts(int parts) {
  const int prev = split_parts;
  if (parts <= 0) parts = cpus_available();
  split_parts = parts < 2 ? 2 : parts > MAX_THREADS ? MAX_THREADS : parts;
  return prev;
}

/* Bind cblas_sgemm of the BLAS library the host already loaded (`library`: the name or path it was
 * loaded from). Returns 0 on success, −1 if the library or symbol cannot be found. */
int actvar_pool_bind_sgemm(const char *library) {
  void *h = dlopen(library, RTLD_NOW | RTLD_NOLOAD);
  if (!h) h = dlopen(library, RTLD_NOW);
  if (!h) return -1;
  void *f = dlsym(h, "cblas_sgemm");
  if (!f) return -1;
  blas_sgemm = (cblas_sgemm_fn)f;
  if (split_parts == 0) actvar_set_split_parts(0);
  return 0;
}

/* Smallest part worth a thread, in M·N·K (above OpenBLAS's small-matrix size, see above). */
#define SPLIT_MIN_PART_MNK 1.05e6
/* Column parts are multiples of this, row parts of ROW_ALIGN (whole vector registers and register
 * blocks of the BLAS micro-kernels: for speed; exactness comes from the fixed parts). */
#define COL_ALIGN 16
#define ROW_ALIGN 8

/* How an sgemm is computed: by the few-row kernel, as one BLAS call, or in `parts` column or row parts. */
enum { PLAN_SMALL = 2, PLAN_COLS = 1, PLAN_ROWS = 0, PLAN_WHOLE = -1 };
typedef struct {
  int kind, parts;
} gemm_plan;

typedef struct {
  int ta, tb, M, N, K;
  float alpha, beta;
  const float *A, *B;
  float *C;
  int lda, ldb, ldc;
  gemm_plan plan;
} gemm_job;

int64_t pool_part_start(int64_t n, int part, int parts, int align) {
  const int64_t per = ((n + parts - 1) / parts + align - 1) / align * align, s = per * part;
  return s < n ? s : n;
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

static int use_small_gemm(int ta, int tb, int M, int N, int K) { return !ta && tb && M <= small_gemm_max_m && N >= 4 && K >= 16; }

/* The plan of a job: a function of its shape, the few-row limit and split_parts, never of the thread
 * count. Split into the most parts (≤ split_parts) whose smallest is worth a thread; each part reads
 * all of the operand that is not split, so the larger side is split (for inference, the weights' N). */
static gemm_plan plan_of(int ta, int tb, int M, int N, int K) {
  if (use_small_gemm(ta, tb, M, N, K)) return (gemm_plan){PLAN_SMALL, 1};
  if ((double)M * N * K <= 2 * SPLIT_MIN_PART_MNK) return (gemm_plan){PLAN_WHOLE, 1};
  for (int p = split_parts; p >= 2; p--) {
    const int cols = (double)M * smallest_part(N, p, COL_ALIGN) * K > SPLIT_MIN_PART_MNK;
    const int rows = (double)smallest_part(M, p, ROW_ALIGN) * N * K > SPLIT_MIN_PART_MNK;
    if (cols && (N >= M || !rows)) return (gemm_plan){PLAN_COLS, p};
    if (rows) return (gemm_plan){PLAN_ROWS, p};
  }
  return (gemm_plan){PLAN_WHOLE, 1};
}

/* Part `part` of a column or row plan, as one single-threaded BLAS call. */
static void gemm_part(const gemm_job *j, int part) {
  const int by_cols = j->plan.kind == PLAN_COLS, total = by_cols ? j->N : j->M, align = by_cols ? COL_ALIGN : ROW_ALIGN;
  const int s = (int)pool_part_start(total, part, j->plan.parts, align), e = (int)pool_part_start(total, part + 1, j->plan.parts, align);
  if (e <= s) return;
  const int ta = j->ta ? TRANS : NO_TRANS, tb = j->tb ? TRANS : NO_TRANS;
  if (by_cols) {
    /* columns [s, e) of C = op(A) · columns [s, e) of op(B) */
    const float *B = j->tb ? j->B + (size_t)s * j->ldb : j->B + s;
    blas_sgemm(ROW_MAJOR, ta, tb, j->M, e - s, j->K, j->alpha, j->A, j->lda, B, j->ldb, j->beta, j->C + s, j->ldc);
  } else {
    /* rows [s, e) of C = rows [s, e) of op(A) · op(B) */
    const size_t r = (size_t)s;
    const float *A = j->ta ? j->A + r : j->A + r * j->lda;
    blas_sgemm(ROW_MAJOR, ta, tb, e - s, j->N, j->K, j->alpha, A, j->lda, j->B, j->ldb, j->beta, j->C + r * j->ldc, j->ldc);
  }
}

/* Pool task: thread t of `threads` runs parts t, t + threads, … */
static void gemm_task(void *p, int t, int threads) {
  const gemm_job *j = p;
  for (int part = t; part < j->plan.parts; part += threads) gemm_part(j, part);
}

/* A job, all in the calling thread. */
static void run_serial(const gemm_job *j) {
  if (j->plan.kind == PLAN_SMALL) small_gemm(j->M, j->N, j->K, j->alpha, j->A, j->lda, j->B, j->ldb, j->beta, j->C, j->ldc, 1);
  else if (j->plan.kind == PLAN_WHOLE)
    blas_sgemm(ROW_MAJOR, j->ta ? TRANS : NO_TRANS, j->tb ? TRANS : NO_TRANS, j->M, j->N, j->K, j->alpha, j->A, j->lda, j->B,
               j->ldb, j->beta, j->C, j->ldc);
  else for (int part = 0; part < j->plan.parts; part++) gemm_part(j, part);
}

/* actvar_sgemm in the calling thread only (the same plan, so the same results). */
void sgemm_serial(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
                  float beta, float *C, int ldc) {
  const gemm_job j = {ta, tb, M, N, K, alpha, beta, A, B, C, lda, ldb, ldc, plan_of(ta, tb, M, N, K)};
  run_serial(&j);
}

int sgemm_parts(int ta, int tb, int M, int N, int K) {
  const gemm_plan pl = plan_of(ta, tb, M, N, K);
  return pl.kind == PLAN_COLS || pl.kind == PLAN_ROWS ? pl.parts : 1;
}

void sgemm_part_bounds(int ta, int tb, int M, int N, int K, int part, int *r0, int *r1, int *c0, int *c1) {
  const gemm_plan pl = plan_of(ta, tb, M, N, K);
  *r0 = 0, *r1 = M, *c0 = 0, *c1 = N;
  if (pl.kind == PLAN_COLS) {
    *c0 = (int)pool_part_start(N, part, pl.parts, COL_ALIGN), *c1 = (int)pool_part_start(N, part + 1, pl.parts, COL_ALIGN);
  } else if (pl.kind == PLAN_ROWS) {
    *r0 = (int)pool_part_start(M, part, pl.parts, ROW_ALIGN), *r1 = (int)pool_part_start(M, part + 1, pl.parts, ROW_ALIGN);
  }
}

void sgemm_serial_part(int ta, int tb, int M, int N, int K, int part, float alpha, const float *A, int lda, const float *B,
                       int ldb, float beta, float *C, int ldc) {
  const gemm_job j = {ta, tb, M, N, K, alpha, beta, A, B, C, lda, ldb, ldc, plan_of(ta, tb, M, N, K)};
  if (j.plan.kind == PLAN_COLS || j.plan.kind == PLAN_ROWS) gemm_part(&j, part);
  else run_serial(&j);
}

/* C = alpha·op(A)·op(B) + beta·C, row-major, as cblas_sgemm; split over the pool (see the header).
 * The caller has checked every argument (src/backend/openblas.ts). Returns −1 when unbound. */
int actvar_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
                 float beta, float *C, int ldc) {
  if (!blas_sgemm) return -1;
  const gemm_job j = {ta, tb, M, N, K, alpha, beta, A, B, C, lda, ldb, ldc, plan_of(ta, tb, M, N, K)};
  if (j.plan.kind == PLAN_SMALL) {
    /* every element the same whatever the split (small_gemm.c) */
    small_gemm(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, (double)M * N * K < 2 * SPLIT_MIN_PART_MNK ? 1 : pool.threads);
  } else if (j.plan.kind == PLAN_WHOLE || pool.threads == 1) {
    run_serial(&j);
  } else {
    pool_run(gemm_task, (void *)&j, j.plan.parts < pool.threads ? j.plan.parts : pool.threads);
  }
  return 0;
}

/* The part count of split sgemms in effect (after binding; see actvar_set_split_parts): kernels that cut
 * their own work by the shape use it too, so that their results do not depend on the thread count. */
int actvar_split_parts(void) {
  if (split_parts == 0) actvar_set_split_parts(0);
  return split_parts;
}
