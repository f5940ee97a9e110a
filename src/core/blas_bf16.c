/* The opt-in bfloat16 GEMM (wcmi_blas_set_precision): both inputs rounded to bfloat16, products
 * accumulated in fp32, through oneDNN's matmul primitive.
 *
 * Why oneDNN and not a hand-written kernel: the CPUs that make bf16 worth having (AVX512_BF16 on
 * Zen 4/5 and Cooper Lake, AMX on Sapphire Rapids) each need their own micro-kernels, and oneDNN
 * ships and dispatches them at run time. Debian's OpenBLAS 0.3.21 is built without its sbgemm.
 * oneDNN is an optional build dependency: without it (WCMI_HAVE_DNNL undefined) bf16 is reported
 * unavailable and every GEMM stays fp32.
 *
 * The inputs are converted here, round-to-nearest-even, into scratch buffers that only grow (one pair
 * per thread), so a steady training loop allocates nothing. oneDNN's primitive cache makes the
 * per-call primitive creation a lookup; the matmul itself runs on oneDNN's OpenMP threads (or on the
 * calling thread inside a parallel region), with a partition fixed by the thread count, so results
 * are reproducible for a given --threads, like the fp32 path's. */
#include "core/blas_bf16.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Round-to-nearest-even to the upper 16 bits; NaNs stay (quiet) NaNs, which plain rounding could
 * carry into the exponent and turn into an infinity. */
static inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

float wcmi_bf16_round(float f) {
  uint32_t u = (uint32_t)f32_to_bf16(f) << 16;
  float r;
  memcpy(&r, &u, sizeof r);
  return r;
}

#ifdef WCMI_HAVE_DNNL
#include <oneapi/dnnl/dnnl.h>
#include <omp.h>
#include <pthread.h>

static dnnl_engine_t g_engine; /* created once (pthread_once); owned for the process's life */
static int g_engine_ok;
static pthread_once_t g_engine_once = PTHREAD_ONCE_INIT;

static void engine_init(void) { g_engine_ok = dnnl_engine_create(&g_engine, dnnl_cpu, 0) == dnnl_success; }

/* Per-thread scratch for the converted inputs; grows to the largest GEMM seen, then stays. */
typedef struct {
  uint16_t *p;
  size_t cap;
} bf16_buf;
static _Thread_local bf16_buf t_scratch[3]; /* A and B converted to bf16; oneDNN's own scratchpad */

static uint16_t *scratch(int i, size_t n) {
  bf16_buf *b = &t_scratch[i];
  if (n > b->cap) {
    uint16_t *p = realloc(b->p, n * sizeof *p);
    if (!p) return NULL;
    b->p = p;
    b->cap = n;
  }
  return b->p;
}

/* rows x cols of a row-major matrix with row stride ld, packed densely. */
static void convert_matrix(const float *src, int rows, int cols, int ld, uint16_t *dst) {
  const int par = !omp_in_parallel() && (int64_t)rows * cols >= (1 << 16);
#pragma omp parallel for schedule(static) if (par)
  for (int r = 0; r < rows; r++) {
    const float *s = src + (size_t)r * ld;
    uint16_t *d = dst + (size_t)r * cols;
    for (int c = 0; c < cols; c++) d[c] = f32_to_bf16(s[c]);
  }
}

/* A 2-D memory descriptor for op(X) (rows x cols) over a dense stored matrix. */
static dnnl_status_t op_desc(dnnl_memory_desc_t *md, int rows, int cols, int trans, dnnl_data_type_t dt, int ld) {
  dnnl_dims_t dims = {rows, cols};
  dnnl_dims_t strides = {trans ? 1 : ld, trans ? ld : 1};
  return dnnl_memory_desc_init_by_strides(md, 2, dims, dt, strides);
}

typedef struct {
  dnnl_primitive_desc_t pd;
  dnnl_primitive_t prim;
} matmul_prim;

static void matmul_release(matmul_prim *m) {
  if (m->prim) dnnl_primitive_destroy(m->prim);
  if (m->pd) dnnl_primitive_desc_destroy(m->pd);
}

/* Builds the matmul C[M,N] (+)= op(A) op(B) for bf16 inputs stored densely (lda = K or M, ldb = N or
 * K) and fp32 C with row stride ldc; accumulate adds into C (a sum post-op). Refuses oneDNN's
 * reference implementation: it is correct but far slower than OpenBLAS's fp32 kernels. */
