/* CBLAS bridge.
 *
 * wcmi runs exactly one thread pool: OpenMP's. The BLAS is kept single-threaded and large GEMMs are
 * split into independent row or column blocks, one per OpenMP thread. Two pools (libgomp's
 * spinning workers plus OpenBLAS's pthreads) on a 2-core machine fight over the cores after every
 * OpenMP region and made small GEMMs several times slower; one pool removes that. The split depends
 * only on the thread count, so results stay reproducible for a fixed --threads. */
#include "wcmi/blas.h"

#include <cblas.h>
#include <omp.h>

/* Below this many multiply-adds a GEMM runs on one thread: splitting would cost more than it saves. */
static const double SPLIT_MIN_MACS = 1 << 20;

static void gemm_block(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                       const float *B, int ldb, float beta, float *C, int ldc) {
  cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans, M, N, K, alpha,
              A, lda, B, ldb, beta, C, ldc);
}

void wcmi_sgemm(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                int ldb, float beta, float *C, int ldc) {
  if (M <= 0 || N <= 0) return;
  int T = omp_in_parallel() ? 1 : omp_get_max_threads();
  if (T <= 1 || (double)M * N * K < SPLIT_MIN_MACS || (M < 2 * 16 && N < 2 * 16)) {
    gemm_block(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  /* Split the longer side of C into T blocks, rounded to 16 so each keeps whole SIMD panels. */
  const int by_rows = M >= N;
  const int len = by_rows ? M : N;
  int chunk = (len + T - 1) / T;
  chunk = (chunk + 15) / 16 * 16;
#pragma omp parallel for schedule(static) num_threads(T)
  for (int t = 0; t < T; t++) {
    int lo = t * chunk, hi = lo + chunk < len ? lo + chunk : len;
    if (lo >= hi) continue;
    if (by_rows) {
      /* rows lo..hi of op(A) and of C */
      const float *Ab = transA ? A + lo : A + (size_t)lo * lda;
      gemm_block(transA, transB, hi - lo, N, K, alpha, Ab, lda, B, ldb, beta, C + (size_t)lo * ldc, ldc);
    } else {
      /* columns lo..hi of op(B) and of C */
      const float *Bb = transB ? B + (size_t)lo * ldb : B + lo;
      gemm_block(transA, transB, M, hi - lo, K, alpha, A, lda, Bb, ldb, beta, C + lo, ldc);
    }
  }
}

#ifdef WCMI_HAVE_OPENBLAS_THREADS
/* OpenBLAS always runs single-threaded inside wcmi (see above); n is accepted for the API. */
void wcmi_blas_set_threads(int n) {
  (void)n;
  openblas_set_num_threads(1);
}
const char *wcmi_blas_info(void) { return openblas_get_config(); }
#else
void wcmi_blas_set_threads(int n) { (void)n; }
const char *wcmi_blas_info(void) { return "generic CBLAS"; }
#endif
