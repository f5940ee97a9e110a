/* Prototype (not built by CMake): the hot GEMM shapes of a worst-case iteration through three
 * backends that are installed on the benchmark machine:
 *   openblas  cblas_sgemm (what wcmi uses; Debian's pthread build)
 *   dnnl      dnnl_sgemm from oneDNN (libdnnl2, installed with python3-torch; OpenMP threading, so
 *             it shares wcmi's thread pool instead of a second pthread pool)
 *   bf16      dnnl_gemm_bf16bf16f32: bf16 inputs, fp32 accumulation/output (AMX / AVX512-BF16 on
 *             this CPU); the conversion of both operands from fp32 is timed too. Reduced precision:
 *             opt-in only (issue 5), the error vs fp32 is printed.
 * build: gcc -O2 -fopenmp bench/proto/gemm_backends.c -o /tmp/gemm_backends -lopenblas -l:libdnnl.so.2 -lm
 * usage: OMP_NUM_THREADS=T /tmp/gemm_backends T [reps]
 */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef int64_t dim_t;
int dnnl_sgemm(char ta, char tb, dim_t M, dim_t N, dim_t K, float alpha, const float *A, dim_t lda, const float *B,
               dim_t ldb, float beta, float *C, dim_t ldc);
int dnnl_gemm_bf16bf16f32(char ta, char tb, dim_t M, dim_t N, dim_t K, float alpha, const uint16_t *A, dim_t lda,
                          const uint16_t *B, dim_t ldb, float beta, float *C, dim_t ldc);

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}

static uint16_t to_bf16(float f) { /* round to nearest even */
  uint32_t u;
  memcpy(&u, &f, 4);
  u += 0x7fff + ((u >> 16) & 1);
  return (uint16_t)(u >> 16);
}

static void convert(const float *x, uint16_t *y, size_t n) {
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; i++) y[i] = to_bf16(x[i]);
}

static int cmpd(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

typedef struct shape {
  const char *name;
  int M, N, K;
} shape;

int main(int argc, char **argv) {
  int T = argc > 1 ? atoi(argv[1]) : 1, reps = argc > 2 ? atoi(argv[2]) : 5;
  openblas_set_num_threads(T);
  omp_set_num_threads(T);
  /* row-major C (M, N) = A (M, K) . B (K, N); the conv GEMMs: O x P x K */
  shape shapes[] = {
      {"sgemm 2048^3", 2048, 2048, 2048},
      {"local 1x1 HxH fwd H=2048 (O=2048,P=6272,K=2048)", 2048, 6272, 2048},
      {"local 1x1 128->H fwd H=2048", 2048, 6272, 128},
      {"local 1x1 HxH fwd H=256", 256, 6272, 256},
      {"encoder.layer1 fwd (O=128,P=6272,K=1024)", 128, 6272, 1024},
      {"encoder.layer1 fwd as P x O x K (cols^T . W^T)", 6272, 128, 1024},
      {"encoder.layer2 fwd (O=256,P=1152,K=2048)", 256, 1152, 2048},
      {"encoder.layer2 fwd as P x O x K", 1152, 256, 2048},
      {"encoder.layer0 fwd (O=64,P=25088,K=16)", 64, 25088, 16},
      {"DV scores per sample j (128 x 49 x 2048)", 128, 49, 2048},
  };
  printf("# %d threads, median of %d; GFLOP/s (bf16 includes fp32->bf16 conversion of A and B)\n", T, reps);
  printf("%-50s %9s %9s %9s %10s\n", "shape", "openblas", "dnnl", "bf16", "bf16 relerr");
  for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
    int M = shapes[s].M, N = shapes[s].N, K = shapes[s].K;
    float *A = malloc(sizeof(float) * M * K), *B = malloc(sizeof(float) * K * N);
    float *C0 = malloc(sizeof(float) * M * N), *C1 = malloc(sizeof(float) * M * N);
    uint16_t *Ab = malloc(2 * (size_t)M * K), *Bb = malloc(2 * (size_t)K * N);
    srand(1);
    for (size_t i = 0; i < (size_t)M * K; i++) A[i] = rand() / (float)RAND_MAX - 0.5f;
    for (size_t i = 0; i < (size_t)K * N; i++) B[i] = rand() / (float)RAND_MAX - 0.5f;
    double t[3][64], fl = 2.0 * M * N * (double)K;
    for (int r = -1; r < reps; r++) {
      double t0 = now();
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, A, K, B, N, 0.0f, C0, N);
      double t1 = now();
      dnnl_sgemm('N', 'N', M, N, K, 1.0f, A, K, B, N, 0.0f, C1, N);
      double t2 = now();
      convert(A, Ab, (size_t)M * K);
      convert(B, Bb, (size_t)K * N);
      dnnl_gemm_bf16bf16f32('N', 'N', M, N, K, 1.0f, Ab, K, Bb, N, 0.0f, C1, N);
      double t3 = now();
      if (r >= 0) t[0][r] = t1 - t0, t[1][r] = t2 - t1, t[2][r] = t3 - t2;
    }
    double num = 0, den = 0;
    for (size_t i = 0; i < (size_t)M * N; i++) num = fmax(num, fabs(C1[i] - C0[i])), den = fmax(den, fabs(C0[i]));
    for (int b = 0; b < 3; b++) qsort(t[b], reps, sizeof(double), cmpd);
    printf("%-50s %9.1f %9.1f %9.1f %10.2e\n", shapes[s].name, fl / t[0][reps / 2] * 1e-9, fl / t[1][reps / 2] * 1e-9,
           fl / t[2][reps / 2] * 1e-9, num / den);
    free(A), free(B), free(C0), free(C1), free(Ab), free(Bb);
  }
  return 0;
}
