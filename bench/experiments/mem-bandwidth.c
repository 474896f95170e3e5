/*
 * Experiment (docs/BENCHMARKS.md): the machine's memory read bandwidth, the bound of a GEMM with few rows
 * (it must read its weights once). Sums 800 MB of floats (vectorised, -ffast-math) on 1 and on 2 OpenMP
 * threads, best of 3. Compiled and run by mem-bandwidth.mjs.
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

int main(void) {
  const size_t n = 200u << 20;
  float *a = aligned_alloc(64, n * sizeof(float));
  if (!a) return 1;
  for (size_t i = 0; i < n; i++) a[i] = (float)(i % 97) * 1e-3f;
  for (int th = 1; th <= 2; th++) {
    omp_set_num_threads(th);
    double best = 1e30, sink = 0;
    for (int r = 0; r < 3; r++) {
      const double t = now();
      float s = 0;
#pragma omp parallel for reduction(+ : s) schedule(static)
      for (size_t i = 0; i < n; i++) s += a[i];
      const double dt = now() - t;
      if (dt < best) best = dt;
      sink += s;
    }
    printf("%d thread%s: read %.1f GB/s (checksum %g)\n", th, th > 1 ? "s" : "", n * sizeof(float) / best / 1e9, sink);
  }
  free(a);
  return 0;
}
