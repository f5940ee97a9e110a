/* Critic scores of the encode-and-dot-product critic and their backward, as GEMMs.
 * u[i, j, loc] = sum_c Gz[i, c] * Lx[j, c, loc]. Lx: (N, H, L), Gz: (N, H), u: (N, N, L). */
#include "mi/mi_internal.h"
#include "wcmi/blas.h"

/* For L > 1 one GEMM per sample j writes the slice u[:, j, :] (row stride N*L): this needs no
 * transposed copy of Lx, and each GEMM (N x H) * (H x L) is still large enough for the BLAS.
 * For L == 1 (vector features) the whole score matrix is a single GEMM Gz * Lx^T. */
void wcmi_mi_scores(int N, int H, int L, const float *Lx, const float *Gz, float *u) {
  if (L == 1) {
    wcmi_sgemm(0, 1, N, N, H, 1.0f, Gz, H, Lx, H, 0.0f, u, N);
    return;
  }
  for (int j = 0; j < N; j++) {
    const float *lx_j = Lx + (size_t)j * H * L; // (H, L)
    wcmi_sgemm(0, 0, N, L, H, 1.0f, Gz, H, lx_j, L, 0.0f, u + (size_t)j * L, N * L);
  }
}

void wcmi_mi_scores_backward(int N, int H, int L, const float *Lx, const float *Gz, const float *du, float *dLx,
                             float *dGz) {
  if (L == 1) {
    // du: (N, N). dGz = du * Lx; dLx = du^T * Gz.
    if (dGz) wcmi_sgemm(0, 0, N, H, N, 1.0f, du, N, Lx, H, 0.0f, dGz, H);
    if (dLx) wcmi_sgemm(1, 0, N, H, N, 1.0f, du, N, Gz, H, 0.0f, dLx, H);
    return;
  }
  for (int j = 0; j < N; j++) {
    const float *lx_j = Lx + (size_t)j * H * L;  // (H, L)
    const float *du_j = du + (size_t)j * L;      // du[:, j, :]: (N, L), row stride N*L
    // dGz += du[:, j, :] * Lx_j^T, summed over j in order (the first GEMM overwrites).
    if (dGz) wcmi_sgemm(0, 1, N, H, L, 1.0f, du_j, N * L, lx_j, L, j == 0 ? 0.0f : 1.0f, dGz, H);
    // dLx_j = Gz^T * du[:, j, :]: (H, L).
    if (dLx) wcmi_sgemm(1, 0, H, L, N, 1.0f, Gz, H, du_j, N * L, 0.0f, dLx + (size_t)j * H * L, L);
  }
}