static int matmul_create(matmul_prim *m, int transA, int transB, int M, int N, int K, int ldc, int accumulate) {
  memset(m, 0, sizeof *m);
  dnnl_memory_desc_t a, b, c;
  if (op_desc(&a, M, K, transA, dnnl_bf16, transA ? M : K) != dnnl_success ||
      op_desc(&b, K, N, transB, dnnl_bf16, transB ? K : N) != dnnl_success ||
      op_desc(&c, M, N, 0, dnnl_f32, ldc) != dnnl_success)
    return -1;
  dnnl_matmul_desc_t desc;
  if (dnnl_matmul_desc_init(&desc, &a, &b, NULL, &c) != dnnl_success) return -1;
  dnnl_primitive_attr_t attr = NULL;
  dnnl_post_ops_t post = NULL;
  /* A scratchpad of our own per call (thread-local, below): oneDNN's library scratchpad is one buffer per
   * primitive, and its primitive cache hands the same primitive to every thread that runs the same
   * shape, so GEMMs called from inside a parallel region would share it. */
  int ok = dnnl_primitive_attr_create(&attr) == dnnl_success &&
           dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) == dnnl_success;
  if (ok && accumulate) {
    ok = dnnl_post_ops_create(&post) == dnnl_success && dnnl_post_ops_append_sum(post, 1.0f) == dnnl_success &&
         dnnl_primitive_attr_set_post_ops(attr, post) == dnnl_success;
  }
  ok = ok && dnnl_primitive_desc_create(&m->pd, &desc, attr, g_engine, NULL) == dnnl_success;
  if (post) dnnl_post_ops_destroy(post);
  if (attr) dnnl_primitive_attr_destroy(attr);
  if (!ok) {
    m->pd = NULL;
    return -1;
  }
  const char *impl = NULL;
  if (dnnl_primitive_desc_query(m->pd, dnnl_query_impl_info_str, 0, &impl) != dnnl_success || !impl ||
      !strncmp(impl, "ref", 3) || dnnl_primitive_create(&m->prim, m->pd) != dnnl_success) {
    matmul_release(m);
    return -1;
  }
  return 0;
}

int wcmi_sgemm_bf16(int transA, int transB, int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                    float beta, float *C, int ldc) {
  pthread_once(&g_engine_once, engine_init);
  if (!g_engine_ok || (beta != 0.0f && beta != 1.0f)) return -1;
  const int a_rows = transA ? K : M, a_cols = transA ? M : K;
  const int b_rows = transB ? N : K, b_cols = transB ? K : N;
  uint16_t *a16 = scratch(0, (size_t)a_rows * a_cols), *b16 = scratch(1, (size_t)b_rows * b_cols);
  if (!a16 || !b16) return -1;
  matmul_prim m;
  if (matmul_create(&m, transA, transB, M, N, K, ldc, beta == 1.0f)) return -1;
  convert_matrix(A, a_rows, a_cols, lda, a16);
  convert_matrix(B, b_rows, b_cols, ldb, b16);
  dnnl_memory_t mem[4] = {NULL, NULL, NULL, NULL};
  dnnl_stream_t stream = NULL;
  int rc = -1;
  const dnnl_memory_desc_t *src = dnnl_primitive_desc_query_md(m.pd, dnnl_query_src_md, 0),
                           *wei = dnnl_primitive_desc_query_md(m.pd, dnnl_query_weights_md, 0),
                           *dst = dnnl_primitive_desc_query_md(m.pd, dnnl_query_dst_md, 0),
                           *pad = dnnl_primitive_desc_query_md(m.pd, dnnl_query_scratchpad_md, 0);
  const size_t pad_bytes = pad ? dnnl_memory_desc_get_size(pad) : 0;
  /* the scratchpad in this thread's grow-only buffer (bytes rounded up to whole uint16_t) */
  void *pad_buf = pad_bytes ? scratch(2, (pad_bytes + 1) / 2) : NULL;
  if (!pad_bytes || pad_buf) {
    if (dnnl_memory_create(&mem[0], src, g_engine, a16) == dnnl_success &&
        dnnl_memory_create(&mem[1], wei, g_engine, b16) == dnnl_success &&
        dnnl_memory_create(&mem[2], dst, g_engine, C) == dnnl_success &&
        (!pad_bytes || dnnl_memory_create(&mem[3], pad, g_engine, pad_buf) == dnnl_success) &&
        dnnl_stream_create(&stream, g_engine, dnnl_stream_default_flags) == dnnl_success) {
      /* An execution fails only while it sets up, before it writes C, so the caller's fp32 fallback
       * still sees C as it was (which matters for beta = 1). */
      dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, mem[0]}, {DNNL_ARG_WEIGHTS, mem[1]}, {DNNL_ARG_DST, mem[2]},
                                 {DNNL_ARG_SCRATCHPAD, mem[3]}};
      if (dnnl_primitive_execute(m.prim, stream, pad_bytes ? 4 : 3, args) == dnnl_success &&
          dnnl_stream_wait(stream) == dnnl_success)
        rc = 0;
    }
  }
  if (stream) dnnl_stream_destroy(stream);
  for (int i = 0; i < 4; i++)
    if (mem[i]) dnnl_memory_destroy(mem[i]);
  matmul_release(&m);
  return rc;
}

int wcmi_bf16_build_has_dnnl(void) { return 1; }

int wcmi_bf16_gemm_available(void) {
  pthread_once(&g_engine_once, engine_init);
  if (!g_engine_ok) return 0;
  matmul_prim m;
  if (matmul_create(&m, 0, 0, 64, 64, 64, 64, 0)) return 0;
  matmul_release(&m);
  return 1;
}

#else

int wcmi_sgemm_bf16(int transA, int transB, int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                    float beta, float *C, int ldc) {
  (void)transA, (void)transB, (void)M, (void)N, (void)K, (void)A, (void)lda, (void)B, (void)ldb, (void)beta, (void)C,
      (void)ldc;
  return -1;
}
int wcmi_bf16_gemm_available(void) { return 0; }
int wcmi_bf16_build_has_dnnl(void) { return 0; }

#endif
