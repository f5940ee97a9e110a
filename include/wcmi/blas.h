/* Thin wrappers over CBLAS so the rest of wcmi speaks row-major float GEMM in one way. */
#ifndef WCMI_BLAS_H
#define WCMI_BLAS_H
#ifdef __cplusplus
extern "C" {
#endif

/* C[M,N] = alpha * op(A) * op(B) + beta * C, row-major. transA/transB: 0 = as stored, 1 = transposed.
 * lda/ldb/ldc are the row strides of the matrices as stored. */
void wcmi_sgemm(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                const float *B, int ldb, float beta, float *C, int ldc);
/* Keeps the BLAS single-threaded: wcmi_sgemm splits large GEMMs over OpenMP threads itself. */
void wcmi_blas_set_threads(int n);
/* Name of the linked BLAS and its configuration, for reports. */
const char *wcmi_blas_info(void);

#ifdef __cplusplus
}
#endif
#endif
