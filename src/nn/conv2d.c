/* torch.nn.Conv2d (groups 1, dilation 1, zero padding, same stride and padding in both axes): the
 * shape checks, and the chooser over the algorithms that compute it. Each algorithm lives in its
 * own file and says when it applies; the first in ALGORITHMS whose `applies` holds runs the call:
 *
 *   dense     (here)               kernel covers the whole unpadded input (pad 0, KH == H, KW == W:
 *                                  every 1x1 conv on 1x1 maps, as in the global estimator): x
 *                                  (N, C*H*W) is already the transposed column matrix, so the conv
 *                                  is a linear layer, with no workspace and no copies;
 *   thin      conv2d_thin.c        a direct kernel for K = C*KH*KW <= 16 (the first conv on grayscale
 *                                  images), where a GEMM with so short an inner dimension runs at a
 *                                  fraction of the BLAS's rate;
 *   winograd  conv2d_winograd.c    4x4 stride-2 convs where F(7x7, 2x2), F(4x4, 2x2) or F(3x3, 2x2)
 *                                  on the space-to-depth form saves at least 1.5x of the multiplies
 *                                  (the encoder's second and third convs on 28x28 inputs: 3.06x and
 *                                  2.25x); not with algo WCMI_CONV_GEMM;
 *   gemm      conv2d_gemm.c        im2col + GEMM, blocked per thread or with shared GEMMs; every
 *                                  shape. It also holds the residual block's pointwise entry points.
 *
 * Every algorithm overwrites y and dx and accumulates dw. The bias gradient is summed here, the same
 * way for every algorithm but dense (a linear layer sums its own). Workspaces are sized for every
 * thread count a call may run with, so a call may pick a different thread count than finalize saw.
 */
#include "nn/conv2d_internal.h"
#include "wcmi/nn.h"

#include <limits.h>
#include <omp.h>

/* Most threads a workspace is sized for, whatever a caller writes into wcmi_conv2d_dims.threads. */
enum { CONV_THREADS_MAX = 256 };

static int conv_fail_nonpositive(wcmi_ctx *ctx, const char *name, const char *what, int v) {
  return wcmi_fail(ctx, WCMI_EINVAL, "conv2d %s: %s = %d must be positive", name, what, v);
}

int wcmi_conv2d_dims_init(wcmi_ctx *ctx, const char *name, wcmi_conv2d_dims *d) {
  if (!name || !*name) name = "(unnamed)";
  const char *labels[] = {"batch N", "input channels C", "input height H", "input width W",
                          "output channels O", "kernel height KH", "kernel width KW", "stride"};
  const int values[] = {d->N, d->C, d->H, d->W, d->O, d->KH, d->KW, d->stride};
  for (int i = 0; i < 8; i++)
    if (values[i] <= 0) return conv_fail_nonpositive(ctx, name, labels[i], values[i]);
  if (d->pad < 0) return wcmi_fail(ctx, WCMI_EINVAL, "conv2d %s: padding %d is negative", name, d->pad);
  const int64_t Hp = (int64_t)d->H + 2 * (int64_t)d->pad, Wp = (int64_t)d->W + 2 * (int64_t)d->pad;
  /* the kernels index the padded input with ints */
  if (Hp > INT_MAX || Wp > INT_MAX)
    return wcmi_fail(ctx, WCMI_EINVAL, "conv2d %s: padding %d makes the padded input too large", name, d->pad);
  if (d->KH > Hp)
    return wcmi_fail(ctx, WCMI_EINVAL, "conv2d %s: kernel height %d is larger than the padded input height %lld",
                     name, d->KH, (long long)Hp);
  if (d->KW > Wp)
    return wcmi_fail(ctx, WCMI_EINVAL, "conv2d %s: kernel width %d is larger than the padded input width %lld",
                     name, d->KW, (long long)Wp);
  const int64_t Ho = (Hp - d->KH) / d->stride + 1, Wo = (Wp - d->KW) / d->stride + 1;
  /* GEMM sizes and leading dimensions are ints: K, P and the per-sample input must fit. */
  const int64_t K = (int64_t)d->C * d->KH * d->KW, P = (int64_t)d->N * Ho * Wo;
  const int64_t in_plane = (int64_t)d->C * d->H * d->W;
  if (K > INT_MAX || P > INT_MAX || in_plane > INT_MAX || (int64_t)d->O * Ho * Wo > INT_MAX)
    return wcmi_fail(ctx, WCMI_EINVAL,
                     "conv2d %s: shape too large (C*KH*KW = %lld, N*Ho*Wo = %lld exceed the int range of the BLAS)",
                     name, (long long)K, (long long)P);
  d->Ho = (int)Ho;
  d->Wo = (int)Wo;
  d->threads = omp_get_max_threads();
  if (d->algo == WCMI_CONV_AUTO && ctx) d->algo = ctx->conv_algo;
  if (d->algo != WCMI_CONV_AUTO && d->algo != WCMI_CONV_GEMM)
    return wcmi_fail(ctx, WCMI_EINVAL, "conv2d %s: unknown algorithm %d (WCMI_CONV_AUTO or WCMI_CONV_GEMM)", name,
                     d->algo);
  return WCMI_OK;
}

/* The thread count the workspace is sized for: d->threads, read defensively (the struct is public):
 * 0 or less counts as 1, and more than CONV_THREADS_MAX as that many. */
