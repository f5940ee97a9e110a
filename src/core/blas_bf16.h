/* Internal: the bfloat16 GEMM behind wcmi_blas_set_precision (blas_bf16.c). */
#ifndef WCMI_CORE_BLAS_BF16_H
#define WCMI_CORE_BLAS_BF16_H

/* C[M,N] = op(A) op(B) + beta C with A and B rounded to bfloat16 and fp32 accumulation, row-major
 * (wcmi_sgemm's arguments, alpha 1). beta must be 0 or 1. Returns 0, or -1 when it could not run
 * (no oneDNN in this build, no native bf16 kernel on this CPU, out of memory): the caller then runs
 * the fp32 GEMM, and C is untouched. */
int wcmi_sgemm_bf16(int transA, int transB, int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                    float beta, float *C, int ldc);
/* 1 when this wcmi was built with oneDNN. */
int wcmi_bf16_build_has_dnnl(void);
/* 1 when this build and CPU run the bf16 GEMM natively (oneDNN, not its reference code). */
int wcmi_bf16_gemm_available(void);
/* f rounded to bfloat16 the way wcmi_sgemm_bf16 rounds its inputs (nearest, ties to even). */
float wcmi_bf16_round(float f);

#endif
