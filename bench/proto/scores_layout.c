/* Prototype (not built by CMake): the DV critic's score GEMMs as wcmi does them today (one GEMM per
 * sample j, src/mi/scores.c) against one transpose of Lx plus single large GEMMs, as PyTorch's
 * torch_ref.dv_loss does.
 *   today   u[:, j, :] = Gz (N,H) . Lx_j (H,L)                  N GEMMs  N x L x H
 *           dGz += du[:, j, :] (N,L) . Lx_j^T (L,H)             N GEMMs  N x H x L   (K = L = 49!)
 *           dLx_j = Gz^T (H,N) . du[:, j, :] (N,L)              N GEMMs  H x L x N
 *   packed  LxP (H, N*L) = Lx (N, H, L) with the first two axes swapped (one copy)
 *           u (N, N*L) = Gz . LxP                               1 GEMM   N x NL x H
 *           dGz (N, H) = du (N, N*L) . LxP^T                    1 GEMM   N x H x NL
 *           dLxP (H, N*L) = Gz^T . du, then swapped back to (N, H, L)   1 GEMM + 1 copy
 * build: gcc -O3 -fopenmp -Iinclude -Isrc bench/proto/scores_layout.c build/release/libwcmi.a \
 *          -lopenblas -lpng -lz -lm -o /tmp/scores_layout
 * usage: /tmp/scores_layout THREADS H [reps]
 */
#include "estimator/mi_internal.h"
#include "wcmi/blas.h"
#include "wcmi/core.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* (A, B, S) -> (B, A, S) */
static void swap01(int A, int B, int S, const float *x, float *y) {
#pragma omp parallel for schedule(static)
  for (int64_t it = 0; it < (int64_t)A * B; it++) {
    int b = (int)(it / A), a = (int)(it % A);
    memcpy(y + it * S, x + ((int64_t)a * B + b) * S, (size_t)S * sizeof *y);
  }
}

static void packed_forward(int N, int H, int L, const float *Lx, const float *Gz, float *LxP, float *u) {
  swap01(N, H, L, Lx, LxP); /* (N,H,L) -> (H,N,L) */
  wcmi_sgemm(0, 0, N, N * L, H, 1.0f, Gz, H, LxP, N * L, 0.0f, u, N * L);
}

static void packed_backward(int N, int H, int L, const float *LxP, const float *Gz, const float *du, float *dLx,
                            float *dGz, float *scratch) {
  if (dGz) wcmi_sgemm(0, 1, N, H, N * L, 1.0f, du, N * L, LxP, N * L, 0.0f, dGz, H);
  if (dLx) {
    wcmi_sgemm(1, 0, H, N * L, N, 1.0f, Gz, H, du, N * L, 0.0f, scratch, N * L); /* (H, N, L) */
    swap01(H, N, L, scratch, dLx);
  }
}

static float relerr(const float *a, const float *b, size_t n) {
  double d = 0, m = 0;
  for (size_t i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - b[i])), m = fmax(m, fabs((double)a[i]));
  return (float)(d / m);
}

static int cmpd(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  int T = argc > 1 ? atoi(argv[1]) : 1, H = argc > 2 ? atoi(argv[2]) : 2048, reps = argc > 3 ? atoi(argv[3]) : 5;
  const int N = 128, L = 49;
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  wcmi_set_threads(&ctx, T);
  size_t nhl = (size_t)N * H * L, nnl = (size_t)N * N * L;
  float *Lx = wcmi_alloc(&ctx, nhl, 4), *LxP = wcmi_alloc(&ctx, nhl, 4), *scr = wcmi_alloc(&ctx, nhl, 4);
  float *Gz = wcmi_alloc(&ctx, (size_t)N * H, 4), *u0 = wcmi_alloc(&ctx, nnl, 4), *u1 = wcmi_alloc(&ctx, nnl, 4);
  float *du = wcmi_alloc(&ctx, nnl, 4), *dLx0 = wcmi_alloc(&ctx, nhl, 4), *dLx1 = wcmi_alloc(&ctx, nhl, 4);
  float *dGz0 = wcmi_alloc(&ctx, (size_t)N * H, 4), *dGz1 = wcmi_alloc(&ctx, (size_t)N * H, 4);
  wcmi_rng r;
  wcmi_rng_seed(&r, 1);
  for (size_t i = 0; i < nhl; i++) Lx[i] = wcmi_rng_uniform_range(&r, -1, 1);
  for (size_t i = 0; i < (size_t)N * H; i++) Gz[i] = wcmi_rng_uniform_range(&r, -1, 1);
  /* argv[4] = "denormal": most entries tiny, as exp(u - lse) of a peaked softmax gives in float
   * (scores of std ~sqrt(H) at H = 2048); "flushed": the same with those entries set to 0. */
  const char *mode = argc > 4 ? argv[4] : "dense";
  for (size_t i = 0; i < nnl; i++) {
    float v = wcmi_rng_uniform_range(&r, -1, 1) * 1e-4f;
    if (strcmp(mode, "dense") && wcmi_rng_uniform(&r) < 0.9f) v = strcmp(mode, "denormal") ? 0.0f : v * 1e-36f;
    du[i] = v;
  }
  double t[6][32];
  for (int k = -1; k < reps; k++) {
    double a = wcmi_now();
    wcmi_mi_scores(N, H, L, Lx, Gz, u0);
    double b = wcmi_now();
    wcmi_mi_scores_backward(N, H, L, Lx, Gz, du, NULL, dGz0); /* attack step: dGz only */
    double c = wcmi_now();
    wcmi_mi_scores_backward(N, H, L, Lx, Gz, du, dLx0, dGz0); /* update: both */
    double d = wcmi_now();
    packed_forward(N, H, L, Lx, Gz, LxP, u1);
    double e = wcmi_now();
    packed_backward(N, H, L, LxP, Gz, du, NULL, dGz1, scr);
    double f = wcmi_now();
    packed_backward(N, H, L, LxP, Gz, du, dLx1, dGz1, scr);
    double g = wcmi_now();
    if (k >= 0) t[0][k] = b - a, t[1][k] = c - b, t[2][k] = d - c, t[3][k] = e - d, t[4][k] = f - e, t[5][k] = g - f;
  }
  for (int i = 0; i < 6; i++) qsort(t[i], reps, sizeof(double), cmpd);
  double gf = 2.0 * N * N * L * (double)H * 1e-9;
  printf("du %s: ", mode);
  printf("H=%d threads=%d (median of %d, ms; one score GEMM = %.2f GFLOP)\n", H, T, reps, gf);
  printf("%-28s %10s %10s %8s\n", "", "per-sample", "packed", "speedup");
  const char *names[3] = {"forward (scores)", "backward dGz (attack)", "backward dGz+dLx (update)"};
  for (int i = 0; i < 3; i++)
    printf("%-28s %10.2f %10.2f %7.1fx\n", names[i], t[i][reps / 2] * 1e3, t[i + 3][reps / 2] * 1e3,
           t[i][reps / 2] / t[i + 3][reps / 2]);
  printf("max rel diff: u %.1e  dGz %.1e  dLx %.1e\n", relerr(u0, u1, nnl), relerr(dGz0, dGz1, (size_t)N * H),
         relerr(dLx0, dLx1, nhl));
  return 0;
}
