/*
 * bf16 weights with float32 accumulation (the `weightsDtype: 'bf16'` option; src/tensor/ops/bf16.ts holds
 * the TypeScript reference and the definition in words): C = X·Wᵀ + beta·C for float32 activations X
 * (M × K) and a bfloat16 weight W (N × K, the layout of a PyTorch Linear), beta 0 or 1.
 *
 * The result of every element is defined once, and every path below computes exactly it:
 *  - the rows of X are rounded to bf16 (round to nearest even; NaN stays NaN) and, like the rows of W,
 *    padded with zeros to Kp = K rounded up to 32;
 *  - 16 float32 lanes: lane j takes the pairs (32b + 2j, 32b + 2j + 1) for b = 0, 1, …, in order, the
 *    odd element first: lane ← fma(x[odd], w[odd], lane), then lane ← fma(x[even], w[even], lane)
 *    (the product of two bf16 numbers is exact in float32, so fma = round(lane + x·w));
 *  - the lanes are summed in a fixed tree (j + j+8, then + 4, + 2, + 1), and C = tree (beta 0) or
 *    C + tree (beta 1).
 * That is what AVX512-BF16's vdpbf16ps does to a register of 16 lanes (Intel SDM: "FP32 FMA with DAZ
 * in, FTZ out and RNE rounding", odd element first), so on CPUs that have it the inner loop is that one
 * instruction per 32 products; elsewhere the same lanes are computed by widening bf16 to float32 (a
 * 16-bit shift) and fused multiply-adds (AVX-512F, AVX2+FMA) or plain C. The paths agree bit for bit
 * except where a value is a float32 subnormal (≈ 1e-38: the instruction flushes those to zero).
 * Each element is one such dot product whatever M, N, the thread count or the part of the job it falls
 * in, so the results do not depend on the threads.
 *
 * The instruction path is chosen at load time from cpuid (__builtin_cpu_supports) and can be turned
 * off (actvar_bf16_set_mode(2), ACTVAR_BF16=0 in src/backend/settings.ts) to run the widening path;
 * every ISA-specific function carries its own target attribute, so the library builds with any GCC
 * or clang on any x86-64 and runs on CPUs without AVX-512.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernel.h"
#include "threads.h"

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#define BF16_X86 1
#include <immintrin.h>
#endif

/* ------------------------------------------------------------------------------------------------
 * rounding */

static inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u); /* NaN: quiet, sign kept */
  u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest, ties to even (overflow → ±inf) */
  return (uint16_t)(u >> 16);
}

/* y[i] = bf16(x[i]) (round to nearest even) for n elements: the weight conversion. */
KERNEL void actvar_f32_to_bf16(const float *x, uint16_t *y, int64_t n) {
  for (int64_t i = 0; i < n; i++) y[i] = f32_to_bf16(x[i]);
}

/* ------------------------------------------------------------------------------------------------
 * the job */

typedef struct {
  int M, N, K, Kp;
  float beta;
  const uint16_t *Xb; /* M × Kp, bf16, zero-padded */
  const uint16_t *W;
  int ldw;
  float *C;
  int ldc;
} bf16_job;

static inline float tree16(const float *l) {
  float h[8];
  for (int i = 0; i < 8; i++) h[i] = l[i] + l[i + 8];
  for (int i = 0; i < 4; i++) h[i] = h[i] + h[i + 4];
  return (h[0] + h[2]) + (h[1] + h[3]);
}

static inline void store(const bf16_job *j, int m, int n, const float *lanes) {
  float *c = j->C + (int64_t)m * j->ldc + n;
  const float r = tree16(lanes);
  *c = j->beta == 0.0f ? r : *c + r;
}

/* The last K − K32 elements of W rows n … n+nb−1, zero-padded to 32 (K32 = K rounded down to 32). */
static inline void stage_tail(const bf16_job *j, int n, int nb, int K32, uint16_t t[4][32]) {
  memset(t, 0, 4 * 32 * sizeof(uint16_t));
  for (int q = 0; q < nb; q++) memcpy(t[q], j->W + (int64_t)(n + q) * j->ldw + K32, (size_t)(j->K - K32) * sizeof(uint16_t));
}

/* ---- plain C (any CPU): the definition, lane by lane */

