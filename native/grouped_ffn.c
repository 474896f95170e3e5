/*
 * Grouped FFN (a mixture-of-experts FFN executed expert by expert) on the thread pool of threads.c.
 *
 * Input rows X (n × C) are routed to K of N experts each; expert e owns rows [e·dₑ, (e+1)·dₑ) of the
 * fc1 weight W1 (H × C, H = N·dₑ), the same range of the fc1 bias B1 and columns [e·dₑ, (e+1)·dₑ)
 * of the fc2 weight W2 (C × H). `tokens[offsets[e] .. offsets[e+1])` lists expert e's rows
 * (ascending) and slots[p] the routing-table entry (t·K + k) of grouped position p.
 *
 * Phase 1, experts spread over the pool's threads (taken from a shared counter, so the load
 * balances whatever the group sizes): gather the expert's rows, He = GELU(Xe·W1ₑᵀ + b1ₑ),
 * Y[group rows] = He·W2ₑᵀ, each GEMM in its thread computed as actvar_sgemm computes it (the same
 * parts, threads.c `sgemm_serial`), so the products are those of the TypeScript loop. The last experts
 * handed out (one per thread) are handed out as the parts of their GEMMs instead (threads.c
 * `sgemm_serial_part`): their fc1 parts (each with its bias and GELU) in phase 1, their fc2 parts in
 * phase 1b, once all of He is there. So the threads finish together (with whole experts, one thread
 * waited for about half an expert's time at the end of every block).
 * Phase 2, token ranges spread over the threads: out[t] += Y[p] for t's K grouped positions p in
 * ascending order, i.e. in expert order.
 *
 * This is the order the single-threaded loop of src/actvar/experts.ts (`runExperts`) adds in: out
 * preset with the fc2 bias, then expert after expert. So the result is independent of the thread
 * count and of which thread ran which expert or part (tests compare the two paths).
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernel.h"
#include "threads.h"

/* A unit of phase 1 or 1b: a whole expert, or part `part` of its fc1 or fc2 GEMM (He: its He). */
enum { UNIT_EXPERT, UNIT_FC1, UNIT_FC2 };
typedef struct {
  int e, kind, part;
  float *He;
} ffn_unit;

typedef struct {
  const float *X, *W1, *B1, *W2;
  float *Y, *out;
  const int32_t *tokens, *offsets, *pos;
  const ffn_unit *units;
  i64 n, C, de, H, K;
  int nunits;
  atomic_int next;
  atomic_int failed;
} ffn_job;

/* Per-part scratch (Xe, He of the largest group). */
static part_scratch scratch;
static atomic_flag in_use = ATOMIC_FLAG_INIT;

static void experts_part(void *p, int part, int parts) {
  (void)parts;
  ffn_job *j = p;
  const i64 C = j->C, de = j->de;
  for (;;) {
    const int u = atomic_fetch_add(&j->next, 1);
    if (u >= j->nunits) return;
    const ffn_unit *un = &j->units[u];
    const int e = un->e;
    const i64 o0 = j->offsets[e], cnt = j->offsets[e + 1] - o0;
    const float *W1e = j->W1 + e * de * C, *W2e = j->W2 + e * de;
    if (un->kind == UNIT_FC2) {
      sgemm_serial_part(0, 1, (int)cnt, (int)C, (int)de, un->part, 1.0f, un->He, (int)de, W2e, (int)j->H, 0.0f, j->Y + o0 * C,
                        (int)C);
      continue;
    }
    float *Xe = part_scratch_get(&scratch, part, (size_t)(cnt * (C + de)) * sizeof(float));
    if (!Xe) { atomic_store(&j->failed, 1); return; }
    for (i64 r = 0; r < cnt; r++) memcpy(Xe + r * C, j->X + (i64)j->tokens[o0 + r] * C, (size_t)C * sizeof(float));
    if (un->kind == UNIT_FC1) {
      /* the part's block of He: the bias, += Xe·W1ₑᵀ, GELU (elementwise, so any block gives the same bits) */
      int r0, r1, c0, c1;
      sgemm_part_bounds(0, 1, (int)cnt, (int)de, (int)C, un->part, &r0, &r1, &c0, &c1);
      for (i64 r = r0; r < r1; r++) memcpy(un->He + r * de + c0, j->B1 + e * de + c0, (size_t)(c1 - c0) * sizeof(float));
      sgemm_serial_part(0, 1, (int)cnt, (int)de, (int)C, un->part, 1.0f, Xe, (int)C, W1e, (int)C, 1.0f, un->He, (int)de);
      for (i64 r = r0; r < r1; r++) actvar_gelu(un->He + r * de + c0, un->He + r * de + c0, NULL, c1 - c0);
      continue;
    }
    float *He = Xe + cnt * C;
    for (i64 r = 0; r < cnt; r++) memcpy(He + r * de, j->B1 + e * de, (size_t)de * sizeof(float));
    sgemm_serial(0, 1, (int)cnt, (int)de, (int)C, 1.0f, Xe, (int)C, W1e, (int)C, 1.0f, He, (int)de);
    actvar_gelu(He, He, NULL, cnt * de);
    sgemm_serial(0, 1, (int)cnt, (int)C, (int)de, 1.0f, He, (int)de, W2e, (int)j->H, 0.0f, j->Y + o0 * C, (int)C);
  }
}

