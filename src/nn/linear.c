/* torch.nn.Linear: y = x w^T + b with x (N, I), w (O, I), b (O), y (N, O). Three SGEMMs. */
#include "wcmi/blas.h"
#include "wcmi/nn.h"

#include <omp.h>

static const double SIDE_BY_SIDE_MAX_MACS = 1 << 24;

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
  const double macs = (double)N * I * O;
  if (dx && dw && macs <= SIDE_BY_SIDE_MAX_MACS && !omp_in_parallel() && omp_get_max_threads() == 2) {
    /* The two GEMMs have the same N*I*O multiply-adds: on two threads run small ones side by side,
     * each whole, instead of splitting each in two: one fork instead of two and no half-size GEMMs
     * (the global estimator's 1x1 convs on 1x1 maps are 20-100 microsecond GEMMs where that shows).
     * Large ones are split as usual: two whole GEMMs at once contend for memory bandwidth. */
#pragma omp parallel sections num_threads(2)
    {
#pragma omp section
      wcmi_sgemm(0, 0, N, I, O, 1.0f, dy, O, w, I, 0.0f, dx, I);
#pragma omp section
      wcmi_sgemm(1, 0, O, I, N, 1.0f, dy, O, x, I, 1.0f, dw, I);
    }
  } else {
    /* dx (N, I) = dy (N, O) . w (O, I) */
    if (dx) wcmi_sgemm(0, 0, N, I, O, 1.0f, dy, O, w, I, 0.0f, dx, I);
    /* dw (O, I) += dy^T (O, N) . x (N, I) */
    if (dw) wcmi_sgemm(1, 0, O, I, N, 1.0f, dy, O, x, I, 1.0f, dw, I);
  }
  /* db (O) += column sums of dy, in double, rows in order: reproducible. Serial for the reason above. */
  if (db) {
    for (int o = 0; o < O; o++) {
      double acc = 0.0;
      for (int n = 0; n < N; n++) acc += dy[(int64_t)n * O + o];
      db[o] += (float)acc;
    }
  }
}
