/*
 * Experiment (native/threads.c, docs/BENCHMARKS.md "GEMM threading"; not part of actvar): does OpenBLAS give
 * a part of C the same bits as the same elements of one call on the whole? Row-major C (M × N) = 0.75·A·B,
 * single-threaded; for every cut s, the two calls on [0, s) and [s, end) of the rows (or columns) against
 * the one call on the whole, bit for bit. Prints the core OpenBLAS chose and the cuts that are exact.
 * With `time` instead, 1-thread GFLOP/s of X·Wᵀ whole vs in 2 and 4 column parts (the cost of a fixed split
 * on one thread).
 *
 *   cc -O2 -o /tmp/sgemm-part-bits bench/experiments/sgemm-part-bits.c -l:libopenblas.so.0
 *   /tmp/sgemm-part-bits M N K rows|cols      e.g. 600 40 200 rows, 40 600 200 cols, 44 1280 256 cols
 *   /tmp/sgemm-part-bits time
 *   (env -u OPENBLAS_CORETYPE in front: the core OpenBLAS detects itself)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void cblas_sgemm(int order, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                 int ldb, float beta, float *C, int ldc);
char *openblas_get_corename(void);
void openblas_set_num_threads(int n);

enum { ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112 };

static float *filled(long n, unsigned seed) {
  float *p = malloc((size_t)n * sizeof(float));
  for (long i = 0; i < n; i++) {
    seed = seed * 1103515245u + 12345u;
    p[i] = (float)((seed >> 8) & 0xffff) / 32768.0f - 1.0f;
  }
  return p;
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void timing(void) {
  const int shapes[][3] = {{128, 4096, 1024}, {680, 4096, 1024}, {128, 1024, 4096}, {680, 1024, 4096}, {1360, 256, 1024}};
  for (int i = 0; i < 5; i++) {
    const int M = shapes[i][0], N = shapes[i][1], K = shapes[i][2];
    float *X = filled((long)M * K, 1), *W = filled((long)N * K, 2), *C = malloc((size_t)M * N * sizeof(float));
    printf("%d×%d×%d:", M, N, K);
    for (int parts = 1; parts <= 4; parts *= 2) {
      double best = 1e30;
      for (int r = 0; r < 5; r++) {
        const double t0 = now();
        for (int p = 0; p < parts; p++) {
          const int n0 = N / parts * p, n1 = N / parts * (p + 1);
          cblas_sgemm(ROW_MAJOR, NO_TRANS, TRANS, M, n1 - n0, K, 1.0f, X, K, W + (long)n0 * K, K, 0.0f, C + n0, N);
        }
        const double t = now() - t0;
        if (t < best) best = t;
      }
      printf("  %d part%s %.1f GFLOP/s", parts, parts > 1 ? "s" : "", 2.0 * M * N * K / best / 1e9);
    }
    printf("\n");
    free(X), free(W), free(C);
  }
}

int main(int argc, char **argv) {
  openblas_set_num_threads(1);
  printf("OpenBLAS core: %s\n", openblas_get_corename());
  if (argc == 2 && !strcmp(argv[1], "time")) {
    timing();
    return 0;
  }
  if (argc != 5 || (strcmp(argv[4], "rows") && strcmp(argv[4], "cols"))) {
    fprintf(stderr, "usage: %s M N K rows|cols, or %s time\n", argv[0], argv[0]);
    return 2;
  }
  const int M = atoi(argv[1]), N = atoi(argv[2]), K = atoi(argv[3]), rows = !strcmp(argv[4], "rows");
  float *A = filled((long)M * K, 1), *B = filled((long)K * N, 2);
  float *whole = malloc((size_t)M * N * sizeof(float)), *split = malloc((size_t)M * N * sizeof(float));
  cblas_sgemm(ROW_MAJOR, NO_TRANS, NO_TRANS, M, N, K, 0.75f, A, K, B, N, 0.0f, whole, N);
  const int total = rows ? M : N;
  int exact = 0;
  printf("exact %s cuts of %d×%d×%d:", rows ? "row" : "column", M, N, K);
  for (int s = 1; s < total; s++) {
    if (rows) {
      cblas_sgemm(ROW_MAJOR, NO_TRANS, NO_TRANS, s, N, K, 0.75f, A, K, B, N, 0.0f, split, N);
      cblas_sgemm(ROW_MAJOR, NO_TRANS, NO_TRANS, M - s, N, K, 0.75f, A + (long)s * K, K, B, N, 0.0f, split + (long)s * N, N);
    } else {
      cblas_sgemm(ROW_MAJOR, NO_TRANS, NO_TRANS, M, s, K, 0.75f, A, K, B, N, 0.0f, split, N);
      cblas_sgemm(ROW_MAJOR, NO_TRANS, NO_TRANS, M, N - s, K, 0.75f, A, K, B + s, N, 0.0f, split + s, N);
    }
    if (!memcmp(whole, split, (size_t)M * N * sizeof(float))) {
      if (exact < 40) printf(" %d", s);
      exact++;
    }
  }
  printf("%s\n%d of %d cuts exact\n", exact > 40 ? " …" : "", exact, total - 1);
  return 0;
}