static inline float widen(uint16_t b) {
  const uint32_t u = (uint32_t)b << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static void cols_scalar(const bf16_job *j, int n0, int n1) {
  const int K32 = j->K & ~31;
  uint16_t t[4][32];
  for (int n = n0; n < n1; n++) {
    const uint16_t *w = j->W + (int64_t)n * j->ldw;
    if (K32 < j->K) stage_tail(j, n, 1, K32, t);
    for (int m = 0; m < j->M; m++) {
      const uint16_t *x = j->Xb + (int64_t)m * j->Kp;
      float l[16] = {0};
      for (int k = 0; k < j->Kp; k += 32) {
        const uint16_t *wk = k < K32 ? w + k : t[0];
        for (int q = 0; q < 16; q++) {
          l[q] += widen(x[k + 2 * q + 1]) * widen(wk[2 * q + 1]); /* exact product: one rounding, as fma */
          l[q] += widen(x[k + 2 * q]) * widen(wk[2 * q]);
        }
      }
      store(j, m, n, l);
    }
  }
}

#ifdef BF16_X86

/* ---- AVX512-BF16: vdpbf16ps, 4 W rows × up to 4 X rows (16 accumulators) */

#define TGT_BF16 __attribute__((target("avx512f,avx512bw,avx512bf16")))
#define TGT_512 __attribute__((target("avx512f")))
#define INLINE static inline __attribute__((always_inline))

/* The tree of tree16 for 16 accumulators at once (a[4q + i]: W row q, X row i of a 4 × 4 tile), by
 * transposing shuffles: level 1 adds lanes j and j+8, level 2 j and j+4, level 3 makes (h0+h2) and (h1+h3),
 * level 4 adds those — the same additions as tree16, so the same bits. The sums come out row-major:
 * r[4i + q] is the element of X row i and W row q; stored as C = r (beta 0) or C + r. */
TGT_512 INLINE void store_4x4(const bf16_job *j, int m, int n, const __m512 *a) {
  __m512 t[8], u[4], v[2];
  for (int k = 0; k < 8; k++) {
    const __m512 lo = _mm512_shuffle_f32x4(a[2 * k], a[2 * k + 1], _MM_SHUFFLE(1, 0, 1, 0));
    const __m512 hi = _mm512_shuffle_f32x4(a[2 * k], a[2 * k + 1], _MM_SHUFFLE(3, 2, 3, 2));
    t[k] = _mm512_add_ps(lo, hi); /* quarters: acc 2k h0-3, acc 2k h4-7, acc 2k+1 h0-3, acc 2k+1 h4-7 */
  }
  for (int k = 0; k < 4; k++) {
    const __m512 lo = _mm512_shuffle_f32x4(t[2 * k], t[2 * k + 1], _MM_SHUFFLE(2, 0, 2, 0));
    const __m512 hi = _mm512_shuffle_f32x4(t[2 * k], t[2 * k + 1], _MM_SHUFFLE(3, 1, 3, 1));
    u[k] = _mm512_add_ps(lo, hi); /* quarter q: the 4 sums h_j + h_{j+4} of acc 4k + q */
  }
  for (int k = 0; k < 2; k++) {
    const __m512 lo = _mm512_shuffle_ps(u[2 * k], u[2 * k + 1], _MM_SHUFFLE(1, 0, 1, 0));
    const __m512 hi = _mm512_shuffle_ps(u[2 * k], u[2 * k + 1], _MM_SHUFFLE(3, 2, 3, 2));
    v[k] = _mm512_add_ps(lo, hi); /* quarter q: (h0+h2, h1+h3) of acc 8k + q, then of acc 8k + 4 + q */
  }
  const __m512 lo = _mm512_shuffle_ps(v[0], v[1], _MM_SHUFFLE(2, 0, 2, 0));
  const __m512 hi = _mm512_shuffle_ps(v[0], v[1], _MM_SHUFFLE(3, 1, 3, 1));
  const __m512 r = _mm512_add_ps(lo, hi); /* r[4q' + e] = acc 4e + q' */
  float o[16];
  _mm512_storeu_ps(o, r);
  for (int i = 0; i < 4; i++) {
    float *c = j->C + (int64_t)(m + i) * j->ldc + n;
    for (int q = 0; q < 4; q++) c[q] = j->beta == 0.0f ? o[4 * i + q] : c[q] + o[4 * i + q];
  }
}

TGT_BF16 INLINE void tile_bf16(const bf16_job *j, int n, int m, const int nb, const int mb) {
  const int K32 = j->K & ~31;
  __m512 a[4][4];
  const uint16_t *w[4], *x[4];
  for (int q = 0; q < nb; q++) w[q] = j->W + (int64_t)(n + q) * j->ldw;
  for (int i = 0; i < mb; i++) x[i] = j->Xb + (int64_t)(m + i) * j->Kp;
  for (int i = 0; i < mb; i++) for (int q = 0; q < nb; q++) a[i][q] = _mm512_setzero_ps();
  for (int k = 0; k < K32; k += 32) {
    __m512i b[4];
    for (int q = 0; q < nb; q++) b[q] = _mm512_loadu_si512((const void *)(w[q] + k));
    for (int i = 0; i < mb; i++) {
      const __m512i p = _mm512_loadu_si512((const void *)(x[i] + k));
      for (int q = 0; q < nb; q++) a[i][q] = _mm512_dpbf16_ps(a[i][q], (__m512bh)p, (__m512bh)b[q]);
    }
  }
  if (K32 < j->K) {
    uint16_t t[4][32];
    stage_tail(j, n, nb, K32, t);
    for (int i = 0; i < mb; i++) {
      const __m512i p = _mm512_loadu_si512((const void *)(x[i] + K32));
      for (int q = 0; q < nb; q++) a[i][q] = _mm512_dpbf16_ps(a[i][q], (__m512bh)p, (__m512bh)_mm512_loadu_si512((const void *)t[q]));
    }
  }
  if (nb == 4 && mb == 4) {
    __m512 s[16];
    for (int q = 0; q < 4; q++) for (int i = 0; i < 4; i++) s[4 * q + i] = a[i][q];
    store_4x4(j, m, n, s);
    return;
  }
  float l[16];
  for (int i = 0; i < mb; i++) for (int q = 0; q < nb; q++) { _mm512_storeu_ps(l, a[i][q]); store(j, m + i, n + q, l); }
}

TGT_BF16 static void cols_bf16(const bf16_job *j, int n0, int n1) {
  const int M = j->M;
  int n = n0;
  for (; n + 4 <= n1; n += 4) {
    int m = 0;
    for (; m + 4 <= M; m += 4) tile_bf16(j, n, m, 4, 4);
    switch (M - m) {
    case 3: tile_bf16(j, n, m, 4, 3); break;
    case 2: tile_bf16(j, n, m, 4, 2); break;
    case 1: tile_bf16(j, n, m, 4, 1); break;
    default: break;
    }
  }
  for (; n < n1; n++) {
    int m = 0;
    for (; m + 4 <= M; m += 4) tile_bf16(j, n, m, 1, 4);
    for (; m < M; m++) tile_bf16(j, n, m, 1, 1);
  }
}

/* ---- AVX-512F without BF16: widen (odd: the high half as is, even: shifted up 16) and fma */

TGT_512 INLINE void tile_512(const bf16_job *j, int n, int m, const int nb, const int mb) {
  const int K32 = j->K & ~31;
  const __m512i hi = _mm512_set1_epi32((int)0xffff0000u);
  __m512 a[4][4];
  const uint16_t *w[4], *x[4];
  uint16_t t[4][32];
  for (int q = 0; q < nb; q++) w[q] = j->W + (int64_t)(n + q) * j->ldw;
  for (int i = 0; i < mb; i++) x[i] = j->Xb + (int64_t)(m + i) * j->Kp;
  for (int i = 0; i < mb; i++) for (int q = 0; q < nb; q++) a[i][q] = _mm512_setzero_ps();
  if (K32 < j->K) stage_tail(j, n, nb, K32, t);
  for (int k = 0; k < j->Kp; k += 32) {
    __m512 bo[4], be[4];
    for (int q = 0; q < nb; q++) {
      const __m512i b = _mm512_loadu_si512((const void *)(k < K32 ? w[q] + k : t[q]));
      bo[q] = _mm512_castsi512_ps(_mm512_and_si512(b, hi));
      be[q] = _mm512_castsi512_ps(_mm512_slli_epi32(b, 16));
    }
    for (int i = 0; i < mb; i++) {
      const __m512i p = _mm512_loadu_si512((const void *)(x[i] + k));
      const __m512 po = _mm512_castsi512_ps(_mm512_and_si512(p, hi)), pe = _mm512_castsi512_ps(_mm512_slli_epi32(p, 16));
      for (int q = 0; q < nb; q++) a[i][q] = _mm512_fmadd_ps(pe, be[q], _mm512_fmadd_ps(po, bo[q], a[i][q]));
    }
  }
  if (nb == 4 && mb == 4) {
    __m512 s[16];
    for (int q = 0; q < 4; q++) for (int i = 0; i < 4; i++) s[4 * q + i] = a[i][q];
    store_4x4(j, m, n, s);
    return;
  }
  float l[16];
  for (int i = 0; i < mb; i++) for (int q = 0; q < nb; q++) { _mm512_storeu_ps(l, a[i][q]); store(j, m + i, n + q, l); }
}

TGT_512 static void cols_512(const bf16_job *j, int n0, int n1) {
  const int M = j->M;
  int n = n0;
  for (; n + 4 <= n1; n += 4) {
    int m = 0;
    for (; m + 4 <= M; m += 4) tile_512(j, n, m, 4, 4);
    switch (M - m) {
    case 3: tile_512(j, n, m, 4, 3); break;
    case 2: tile_512(j, n, m, 4, 2); break;
    case 1: tile_512(j, n, m, 4, 1); break;
    default: break;
    }
  }
  for (; n < n1; n++) for (int m = 0; m < M; m++) tile_512(j, n, m, 1, 1);
}

/* ---- AVX2 + FMA: the 16 lanes as two 8-lane halves, 2 W rows × 2 X rows */

#define TGT_AVX2 __attribute__((target("avx2,fma")))

TGT_AVX2 INLINE void tile_avx2(const bf16_job *j, int n, int m, const int nb, const int mb) {
  const int K32 = j->K & ~31;
  const __m256i hi = _mm256_set1_epi32((int)0xffff0000u);
  __m256 a[2][2][2]; /* [row][col][half] */
  const uint16_t *w[2], *x[2];
  uint16_t t[4][32];
  for (int q = 0; q < nb; q++) w[q] = j->W + (int64_t)(n + q) * j->ldw;
  for (int i = 0; i < mb; i++) x[i] = j->Xb + (int64_t)(m + i) * j->Kp;
  for (int i = 0; i < mb; i++) for (int q = 0; q < nb; q++) a[i][q][0] = a[i][q][1] = _mm256_setzero_ps();
  if (K32 < j->K) stage_tail(j, n, nb, K32, t);
  for (int k = 0; k < j->Kp; k += 32) {
    for (int h = 0; h < 2; h++) {
      __m256 bo[2], be[2];
      for (int q = 0; q < nb; q++) {
        const __m256i b = _mm256_loadu_si256((const __m256i *)((k < K32 ? w[q] + k : t[q]) + 16 * h));
        bo[q] = _mm256_castsi256_ps(_mm256_and_si256(b, hi));
        be[q] = _mm256_castsi256_ps(_mm256_slli_epi32(b, 16));
      }
      for (int i = 0; i < mb; i++) {
        const __m256i p = _mm256_loadu_si256((const __m256i *)(x[i] + k + 16 * h));
        const __m256 po = _mm256_castsi256_ps(_mm256_and_si256(p, hi)), pe = _mm256_castsi256_ps(_mm256_slli_epi32(p, 16));
        for (int q = 0; q < nb; q++) a[i][q][h] = _mm256_fmadd_ps(pe, be[q], _mm256_fmadd_ps(po, bo[q], a[i][q][h]));
      }
    }
  }
  float l[16];
  for (int i = 0; i < mb; i++) for (int q = 0; q < nb; q++) {
    _mm256_storeu_ps(l, a[i][q][0]);
    _mm256_storeu_ps(l + 8, a[i][q][1]);
    store(j, m + i, n + q, l);
  }
}

TGT_AVX2 static void cols_avx2(const bf16_job *j, int n0, int n1) {
  const int M = j->M;
  int n = n0;
  for (; n + 2 <= n1; n += 2) {
    int m = 0;
    for (; m + 2 <= M; m += 2) tile_avx2(j, n, m, 2, 2);
    if (m < M) tile_avx2(j, n, m, 2, 1);
  }
  for (; n < n1; n++) for (int m = 0; m < M; m++) tile_avx2(j, n, m, 1, 1);
}

#endif /* BF16_X86 */

/* ------------------------------------------------------------------------------------------------
 * dispatch */

enum { PATH_SCALAR = 0, PATH_AVX2 = 1, PATH_AVX512 = 2, PATH_BF16 = 3 };
static int path = -1; /* chosen on first use (or by actvar_bf16_set_mode) */

static int best_path(void) {
#ifdef BF16_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw")) return PATH_BF16;
  if (__builtin_cpu_supports("avx512f")) return PATH_AVX512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return PATH_AVX2;
#endif
  return PATH_SCALAR;
}

/* The best path the CPU has, at most `cap` (3 vdpbf16ps, 2 AVX-512F, 1 AVX2+FMA, 0 plain C): 3 is the
 * default, 2 never uses the instruction (ACTVAR_BF16=0), lower caps are for tests. Returns the path now
 * in effect. */
int actvar_bf16_set_mode(int cap) {
  const int best = best_path();
  path = best < cap ? best : cap < 0 ? 0 : cap;
  return path;
}

/* The path in effect (as actvar_bf16_set_mode returns it). */
int actvar_bf16_path(void) {
  if (path < 0) actvar_bf16_set_mode(PATH_BF16);
  return path;
}

static void run_cols(const bf16_job *j, int n0, int n1) {
  switch (path) {
#ifdef BF16_X86
  case PATH_BF16: cols_bf16(j, n0, n1); return;
  case PATH_AVX512: cols_512(j, n0, n1); return;
  case PATH_AVX2: cols_avx2(j, n0, n1); return;
#endif
  default: cols_scalar(j, n0, n1); return;
  }
}

static void bf16_part(void *p, int part, int parts) {
  const bf16_job *j = p;
  /* whole groups of 4 W rows (the tile width); each element is computed the same way in any part */
  const int n0 = (int)pool_part_start(j->N, part, parts, 4), n1 = (int)pool_part_start(j->N, part + 1, parts, 4);
  if (n0 < n1) run_cols(j, n0, n1);
}

/* Smallest job worth more than one thread, in M·N·K. */
#define BF16_SPLIT_MIN_MNK 2.0e6

static atomic_flag scratch_busy = ATOMIC_FLAG_INIT;
static uint16_t *scratch = NULL;
static size_t scratch_len = 0;

/* C (M × N, ldc) = X·Wᵀ + beta·C, X float32 M × K (ldx), W bf16 N × K (ldw), beta 0 or 1; split by
 * columns of C over the pool. The caller (src/backend/native.ts) has checked every argument. Returns
 * 0, or −1 when out of memory (C unchanged). */
int actvar_bf16_gemm(int M, int N, int K, const float *X, int ldx, const uint16_t *W, int ldw, float beta, float *C, int ldc) {
  if (M <= 0 || N <= 0) return 0;
  if (path < 0) actvar_bf16_set_mode(PATH_BF16);
  const int Kp = (K + 31) & ~31;
  const size_t need = (size_t)M * (size_t)(Kp > 0 ? Kp : 32);
  const int own = !atomic_flag_test_and_set(&scratch_busy);
  uint16_t *xb;
  if (own) {
    if (scratch_len < need) {
      free(scratch);
      scratch = malloc(need * sizeof(uint16_t));
      scratch_len = scratch ? need : 0;
    }
    xb = scratch;
  } else {
    xb = malloc(need * sizeof(uint16_t)); /* another thread holds the scratch: a buffer of our own */
  }
  if (!xb) { if (own) atomic_flag_clear(&scratch_busy); return -1; }
  for (int m = 0; m < M; m++) {
    actvar_f32_to_bf16(X + (int64_t)m * ldx, xb + (int64_t)m * Kp, K);
    memset(xb + (int64_t)m * Kp + K, 0, (size_t)(Kp - K) * sizeof(uint16_t));
  }
  if (K == 0) {
    for (int m = 0; m < M; m++) for (int n = 0; n < N; n++) if (beta == 0.0f) C[(int64_t)m * ldc + n] = 0.0f;
  } else {
    const bf16_job j = {M, N, K, Kp, beta, xb, W, ldw, C, ldc};
    const int threads = actvar_pool_threads();
    const int parts = (double)M * N * K < BF16_SPLIT_MIN_MNK || threads < 2 ? 1 : threads;
    pool_run(bf16_part, (void *)&j, parts);
  }
  if (own) atomic_flag_clear(&scratch_busy);
  else free(xb);
  return 0;
}