static void reduce_part(void *p, int part, int parts) {
  const ffn_job *j = p;
  const i64 C = j->C, K = j->K;
  const i64 t0 = pool_part_start(j->n, part, parts, 1), t1 = pool_part_start(j->n, part + 1, parts, 1);
  int32_t q[256];
  for (i64 t = t0; t < t1; t++) {
    /* t's grouped positions, ascending (insertion sort of K ≤ 256 entries) */
    for (i64 k = 0; k < K; k++) {
      const int32_t v = j->pos[t * K + k];
      i64 i = k;
      for (; i > 0 && q[i - 1] > v; i--) q[i] = q[i - 1];
      q[i] = v;
    }
    float *o = j->out + t * C;
    for (i64 k = 0; k < K; k++) {
      const float *y = j->Y + (i64)q[k] * C;
      for (i64 c = 0; c < C; c++) o[c] += y[c];
    }
  }
}

/*
 * out (n × C, preset with the fc2 bias by the caller) += Σ over each row's K experts, as above.
 * Y: n·K·C floats of scratch; pos: n·K ints of scratch. Returns 0, or −1 when no BLAS is bound, −2
 * when another thread is inside this kernel, −3 when memory ran out (out is then unchanged), −4 when
 * K is out of range: the caller then runs its own loop.
 */
int actvar_grouped_ffn(const float *X, i64 n, i64 C, const float *W1, const float *B1, const float *W2, i64 de, i64 H,
                       const int32_t *tokens, const int32_t *offsets, const int32_t *slots, int32_t N, i64 K, float *Y,
                       int32_t *pos, float *out) {
  if (!blas_sgemm) return -1;
  if (K < 1 || K > 256) return -4;
  if (atomic_flag_test_and_set(&in_use)) return -2;
  const i64 pairs = offsets[N];
  for (i64 p = 0; p < pairs; p++) pos[slots[p]] = (int32_t)p;
  const int parts = actvar_pool_threads();
  /* the non-empty experts in order; the last `parts` of them, where a GEMM of theirs is split, by parts:
   * count the units and the floats of those experts' He first */
  int nunits = 0, nlate = 0, left = 0;
  i64 late_floats = 0;
  for (int e = 0; e < N; e++) left += offsets[e + 1] > offsets[e];
  int *late = calloc((size_t)N + 1, sizeof(int)); /* 1 where expert e goes by parts */
  for (int e = 0; late && e < N; e++) {
    const int cnt = offsets[e + 1] - offsets[e];
    if (cnt == 0) continue;
    const int p1 = sgemm_parts(0, 1, cnt, (int)de, (int)C), p2 = sgemm_parts(0, 1, cnt, (int)C, (int)de);
    if (parts > 1 && left-- <= parts && p1 + p2 > 2) {
      late[e] = 1;
      nunits += p1 + p2, nlate += p2, late_floats += (i64)cnt * de;
    } else {
      nunits++;
    }
  }
  ffn_unit *units = late ? malloc((size_t)nunits * sizeof(ffn_unit)) : NULL;
  float *Hl = units && late_floats ? malloc((size_t)late_floats * sizeof(float)) : NULL;
  if (!units || (late_floats && !Hl)) {
    free(late), free(units);
    atomic_flag_clear(&in_use);
    return -3;
  }
  /* phase 1: whole experts and fc1 parts; phase 1b (the last nlate units): fc2 parts */
  int u1 = 0, u2 = nunits - nlate;
  float *He = Hl;
  for (int e = 0; e < N; e++) {
    const int cnt = offsets[e + 1] - offsets[e];
    if (cnt == 0) continue;
    if (!late[e]) {
      units[u1++] = (ffn_unit){e, UNIT_EXPERT, 0, NULL};
      continue;
    }
    for (int q = 0, p1 = sgemm_parts(0, 1, cnt, (int)de, (int)C); q < p1; q++) units[u1++] = (ffn_unit){e, UNIT_FC1, q, He};
    for (int q = 0, p2 = sgemm_parts(0, 1, cnt, (int)C, (int)de); q < p2; q++) units[u2++] = (ffn_unit){e, UNIT_FC2, q, He};
    He += (i64)cnt * de;
  }
  free(late);
  ffn_job j = {X, W1, B1, W2, Y, out, tokens, offsets, pos, units, n, C, de, H, K, nunits - nlate, 0, 0};
  pool_run(experts_part, &j, parts);
  if (nlate && !atomic_load(&j.failed)) {
    j.nunits = nunits;
    atomic_store(&j.next, nunits - nlate);
    pool_run(experts_part, &j, parts);
  }
  free(units), free(Hl);
  int rc = 0;
  if (atomic_load(&j.failed)) rc = -3;
  else pool_run(reduce_part, &j, parts);
  atomic_flag_clear(&in_use);
  return rc;
}

