/* Critic scores of the encode-and-dot-product critic and their backward, as GEMMs.
 * u[i, j, loc] = sum_c Gz[i, c] * Lx[j, c, loc]. Lx: (N, H, L), Gz: (N, H), u: (N, N, L).
 *
 * For L > 1 the samples j are taken in blocks of g: the block's feature maps are gathered into one
 * (H, g*L) matrix B and u[:, j0 .. j0+g, :], which is a contiguous column range of u seen as an
 * (N, N*L) matrix, is one GEMM Gz . B. A GEMM per sample would have only L = 49 columns, where the
 * BLAS runs 25-35% slower; blocks of >= 256 columns run near its large-matrix rate. Each OpenMP
 * thread owns a contiguous range of blocks and its own B; dGz is summed per thread (thread 0 into
 * dGz, the others into partials added in thread order), so a fixed thread count gives
 * bit-identical results. For L == 1 (vector features) the score matrix is a single GEMM. */
#include "estimator/mi_internal.h"
#include "wcmi/blas.h"

#include <string.h>

enum { BLOCK_MIN_COLS = 256 };

static size_t round16(size_t n) { return (n + 15) / 16 * 16; }

/* Samples per block for T threads: >= BLOCK_MIN_COLS columns, a block count that is a multiple of T. */
static int block_samples(int N, int L, int T) {
  int64_t g = (BLOCK_MIN_COLS + L - 1) / L;
  if (g > N) g = N;
  int64_t nb = (N + g - 1) / g;
  if (nb > T) nb = nb / T * T;
  return (int)((N + nb - 1) / nb);
}

static size_t block_slot(int N, int H, int L, int T) {
  return round16((size_t)H * (size_t)block_samples(N, L, T) * (size_t)L);
}

static size_t need_floats(int N, int H, int L, int T) {
  return (size_t)T * block_slot(N, H, L, T) + (size_t)(T - 1) * round16((size_t)N * (size_t)H);
}

size_t wcmi_mi_block_floats(int N, int H, int L, int T) {
  if (L == 1) return 0;
  size_t most = 0;
  for (int t = 1; t <= T; t++) {
    size_t n = need_floats(N, H, L, t);
    if (n > most) most = n;
  }
  return most;
}

int wcmi_mi_block_threads(int N, int H, int L, int nt, size_t floats_available) {
  int t = nt < 1 ? 1 : nt;
  while (t > 1 && need_floats(N, H, L, t) > floats_available) t--;
  return t;
}

/* B (H, g*L) <- Lx samples [j0, j0 + g) */
static void gather_block(int H, int L, int j0, int g, const float *Lx, float *B) {
  for (int c = 0; c < H; c++)
    for (int jj = 0; jj < g; jj++)
      memcpy(B + ((size_t)c * g + jj) * L, Lx + ((size_t)(j0 + jj) * H + c) * L, (size_t)L * sizeof *B);
}

/* dLx samples [j0, j0 + g) <- dB (H, g*L) */
static void scatter_block(int H, int L, int j0, int g, const float *dB, float *dLx) {
  for (int jj = 0; jj < g; jj++)
    for (int c = 0; c < H; c++)
      memcpy(dLx + ((size_t)(j0 + jj) * H + c) * L, dB + ((size_t)c * g + jj) * L, (size_t)L * sizeof *dLx);
}

/* The simple form (public): one GEMM per sample, no scratch. */
void wcmi_mi_scores(int N, int H, int L, const float *Lx, const float *Gz, float *u) {
  if (L == 1) {
    wcmi_sgemm_fp32(0, 1, N, N, H, 1.0f, Gz, H, Lx, H, 0.0f, u, N);
    return;
  }
  for (int j = 0; j < N; j++) {
    const float *lx_j = Lx + (size_t)j * H * L; // (H, L)
    wcmi_sgemm_fp32(0, 0, N, L, H, 1.0f, Gz, H, lx_j, L, 0.0f, u + (size_t)j * L, N * L);
  }
}

void wcmi_mi_scores_blocked(int N, int H, int L, const float *Lx, const float *Gz, float *u, float *blk, int T) {
  if (L == 1) {
    wcmi_sgemm_fp32(0, 1, N, N, H, 1.0f, Gz, H, Lx, H, 0.0f, u, N);
    return;
  }
  const int g = block_samples(N, L, T), nb = (N + g - 1) / g;
  const size_t slot = block_slot(N, H, L, T);
#pragma omp parallel num_threads(T)
  {
    const int t = omp_get_thread_num();
    float *B = blk + (size_t)t * slot;
    int lo, hi;
    wcmi_thread_range(nb, t, omp_get_num_threads(), &lo, &hi);
    for (int b = lo; b < hi; b++) {
      const int j0 = b * g, gn = N - j0 < g ? N - j0 : g, cn = gn * L;
      gather_block(H, L, j0, gn, Lx, B);
      wcmi_sgemm_fp32(0, 0, N, cn, H, 1.0f, Gz, H, B, cn, 0.0f, u + (size_t)j0 * L, N * L);
    }
  }
}

void wcmi_mi_scores_backward(int N, int H, int L, const float *Lx, const float *Gz, const float *du, float *dLx,
                             float *dGz, float *blk, int T) {
  if (L == 1) {
    // du: (N, N). dGz = du * Lx; dLx = du^T * Gz.
    if (dGz) wcmi_sgemm_fp32(0, 0, N, H, N, 1.0f, du, N, Lx, H, 0.0f, dGz, H);
    if (dLx) wcmi_sgemm_fp32(1, 0, N, H, N, 1.0f, du, N, Gz, H, 0.0f, dLx, H);
    return;
  }
  if (!dLx && !dGz) return;
  const int g = block_samples(N, L, T), nb = (N + g - 1) / g;
  const size_t slot = block_slot(N, H, L, T), nh = round16((size_t)N * H);
  float *partials = blk + (size_t)T * slot; /* thread t >= 1 sums its dGz into partials[(t-1) * nh] */
  int team_size = 1;
#pragma omp parallel num_threads(T)
  {
    const int t = omp_get_thread_num();
#pragma omp single
    team_size = omp_get_num_threads();
    float *B = blk + (size_t)t * slot;
    float *dg = dGz ? (t == 0 ? dGz : partials + (size_t)(t - 1) * nh) : NULL;
    int first = 1, lo, hi;
    wcmi_thread_range(nb, t, omp_get_num_threads(), &lo, &hi);
    for (int b = lo; b < hi; b++) {
      const int j0 = b * g, gn = N - j0 < g ? N - j0 : g, cn = gn * L;
      const float *du_b = du + (size_t)j0 * L; /* du[:, j0 .. j0+gn, :]: (N, cn), row stride N*L */
      if (dg) {
        /* dGz += du_b . B^T, blocks in order (the first overwrites) */
        gather_block(H, L, j0, gn, Lx, B);
        wcmi_sgemm_fp32(0, 1, N, H, cn, 1.0f, du_b, N * L, B, cn, first ? 0.0f : 1.0f, dg, H);
        first = 0;
      }
      if (dLx) {
        /* dB = Gz^T . du_b: (H, cn), then back to the samples' (H, L) maps */
        wcmi_sgemm_fp32(1, 0, H, cn, N, 1.0f, Gz, H, du_b, N * L, 0.0f, B, cn);
        scatter_block(H, L, j0, gn, B, dLx);
      }
    }
    if (dg && first) memset(dg, 0, (size_t)N * H * sizeof *dg); /* a thread without blocks */
  }
  if (dGz) wcmi_add_partials(dGz, partials, team_size - 1, nh, (size_t)N * H);
}
