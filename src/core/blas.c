/* CBLAS bridge.
 *
 * wcmi runs exactly one thread pool: OpenMP's. The BLAS is kept single-threaded and large GEMMs are
 * split into independent row or column blocks, one per OpenMP thread. Two pools (libgomp's
 * spinning workers plus OpenBLAS's pthreads) on a 2-core machine fight over the cores after every
 * OpenMP region and made small GEMMs several times slower; one pool removes that. The split depends
 * only on the thread count, so results stay reproducible for a fixed --threads. */
#include "wcmi/blas.h"

#include "core/blas_bf16.h"
#include "wcmi/core.h"

#include <cblas.h>
#include <omp.h>
#include <strings.h>

/* Below this many multiply-adds a GEMM runs on one thread: splitting would cost more than it saves. */
static const double SPLIT_MIN_MACS = 1 << 20;

static void gemm_block(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                       const float *B, int ldb, float beta, float *C, int ldc) {
  cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans, M, N, K, alpha,
              A, lda, B, ldb, beta, C, ldc);
}

/* The process's GEMM precision: like the BLAS's own thread count, one setting for the process, made
 * once at start-up (wcmi_blas_set_precision), before any thread runs a GEMM. */
static wcmi_gemm_precision g_precision = WCMI_GEMM_FP32;

/* Below this many multiply-adds a bf16 GEMM would spend more converting than it saves. */
static const double BF16_MIN_MACS = 1 << 22;

int wcmi_blas_set_precision(wcmi_ctx *ctx, wcmi_gemm_precision p) {
  if (p != WCMI_GEMM_FP32 && p != WCMI_GEMM_BF16)
    return wcmi_fail(ctx, WCMI_EINVAL, "unknown GEMM precision %d", (int)p);
  if (p == WCMI_GEMM_BF16 && !wcmi_bf16_gemm_available())
    return wcmi_fail(ctx, WCMI_EINVAL,
                     "bf16 GEMMs need a wcmi built with oneDNN (libdnnl-dev) and a CPU it runs bf16 on (AVX-512, "
                     "natively with AVX512_BF16 or AMX); %s",
                     wcmi_bf16_build_has_dnnl() ? "oneDNN has no bf16 kernel for this CPU" : "this build has no oneDNN");
  g_precision = p;
  return 0;
}

wcmi_gemm_precision wcmi_blas_precision(void) { return g_precision; }

int wcmi_blas_bf16_available(void) { return wcmi_bf16_gemm_available(); }

const char *wcmi_gemm_precision_name(wcmi_gemm_precision p) { return p == WCMI_GEMM_BF16 ? "bf16" : "fp32"; }

void wcmi_sgemm_fp32(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                     const float *B, int ldb, float beta, float *C, int ldc) {
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

void wcmi_sgemm(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                int ldb, float beta, float *C, int ldc) {
  if (M <= 0 || N <= 0) return;
  if (g_precision == WCMI_GEMM_BF16 && alpha == 1.0f && K > 0 && (double)M * N * K >= BF16_MIN_MACS &&
      wcmi_sgemm_bf16(transA, transB, M, N, K, A, lda, B, ldb, beta, C, ldc) == 0)
    return;
  wcmi_sgemm_fp32(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

#ifdef WCMI_HAVE_OPENBLAS_THREADS
/* OpenBLAS always runs single-threaded inside wcmi (see above); n is accepted for the API. */
void wcmi_blas_set_threads(int n) {
  (void)n;
  openblas_set_num_threads(1);
}
const char *wcmi_blas_info(void) { return openblas_get_config(); }

/* Kernel sets that use at most AVX2: a CPU with AVX-512 is better served by SkylakeX's. */
static int is_avx2_core(const char *core) {
  static const char *const avx2_cores[] = {"Haswell", "Zen", "Sandybridge", "Excavator", "Steamroller", "Piledriver"};
  for (size_t i = 0; i < sizeof avx2_cores / sizeof avx2_cores[0]; i++)
    if (core && !strcasecmp(core, avx2_cores[i])) return 1;
  return 0;
}

/* SkylakeX's kernels need AVX-512 F, BW, DQ and VL, and the OS must save the AVX-512 state
 * (__builtin_cpu_supports checks both). */
static int cpu_runs_skylakex_kernels(void) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
#else
  return 0;
#endif
}

const char *wcmi_blas_better_coretype(void) {
  if (!is_avx2_core(openblas_get_corename()) || !cpu_runs_skylakex_kernels()) return NULL;
  return "SkylakeX";
}
#else
void wcmi_blas_set_threads(int n) { (void)n; }
const char *wcmi_blas_info(void) { return "generic CBLAS"; }
const char *wcmi_blas_better_coretype(void) { return NULL; }
#endif
