/* Prototype (not built by CMake): routes cblas_sgemm to oneDNN's dnnl_sgemm, to measure option 2 of
 * RESULTS-perf.md 4.2 end to end without changing wcmi:
 *   gcc -O2 -shared -fPIC bench/proto/cblas_dnnl_shim.c -o /tmp/libcblas_dnnl.so -l:libdnnl.so.2
 *   LD_PRELOAD=/tmp/libcblas_dnnl.so build/release/bench_wcmi_steps --row worst ...
 * dnnl_sgemm is row-major with 'N'/'T' transposes and int64 sizes; it threads with OpenMP (the
 * thread count wcmi_set_threads gives omp_set_num_threads). */
#include <stdint.h>

enum { RowMajor = 101, ColMajor = 102, NoTrans = 111, Trans = 112 };
int dnnl_sgemm(char ta, char tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
               const float *B, int64_t ldb, float beta, float *C, int64_t ldc);

void cblas_sgemm(int order, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                 int ldb, float beta, float *C, int ldc) {
  char a = ta == Trans ? 'T' : 'N', b = tb == Trans ? 'T' : 'N';
  if (order == RowMajor) dnnl_sgemm(a, b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  else dnnl_sgemm(b, a, N, M, K, alpha, B, ldb, A, lda, beta, C, ldc); /* C^T = B^T A^T */
}
