/*
 * KV-cache attention of one block (VAR inference, docs/VAR.md §3.3) on the thread pool of threads.c.
 * src/tensor/ops/kv-attention.ts `attendCachedInto` is the TypeScript twin and has the formulas.
 *
 * For every (row b, head h) pair: S = scale·Q_bh·K_bhᵀ over the Lc cached tokens, S ← exp(S − c) with
 * float64 row sums (kernels.c actvar_exp_rows; c = the head's bound, or the row max when it has none),
 * O_bh = S·V_bh written into the merged-heads output, then every output row × 1/sum.
 *
 * Whole pairs are spread over the threads (taken from a shared counter), each pair computed in one
 * thread with the GEMM kernel actvar_sgemm would choose (threads.c `sgemm_serial`). The TypeScript
 * loop instead splits each of the 2·B·H small GEMMs over the pool and runs the exponentials and the
 * normalisation on the calling thread only; here they run on every thread and the pool is entered
 * once per block instead of 2·B·H times. A split never changes a GEMM's result (threads.c), so both
 * paths give the same bits for any thread count (tests).
 */
#include <stdatomic.h>
#include <stdint.h>

#include "kernel.h"
#include "threads.h"

typedef struct {
  const float *Q, *Kc, *Vc;
  const double *bounds;
  float *out;
  i64 B, H, l, hd, Lc, cap;
  float scale;
  atomic_int next;
  atomic_int failed;
} attn_job;

/* Per-part scratch: l·Lc scores (floats) and l row sums (doubles). */
static part_scratch scratch;
static atomic_flag in_use = ATOMIC_FLAG_INIT;

static void heads_part(void *p, int part, int parts) {
  (void)parts;
  attn_job *j = p;
  const i64 l = j->l, hd = j->hd, Lc = j->Lc, C = j->H * hd;
  const size_t sums_at = ((size_t)(l * Lc) * sizeof(float) + 7) & ~(size_t)7;
  char *buf = part_scratch_get(&scratch, part, sums_at + (size_t)l * sizeof(double));
  if (!buf) { atomic_store(&j->failed, 1); return; }
  float *S = (float *)buf;
  double *sums = (double *)(buf + sums_at);
  for (;;) {
    const int bh = atomic_fetch_add(&j->next, 1);
    if (bh >= j->B * j->H) return;
    const i64 b = bh / j->H, h = bh - b * j->H, kv = (i64)bh * j->cap * hd;
    float *o = j->out + b * l * C + h * hd;
    sgemm_serial(0, 1, (int)l, (int)Lc, (int)hd, j->scale, j->Q + (i64)bh * l * hd, (int)hd, j->Kc + kv, (int)hd, 0.0f, S,
                 (int)Lc);
    actvar_exp_rows(S, l, Lc, j->bounds[h], sums);
    sgemm_serial(0, 0, (int)l, (int)hd, (int)Lc, 1.0f, S, (int)Lc, j->Vc + kv, (int)hd, 0.0f, o, (int)C);
    for (i64 i = 0; i < l; i++) {
      const double r = 1.0 / sums[i];
      float *oi = o + i * C;
      for (i64 d = 0; d < hd; d++) oi[d] = (float)(oi[d] * r);
    }
  }
}

/*
 * Q [B, H, l, hd]; Kc, Vc [B, H, cap, hd] with Lc tokens filled; bounds[h] the softmax bound of head h
 * (NaN: none, use the row max); out [B, l, H·hd]. Returns 0, or −1 when no BLAS is bound, −2 when
 * another thread is inside this kernel, −3 when memory ran out (out is then incomplete): the caller
 * then runs its own loop.
 */
int actvar_attend_cached(const float *Q, const float *Kc, const float *Vc, i64 B, i64 H, i64 l, i64 hd, i64 Lc, i64 cap,
                         float scale, const double *bounds, float *out) {
  if (!blas_sgemm) return -1;
  if (atomic_flag_test_and_set(&in_use)) return -2;
  attn_job j = {Q, Kc, Vc, bounds, out, B, H, l, hd, Lc, cap, scale, 0, 0};
  const i64 pairs = B * H;
  const int threads = actvar_pool_threads();
  pool_run(heads_part, &j, pairs < threads ? (int)pairs : threads);
  atomic_flag_clear(&in_use);
  return atomic_load(&j.failed) ? -3 : 0;
}
