/* torch.nn.Linear: y = x w^T + b with x (N, I), w (O, I), b (O), y (N, O). Three SGEMMs. */
#include "wcmi/blas.h"
#include "wcmi/nn.h"

void wcmi_linear_forward(int N, int I, int O, const float *x, const float *w, const float *b, float *y) {
  /* With a bias, y starts as the broadcast bias and the GEMM adds onto it (beta = 1): one pass over y.
   * Serial on purpose: an OpenMP region right before the GEMM would leave its workers spinning on the
   * cores the BLAS threads need, for a copy of at most a few hundred kilobytes. */
  if (b) {
    for (int n = 0; n < N; n++)
      for (int o = 0; o < O; o++) y[(int64_t)n * O + o] = b[o];
  }
  wcmi_sgemm(0, 1, N, O, I, 1.0f, x, I, w, I, b ? 1.0f : 0.0f, y, O);
}

void wcmi_linear_backward(int N, int I, int O, const float *x, const float *w, const float *dy, float *dx,
                          float *dw, float *db) {
  /* dx (N, I) = dy (N, O) . w (O, I) */
  if (dx) wcmi_sgemm(0, 0, N, I, O, 1.0f, dy, O, w, I, 0.0f, dx, I);
  /* dw (O, I) += dy^T (O, N) . x (N, I) */
  if (dw) wcmi_sgemm(1, 0, O, I, N, 1.0f, dy, O, x, I, 1.0f, dw, I);
  /* db (O) += column sums of dy, in double, rows in order: reproducible. Serial for the reason above. */
  if (db) {
    for (int o = 0; o < O; o++) {
      double acc = 0.0;
      for (int n = 0; n < N; n++) acc += dy[(int64_t)n * O + o];
      db[o] += (float)acc;
    }
  }
}
