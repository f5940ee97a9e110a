/* CBLAS bridge. OpenBLAS gets its thread count set explicitly so that --threads also governs GEMMs
 * (it does not follow omp_set_num_threads when built with pthreads). */
#include "wcmi/blas.h"

#include <cblas.h>

void wcmi_sgemm(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                const float *B, int ldb, float beta, float *C, int ldc) {
  if (M <= 0 || N <= 0) return;
  cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans, M, N,
              K, alpha, A, lda, B, ldb, beta, C, ldc);
}

#ifdef WCMI_HAVE_OPENBLAS_THREADS
void wcmi_blas_set_threads(int n) { openblas_set_num_threads(n); }
const char *wcmi_blas_info(void) { return openblas_get_config(); }
#else
void wcmi_blas_set_threads(int n) { (void)n; }
const char *wcmi_blas_info(void) { return "generic CBLAS"; }
#endif
