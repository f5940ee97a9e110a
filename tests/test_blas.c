/* The GEMM bridge: fp32 wcmi_sgemm against a double reference in every layout, and the opt-in bf16
 * path (wcmi_blas_set_precision): its rounding, its accuracy against the same reference on rounded
 * inputs, reproducibility, and its refusal where this build or CPU cannot run it. */
#include "core/blas_bf16.h"
#include "harness.h"
#include "wcmi/blas.h"
#include "wcmi/core.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* C = op(A) op(B) + beta C in double, from the stored matrices (round: inputs rounded to bf16 first). */
static void reference(int ta, int tb, int M, int N, int K, const float *A, int lda, const float *B, int ldb, float beta,
                      const float *C0, int ldc, int round, double *out) {
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) {
      double s = 0;
      for (int k = 0; k < K; k++) {
        float a = ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
        float b = tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
        if (round) a = wcmi_bf16_round(a), b = wcmi_bf16_round(b);
        s += (double)a * b;
      }
      out[(size_t)i * N + j] = s + beta * C0[(size_t)i * ldc + j];
    }
}

static void fill(float *x, size_t n, unsigned seed) {
  wcmi_rng r;
  wcmi_rng_seed(&r, seed);
  for (size_t i = 0; i < n; i++) x[i] = 2.0f * wcmi_rng_uniform(&r) - 1.0f;
}

/* Largest |C - ref| over the M x N block, relative to the largest |ref|. */
static double max_rel_error(const float *C, int ldc, const double *ref, int M, int N) {
  double err = 0, scale = 0;
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) {
      err = fmax(err, fabs(C[(size_t)i * ldc + j] - ref[(size_t)i * N + j]));
      scale = fmax(scale, fabs(ref[(size_t)i * N + j]));
    }
  return err / scale;
}

/* Runs every layout (transposes, beta 0 and 1, C with a row stride wider than N) through wcmi_sgemm at
 * the current precision; checks against the reference on rounded (round=1) or exact inputs. */
static void check_layouts(int M, int N, int K, int round, double tol, const char *what) {
  const int ldc = N + 3;
  float *A = malloc((size_t)M * K * sizeof *A), *B = malloc((size_t)K * N * sizeof *B);
  float *C = malloc((size_t)M * ldc * sizeof *C), *C0 = malloc((size_t)M * ldc * sizeof *C0);
  double *ref = malloc((size_t)M * N * sizeof *ref);
  CHECK(A && B && C && C0 && ref);
  if (!A || !B || !C || !C0 || !ref) goto out;
  fill(A, (size_t)M * K, 1);
  fill(B, (size_t)K * N, 2);
  fill(C0, (size_t)M * ldc, 3);
  for (int ta = 0; ta < 2; ta++)
    for (int tb = 0; tb < 2; tb++)
      for (int bi = 0; bi < 2; bi++) {
        const float beta = (float)bi;
        const int lda = ta ? M : K, ldb = tb ? K : N;
        memcpy(C, C0, (size_t)M * ldc * sizeof *C);
        wcmi_sgemm(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc);
        reference(ta, tb, M, N, K, A, lda, B, ldb, beta, C0, ldc, round, ref);
        const double e = max_rel_error(C, ldc, ref, M, N);
        CHECK_MSG(e <= tol, "%s: transA %d transB %d beta %g: relative error %.3g > %.3g", what, ta, tb, beta, e, tol);
        /* the padding between rows of C is never written */
        int pad_kept = 1;
        for (int i = 0; i < M; i++)
          for (int j = N; j < ldc; j++) pad_kept &= C[(size_t)i * ldc + j] == C0[(size_t)i * ldc + j];
        CHECK_MSG(pad_kept, "%s: transA %d transB %d beta %g: wrote past N in a row of C", what, ta, tb, beta);
      }
out:
  free(A), free(B), free(C), free(C0), free(ref);
}

static void test_fp32_gemm_matches_double_reference(void) {
  CHECK(wcmi_blas_precision() == WCMI_GEMM_FP32);
  check_layouts(37, 29, 41, 0, 1e-5, "fp32 small");
  check_layouts(128, 256, 160, 0, 1e-5, "fp32 large"); /* large enough to be split over threads */
}

static void test_bf16_rounding(void) {
  CHECK(wcmi_bf16_round(1.0f) == 1.0f);
  CHECK(wcmi_bf16_round(-2.5f) == -2.5f);
  CHECK(wcmi_bf16_round(1.0f + 0x1p-8f) == 1.0f);                 /* a tie rounds to the even neighbour */
  CHECK(wcmi_bf16_round(1.0f + 3 * 0x1p-8f) == 1.0f + 0x1p-6f);   /* a tie, the other way */
  CHECK(wcmi_bf16_round(1.0f + 0x1p-8f + 0x1p-20f) == 1.0f + 0x1p-7f); /* above the tie rounds up */
  CHECK(isinf(wcmi_bf16_round(INFINITY)) && wcmi_bf16_round(-INFINITY) < 0);
  CHECK(isnan(wcmi_bf16_round(NAN)));
  /* a NaN whose payload sits only in the low bits stays a NaN (plain rounding would make it inf) */
  unsigned u = 0x7f800001u;
  float low_nan;
  memcpy(&low_nan, &u, sizeof low_nan);
  CHECK(isnan(wcmi_bf16_round(low_nan)));
  CHECK(isinf(wcmi_bf16_round(3.4e38f))); /* past bf16's largest finite value */
}