int conv2d_sized_threads(const wcmi_conv2d_dims *d) {
  return d->threads < 1 ? 1 : d->threads > CONV_THREADS_MAX ? CONV_THREADS_MAX : d->threads;
}

/* Threads a call may use: never more than the workspace was sized for, one inside a parallel region. */
int conv2d_threads(const wcmi_conv2d_dims *d) {
  if (omp_in_parallel()) return 1;
  const int now = omp_get_max_threads(), sized = conv2d_sized_threads(d);
  return now < sized ? now : sized;
}

size_t conv2d_workspace_any_threads(const wcmi_conv2d_dims *d, conv2d_workspace_fn floats_at) {
  const int T = conv2d_sized_threads(d);
  size_t need = 0;
  for (int t = 1; t <= T; t++) {
    const size_t n = floats_at(d, t);
    if (n > need) need = n;
  }
  return need;
}

/* ---- the algorithms --------------------------------------------------------------------------- */

/* One way to compute a conv. forward overwrites y; backward overwrites dx (when not NULL) and
 * accumulates dw (when not NULL), and db too where sums_bias_grad (else db is NULL here). */
typedef struct conv2d_algo {
  const char *name;
  int (*applies)(const wcmi_conv2d_dims *d);
  conv2d_workspace_fn workspace_floats; /* at T threads */
  void (*forward)(const wcmi_conv2d_dims *d, const float *x, const float *w, const float *b, float *y, float *ws,
                  int T);
  void (*backward)(const wcmi_conv2d_dims *d, const float *x, const float *w, const float *dy, float *dx, float *dw,
                   float *db, float *ws, int T);
  int sums_bias_grad;
} conv2d_algo;

static size_t no_workspace(const wcmi_conv2d_dims *d, int T) { return 0; }
static int always(const wcmi_conv2d_dims *d) { return 1; }

static void dense_forward(const wcmi_conv2d_dims *d, const float *x, const float *w, const float *b, float *y,
                          float *ws, int T) {
  wcmi_linear_forward(d->N, (int)conv2d_K(d), d->O, x, w, b, y);
}
static void dense_backward(const wcmi_conv2d_dims *d, const float *x, const float *w, const float *dy, float *dx,
                           float *dw, float *db, float *ws, int T) {
  wcmi_linear_backward(d->N, (int)conv2d_K(d), d->O, x, w, dy, dx, dw, db);
}

static void thin_forward(const wcmi_conv2d_dims *d, const float *x, const float *w, const float *b, float *y,
                         float *ws, int T) {
  conv2d_thin_forward(d, x, w, b, y, T);
}
static void thin_backward(const wcmi_conv2d_dims *d, const float *x, const float *w, const float *dy, float *dx,
                          float *dw, float *db, float *ws, int T) {
  conv2d_thin_backward(d, x, w, dy, dx, dw, ws, T);
}

static size_t winograd_workspace(const wcmi_conv2d_dims *d, int T) { return conv2d_winograd_workspace_floats(d); }
static void winograd_backward(const wcmi_conv2d_dims *d, const float *x, const float *w, const float *dy, float *dx,
                              float *dw, float *db, float *ws, int T) {
  conv2d_winograd_backward(d, x, w, dy, dx, dw, ws, T);
}

static void gemm_backward(const wcmi_conv2d_dims *d, const float *x, const float *w, const float *dy, float *dx,
                          float *dw, float *db, float *ws, int T) {
  conv2d_gemm_backward(d, x, w, dy, dx, dw, ws, T);
}

/* In order of preference: the first that applies runs. */
static const conv2d_algo ALGORITHMS[] = {
    {"dense", conv2d_is_dense, no_workspace, dense_forward, dense_backward, 1},
    {"thin", conv2d_thin_applies, conv2d_thin_workspace_floats, thin_forward, thin_backward, 0},
    {"winograd", conv2d_winograd_applies, winograd_workspace, conv2d_winograd_forward, winograd_backward, 0},
    {"gemm", always, conv2d_gemm_workspace_floats, conv2d_gemm_forward, gemm_backward, 0},
};

static const conv2d_algo *choose(const wcmi_conv2d_dims *d) {
  const int n = (int)(sizeof ALGORITHMS / sizeof ALGORITHMS[0]);
  for (int i = 0; i < n - 1; i++)
    if (ALGORITHMS[i].applies(d)) return &ALGORITHMS[i];
  return &ALGORITHMS[n - 1];
}

const char *conv2d_algorithm_name(const wcmi_conv2d_dims *d) { return choose(d)->name; }

size_t wcmi_conv2d_workspace_floats(const wcmi_conv2d_dims *d) {
  return conv2d_workspace_any_threads(d, choose(d)->workspace_floats);
}

void wcmi_conv2d_forward(const wcmi_conv2d_dims *d, const float *x, const float *w, const float *b, float *y,
                         float *ws) {
  choose(d)->forward(d, x, w, b, y, ws, conv2d_threads(d));
}

void wcmi_conv2d_backward(const wcmi_conv2d_dims *d, const float *x, const float *w, const float *dy, float *dx,
                          float *dw, float *db, float *ws) {
  const conv2d_algo *a = choose(d);
  if (!a->sums_bias_grad) {
    if (db) conv2d_bias_grad(d->N, d->O, d->Ho * d->Wo, dy, db);
    db = NULL;
    if (!dx && !dw) return;
  }
  a->backward(d, x, w, dy, dx, dw, db, ws, conv2d_threads(d));
}
