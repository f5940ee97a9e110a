/* GEMM throughput of wcmi_sgemm in fp32 and in bf16 (wcmi_blas_set_precision) on the GEMM shapes of
 * a Fashion-MNIST training step at batch 128: the encoder's conv layers (forward, weight gradient,
 * input gradient as im2col GEMMs), its first linear layer, and the local critic's 1x1 convs at
 * H = 256 and 2048. Prints, per shape, the median GFLOP/s of each precision over --reps calls
 * (interleaved, so both see the same machine) and their ratio.
 *
 * usage: bench_gemm_precision [--threads T] [--reps R]
 * OpenBLAS's kernels follow OPENBLAS_CORETYPE (`wcmi version` prints which ones run). */
#include "wcmi/blas.h"
#include "wcmi/core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  const char *what;
  int M, N, K, ta, tb;
} shape;

static const shape SHAPES[] = {
    {"encoder layer1.0 forward", 128, 6272, 1024, 0, 0},
    {"encoder layer1.0 weight grad", 128, 1024, 6272, 0, 1},
    {"encoder layer1.0 input grad", 1024, 6272, 128, 1, 0},
    {"encoder layer2.0 forward", 256, 1152, 2048, 0, 0},
    {"encoder layer2.0 weight grad", 256, 2048, 1152, 0, 1},
    {"encoder layer2.0 input grad", 2048, 1152, 256, 1, 0},
    {"encoder layer4.0 forward", 128, 1024, 2304, 0, 1},
    {"local 1x1 128->256 forward", 256, 6272, 128, 0, 0},
    {"local 1x1 256->256 forward", 256, 6272, 256, 0, 0},
    {"local 1x1 2048->2048 forward", 2048, 6272, 2048, 0, 0},
};

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  int threads = 1, reps = 7;
  for (int i = 1; i < argc; i++) {
    if (i + 1 < argc && !strcmp(argv[i], "--threads")) threads = atoi(argv[++i]);
    else if (i + 1 < argc && !strcmp(argv[i], "--reps")) reps = atoi(argv[++i]);
    else return fprintf(stderr, "usage: bench_gemm_precision [--threads T] [--reps R]\n"), 2;
  }
  if (threads < 1 || reps < 1 || reps > 1000) return fprintf(stderr, "bench_gemm_precision: bad --threads or --reps\n"), 2;
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  wcmi_set_threads(&ctx, threads);
  if (!wcmi_blas_bf16_available()) {
    fprintf(stderr, "bench_gemm_precision: no bf16 GEMM in this build or on this CPU\n");
    return 77;
  }
  printf("# %s; %d thread(s); median of %d calls each, interleaved\n", wcmi_blas_info(), threads, reps);
  printf("%-32s %6s %6s %6s %10s %10s %7s\n", "shape", "M", "N", "K", "fp32 GF/s", "bf16 GF/s", "ratio");
  double *t[2] = {malloc((size_t)reps * sizeof(double)), malloc((size_t)reps * sizeof(double))};
  if (!t[0] || !t[1]) return fprintf(stderr, "bench_gemm_precision: out of memory\n"), 1;
  for (size_t s = 0; s < sizeof SHAPES / sizeof SHAPES[0]; s++) {
    const shape *g = &SHAPES[s];
    float *A = malloc((size_t)g->M * g->K * sizeof(float)), *B = malloc((size_t)g->K * g->N * sizeof(float)),
          *C = malloc((size_t)g->M * g->N * sizeof(float));
    if (!A || !B || !C) return fprintf(stderr, "bench_gemm_precision: out of memory\n"), 1;
    wcmi_rng r;
    wcmi_rng_seed(&r, 1);
    for (size_t i = 0; i < (size_t)g->M * g->K; i++) A[i] = wcmi_rng_uniform(&r) - 0.5f;
    for (size_t i = 0; i < (size_t)g->K * g->N; i++) B[i] = wcmi_rng_uniform(&r) - 0.5f;
    for (int rep = -1; rep < reps; rep++) /* rep -1: warm-up of both */
      for (int p = 0; p < 2; p++) {
        if (wcmi_blas_set_precision(&ctx, p ? WCMI_GEMM_BF16 : WCMI_GEMM_FP32)) return fprintf(stderr, "%s\n", ctx.msg), 1;
        const double t0 = wcmi_now();
        wcmi_sgemm(g->ta, g->tb, g->M, g->N, g->K, 1.0f, A, g->ta ? g->M : g->K, B, g->tb ? g->K : g->N, 0.0f, C, g->N);
        if (rep >= 0) t[p][rep] = wcmi_now() - t0;
      }
    qsort(t[0], (size_t)reps, sizeof(double), cmp_double);
    qsort(t[1], (size_t)reps, sizeof(double), cmp_double);
    const double flops = 2.0 * g->M * g->N * g->K, m0 = t[0][reps / 2], m1 = t[1][reps / 2];
    printf("%-32s %6d %6d %6d %10.1f %10.1f %7.2f\n", g->what, g->M, g->N, g->K, flops / m0 * 1e-9, flops / m1 * 1e-9,
           m0 / m1);
    free(A), free(B), free(C);
  }
  free(t[0]), free(t[1]);
  return 0;
}