static void test_bf16_gemm_or_its_refusal(void) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  if (!wcmi_bf16_gemm_available()) {
    /* This build or CPU cannot: the request is refused with a reason, and fp32 stays. */
    CHECK(wcmi_blas_set_precision(&ctx, WCMI_GEMM_BF16) == WCMI_EINVAL);
    CHECK(strstr(ctx.msg, "bf16") != NULL);
    CHECK(wcmi_blas_precision() == WCMI_GEMM_FP32);
    printf("note: bf16 GEMM not available here (%s): only its refusal was checked\n",
           wcmi_bf16_build_has_dnnl() ? "no native kernel on this CPU" : "built without oneDNN");
    return;
  }
  CHECK_OK(&ctx, wcmi_blas_set_precision(&ctx, WCMI_GEMM_BF16));
  CHECK(wcmi_blas_precision() == WCMI_GEMM_BF16);
  /* 128 x 256 x 160 = 5.2M multiply-adds: above the bf16 threshold. Against the reference on rounded
   * inputs only fp32 accumulation is left; against exact inputs, bf16's 8-bit mantissa shows. */
  check_layouts(128, 256, 160, 1, 2e-5, "bf16 vs rounded inputs");
  check_layouts(128, 256, 160, 0, 2e-2, "bf16 vs exact inputs");
  /* ... and the rounding really happened: exact inputs are further than fp32 would be */
  {
    const int M = 128, N = 256, K = 160;
    float *A = malloc((size_t)M * K * 4), *B = malloc((size_t)K * N * 4), *C1 = malloc((size_t)M * N * 4),
          *C2 = malloc((size_t)M * N * 4);
    double *ref = malloc((size_t)M * N * sizeof *ref);
    CHECK(A && B && C1 && C2 && ref);
    if (A && B && C1 && C2 && ref) {
      fill(A, (size_t)M * K, 4);
      fill(B, (size_t)K * N, 5);
      wcmi_sgemm(0, 0, M, N, K, 1.0f, A, K, B, N, 0.0f, C1, N);
      wcmi_sgemm(0, 0, M, N, K, 1.0f, A, K, B, N, 0.0f, C2, N);
      CHECK_MSG(!memcmp(C1, C2, (size_t)M * N * 4), "bf16 GEMM: two calls differ");
      reference(0, 0, M, N, K, A, K, B, N, 0.0f, C1, N, 0, ref);
      CHECK_MSG(max_rel_error(C1, N, ref, M, N) > 1e-4, "bf16 GEMM: as exact as fp32; were the inputs rounded?");
      /* a NaN in A reaches its row of C */
      A[5 * K + 7] = NAN;
      wcmi_sgemm(0, 0, M, N, K, 1.0f, A, K, B, N, 0.0f, C1, N);
      CHECK(isnan(C1[5 * N + 0]) && !isnan(C1[4 * N + 0]));
    }
    free(A), free(B), free(C1), free(C2), free(ref);
  }
  /* GEMMs called from inside a parallel region (as the layers do) run concurrently on the same cached
   * oneDNN primitive: each call must bring its own scratchpad, so all agree with a lone call. */
  {
    enum { COPIES = 4 };
    const int M = 128, N = 256, K = 160;
    float *A = malloc((size_t)M * K * 4), *B = malloc((size_t)N * K * 4), *C = malloc((size_t)(COPIES + 1) * M * N * 4);
    CHECK(A && B && C);
    if (A && B && C) {
      fill(A, (size_t)M * K, 8);
      fill(B, (size_t)N * K, 9);
      wcmi_sgemm(0, 1, M, N, K, 1.0f, A, K, B, K, 0.0f, C, N);
      int same = 1;
      for (int round = 0; round < 5; round++) {
#pragma omp parallel for num_threads(COPIES) schedule(static, 1)
        for (int c = 1; c <= COPIES; c++) wcmi_sgemm(0, 1, M, N, K, 1.0f, A, K, B, K, 0.0f, C + (size_t)c * M * N, N);
        for (int c = 1; c <= COPIES; c++) same &= !memcmp(C, C + (size_t)c * M * N, (size_t)M * N * 4);
      }
      CHECK_MSG(same, "bf16 GEMMs run concurrently from a parallel region disagree with a lone call");
    }
    free(A), free(B), free(C);
  }
  /* a small GEMM stays fp32 */
  check_layouts(37, 29, 41, 0, 1e-5, "bf16 mode, small GEMM");
  CHECK_OK(&ctx, wcmi_blas_set_precision(&ctx, WCMI_GEMM_FP32));
  CHECK(wcmi_blas_set_precision(&ctx, (wcmi_gemm_precision)7) == WCMI_EINVAL);
  CHECK(wcmi_blas_precision() == WCMI_GEMM_FP32);
}

int main(void) {
  RUN(test_fp32_gemm_matches_double_reference);
  RUN(test_bf16_rounding);
  RUN(test_bf16_gemm_or_its_refusal);
  return wt_finish();
}
