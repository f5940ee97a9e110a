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
/* The same GEMM in fp32 whatever the process's precision: for products whose rounding the results
 * depend on directly (the critics' score matrix, which feeds exp and logsumexp). */
void wcmi_sgemm_fp32(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                     const float *B, int ldb, float beta, float *C, int ldc);

/* GEMM precision of the process. FP32 (the default) is OpenBLAS's SGEMM. BF16 (opt-in) rounds both
 * inputs of every large wcmi_sgemm (at least 2^22 multiply-adds, alpha 1, beta 0 or 1: the
 * convolutions and linear layers of a step) to bfloat16 and accumulates in fp32, on oneDNN's kernels
 * for AVX512_BF16 or AMX; the rest stays fp32. Like the BLAS's thread count it is one setting for
 * the process: set it once, before any GEMM runs. */
typedef enum { WCMI_GEMM_FP32 = 0, WCMI_GEMM_BF16 = 1 } wcmi_gemm_precision;
struct wcmi_ctx;
/* Returns 0, or WCMI_EINVAL with a message in ctx when this build (no oneDNN) or CPU (no native bf16
 * kernel) cannot run BF16; the precision is then unchanged. */
int wcmi_blas_set_precision(struct wcmi_ctx *ctx, wcmi_gemm_precision p);
wcmi_gemm_precision wcmi_blas_precision(void);
/* 1 when wcmi_blas_set_precision(ctx, WCMI_GEMM_BF16) would succeed here. */
int wcmi_blas_bf16_available(void);
const char *wcmi_gemm_precision_name(wcmi_gemm_precision p); /* "fp32" or "bf16" */
/* Keeps the BLAS single-threaded: wcmi_sgemm splits large GEMMs over OpenMP threads itself. */
void wcmi_blas_set_threads(int n);
/* Name of the linked BLAS and its configuration, for reports. */
const char *wcmi_blas_info(void);
/* OpenBLAS chooses its kernels once, when it is loaded: from its table of CPUs, or from the
 * OPENBLAS_CORETYPE environment variable. Set to an AVX2 kernel set (Haswell, Zen, ...) on a CPU
 * that runs AVX-512 (the environment of this project's Zen 5 machines sets Haswell), SGEMM runs at
 * half the speed OpenBLAS reaches on its own. Returns the OPENBLAS_CORETYPE that would serve this CPU better ("SkylakeX")
 * when the loaded kernels are such an AVX2 set, else NULL (also when the BLAS is not OpenBLAS). It
 * can only take effect in a new process; the training commands print a note (trainer.c). */
const char *wcmi_blas_better_coretype(void);

#ifdef __cplusplus
}
#endif
#endif