/*
 * The same FFN by token chunks (chosen by the caller from the shape, src/tensor/ops/experts.ts
 * `expertChunkTokens`): tokens [c·chunk, (c+1)·chunk) form chunk c, the pool's threads take whole
 * chunks, and a chunk runs every expert in order on its own tokens: gather the expert's rows of the
 * chunk (a contiguous range of its ascending token list), He = GELU(Xe·W1ₑᵀ + b1ₑ), gather the running
 * sums of those tokens, += He·W2ₑᵀ (beta = 1), scatter them back — the TypeScript loop `runExperts` on
 * the chunk's token range, GEMM for GEMM. No n·K·C buffer of expert outputs and no reduction pass:
 * a chunk's rows stay in cache. Chunks are fixed by the shape, so the thread count changes nothing.
 */
typedef struct {
  const float *X, *W1, *B1, *W2;
  float *out;
  const int32_t *tokens, *offsets;
  i64 n, C, de, H, chunk;
  int N, nchunks;
  atomic_int next;
  atomic_int failed;
} chunk_job;

static part_scratch chunk_scratch;

/* First index i in [lo, hi) with a[i] ≥ v (hi when none). */
static i64 lower_bound_i32(const int32_t *a, i64 lo, i64 hi, i64 v) {
  while (lo < hi) {
    const i64 mid = lo + ((hi - lo) >> 1);
    if (a[mid] < v) lo = mid + 1; else hi = mid;
  }
  return lo;
}

static void chunk_part(void *p, int part, int parts) {
  (void)parts;
  chunk_job *j = p;
  const i64 C = j->C, de = j->de, H = j->H;
  float *Xe = part_scratch_get(&chunk_scratch, part, (size_t)(j->chunk * (2 * C + de)) * sizeof(float));
  if (!Xe) { atomic_store(&j->failed, 1); return; }
  float *He = Xe + j->chunk * C, *Ye = He + j->chunk * de;
  for (;;) {
    const int c = atomic_fetch_add(&j->next, 1);
    if (c >= j->nchunks) return;
    const i64 t0 = (i64)c * j->chunk, t1 = t0 + j->chunk < j->n ? t0 + j->chunk : j->n;
    for (int e = 0; e < j->N; e++) {
      const i64 lo = lower_bound_i32(j->tokens, j->offsets[e], j->offsets[e + 1], t0);
      const i64 hi = lower_bound_i32(j->tokens, lo, j->offsets[e + 1], t1), m = hi - lo;
      if (m == 0) continue;
      const int32_t *tk = j->tokens + lo;
      for (i64 r = 0; r < m; r++) memcpy(Xe + r * C, j->X + (i64)tk[r] * C, (size_t)C * sizeof(float));
      for (i64 r = 0; r < m; r++) memcpy(He + r * de, j->B1 + e * de, (size_t)de * sizeof(float));
      sgemm_serial(0, 1, (int)m, (int)de, (int)C, 1.0f, Xe, (int)C, j->W1 + e * de * C, (int)C, 1.0f, He, (int)de);
      actvar_gelu(He, He, NULL, m * de);
      for (i64 r = 0; r < m; r++) memcpy(Ye + r * C, j->out + (i64)tk[r] * C, (size_t)C * sizeof(float));
      sgemm_serial(0, 1, (int)m, (int)C, (int)de, 1.0f, He, (int)de, j->W2 + e * de, (int)H, 1.0f, Ye, (int)C);
      for (i64 r = 0; r < m; r++) memcpy(j->out + (i64)tk[r] * C, Ye + r * C, (size_t)C * sizeof(float));
    }
  }
}

/* As actvar_grouped_ffn (same arguments but Y/pos/slots/K), by chunks of `chunk` tokens; same return codes. */
int actvar_grouped_ffn_chunked(const float *X, i64 n, i64 C, const float *W1, const float *B1, const float *W2, i64 de, i64 H,
                               const int32_t *tokens, const int32_t *offsets, int32_t N, i64 chunk, float *out) {
  if (!blas_sgemm) return -1;
  if (chunk < 1) return -4;
  if (atomic_flag_test_and_set(&in_use)) return -2;
  chunk_job j = {X, W1, B1, W2, out, tokens, offsets, n, C, de, H, chunk, N, (int)((n + chunk - 1) / chunk), 0, 0};
  const int threads = actvar_pool_threads();
  pool_run(chunk_part, &j, threads < j.nchunks ? threads : j.nchunks);
  atomic_flag_clear(&in_use);
  return atomic_load(&j.failed) ? -3 : 0;
}
