/* What every file of the native library shares: the integer type of sizes, the KERNEL attribute, and the
 * kernels.c functions other files call. */
#ifndef ACTVAR_KERNEL_H
#define ACTVAR_KERNEL_H

#include <stdint.h>

typedef int64_t i64;

/* One build runs on any x86-64: with GCC every exported kernel is compiled three times (AVX-512,
 * AVX2+FMA, baseline SSE2) and the loader picks the best the CPU has (target_clones, resolved once
 * at load time), so a library built on one machine does not crash on an older one. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define KERNEL __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define KERNEL
#endif

/* Kernels of kernels.c that the other files call (on one thread each). */
void actvar_gelu(const float *x, float *y, float *d, i64 n);
void actvar_exp_rows(float *S, i64 rows, i64 n, double bound, double *sums);

#endif
