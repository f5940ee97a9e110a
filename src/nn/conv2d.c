/* torch.nn.Conv2d (groups 1, dilation 1, zero padding, same stride and padding in both axes).
 *
 * The whole batch is lowered with im2col into ONE column matrix so that each pass is a single large
 * SGEMM (a per-sample GEMM at 7x7 output maps would have an N dimension of 49, which BLAS handles
 * poorly):
 *   cols: (K, P)   K = C*KH*KW, P = N*Ho*Wo, column p = (n, oh, ow)
 *   forward   ybuf (O, P)  = w (O, K) . cols (K, P)        then ybuf (O, N, S) -> y (N, O, S) + b
 *   backward  dyb  (O, P)  <- dy (N, O, S)
 *             dw   (O, K) += dyb (O, P) . cols^T (P, K)
 *             dcols (K, P) = w^T (K, O) . dyb (O, P)        then col2im -> dx (N, C, H, W)
 * Workspace: cols (K*P floats, reused for dcols) followed by ybuf/dyb (O*P floats).
 *
 * A "dense" conv, whose kernel covers the whole unpadded input (pad 0, KH == H, KW == W: every 1x1
 * conv on 1x1 maps, as in the global estimator), has Ho = Wo = 1 and x (N, C*H*W) is already the
 * transposed column matrix, so it runs as a linear layer with no workspace and no copies.
 *
 * A 1x1 conv with stride 1 and no padding needs no im2col: its column matrix is x with the batch and
 * channel axes swapped, (N, C, S) -> (C, N*S), and col2im is the reverse swap.
 *
 * Every parallel loop is `schedule(static)` and each output element is written by exactly one
 * iteration in a fixed order, so results do not even depend on the thread count (the BLAS aside).
 * Loops go parallel only above PARALLEL_MIN_FLOATS: each OpenMP region costs a fork/join and leaves
 * its workers spinning for a while afterwards, stealing cores from the BLAS threads that run next;
 * for a copy of less than a megabyte that costs more than it saves.
 */
#include "wcmi/blas.h"
#include "wcmi/nn.h"

#include <limits.h>
#include <string.h>

enum {
  PARALLEL_MIN_FLOATS = 1 << 18,
  /* Largest zero-padded input plane (floats) staged on the stack by the fast im2col / col2im. */
  PADDED_PLANE_MAX = 4096,
};

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
  return WCMI_OK;
}

/* Kernel covers the whole unpadded input: y (N, O) = x (N, C*H*W) . w^T. */
static int conv_is_dense(const wcmi_conv2d_dims *d) { return d->pad == 0 && d->KH == d->H && d->KW == d->W; }

size_t wcmi_conv2d_workspace_floats(const wcmi_conv2d_dims *d) {
  if (conv_is_dense(d)) return 0;
  const size_t K = (size_t)d->C * (size_t)d->KH * (size_t)d->KW;
  const size_t P = (size_t)d->N * (size_t)d->Ho * (size_t)d->Wo;
  return (K + (size_t)d->O) * P;
}

/* 1x1 kernel, stride 1, no padding: cols (C, N*S) is x (N, C, S) with the first two axes swapped. */
static int conv_is_pointwise(const wcmi_conv2d_dims *d) {
  return d->KH == 1 && d->KW == 1 && d->stride == 1 && d->pad == 0;
}

/* Output columns [lo, hi) read input columns inside [0, W) for kernel offset k (first/last valid
 * ow for iw = ow*stride - pad + k). */
static void valid_range(int out_len, int in_len, int stride, int pad, int k, int *lo, int *hi) {
  const int64_t a = (int64_t)pad - k;          /* ow*stride >= a */
  const int64_t b = (int64_t)in_len + pad - k; /* ow*stride < b */
  int64_t l = a <= 0 ? 0 : (a + stride - 1) / stride;
  int64_t h = b <= 0 ? 0 : (b + stride - 1) / stride;
  if (h > out_len) h = out_len;
  if (l > h) l = h;
  *lo = (int)l;
  *hi = (int)h;
}

/* x (N, C, H, W) -> cols (K, P). One iteration fills the S = Ho*Wo columns of sample n in row r. */
static void im2col_batch_bounded(const wcmi_conv2d_dims *d, const float *x, float *cols) {
  const int N = d->N, H = d->H, W = d->W, KH = d->KH, KW = d->KW, s = d->stride, p = d->pad;
  const int Ho = d->Ho, Wo = d->Wo, S = Ho * Wo;
  const int64_t P = (int64_t)N * S, items = (int64_t)d->C * KH * KW * N;
#pragma omp parallel for schedule(static) if (items * S >= PARALLEL_MIN_FLOATS)
  for (int64_t it = 0; it < items; it++) {
    const int r = (int)(it / N), n = (int)(it % N);
    const int kw = r % KW, kh = (r / KW) % KH, c = r / (KW * KH);
    const float *xp = x + ((int64_t)n * d->C + c) * H * W;
    float *dst = cols + r * P + (int64_t)n * S;
    int lo, hi;
    valid_range(Wo, W, s, p, kw, &lo, &hi);
    for (int oh = 0; oh < Ho; oh++, dst += Wo) {
      const int ih = oh * s - p + kh;
      if (ih < 0 || ih >= H) {
        memset(dst, 0, (size_t)Wo * sizeof *dst);
        continue;
      }
      const float *xrow = xp + (int64_t)ih * W;
      const int off = kw - p; /* iw = ow*s + off */
      for (int ow = 0; ow < lo; ow++) dst[ow] = 0.0f;
      if (s == 1) {
        if (hi > lo) memcpy(dst + lo, xrow + lo + off, (size_t)(hi - lo) * sizeof *dst);
      } else {
        for (int ow = lo; ow < hi; ow++) dst[ow] = xrow[ow * s + off];
      }
      for (int ow = hi; ow < Wo; ow++) dst[ow] = 0.0f;
    }
  }
}

/* dcols (K, P) -> dx (N, C, H, W), overwriting dx. One iteration owns one (n, c) input plane and sums
 * its KH*KW contributions in a fixed order. */
static void col2im_batch_bounded(const wcmi_conv2d_dims *d, const float *dcols, float *dx) {
  const int N = d->N, C = d->C, H = d->H, W = d->W, KH = d->KH, KW = d->KW, s = d->stride, p = d->pad;
  const int Ho = d->Ho, Wo = d->Wo, S = Ho * Wo;
  const int64_t P = (int64_t)N * S, planes = (int64_t)N * C;
#pragma omp parallel for schedule(static) if (planes * KH * KW * S >= PARALLEL_MIN_FLOATS)
  for (int64_t it = 0; it < planes; it++) {
    const int n = (int)(it / C), c = (int)(it % C);
    float *plane = dx + it * H * W;
    memset(plane, 0, (size_t)H * W * sizeof *plane);
    for (int kh = 0; kh < KH; kh++) {
      for (int kw = 0; kw < KW; kw++) {
        const int r = (c * KH + kh) * KW + kw;
        const float *src = dcols + r * P + (int64_t)n * S;
        int lo, hi;
        valid_range(Wo, W, s, p, kw, &lo, &hi);
        for (int oh = 0; oh < Ho; oh++, src += Wo) {
          const int ih = oh * s - p + kh;
          if (ih < 0 || ih >= H) continue;
          float *xrow = plane + (int64_t)ih * W;
          const int off = kw - p;
          for (int ow = lo; ow < hi; ow++) xrow[ow * s + off] += src[ow];
        }
      }
    }
  }
}

/* ybuf (O, N, S) -> y (N, O, S), adding b (O) if given. */
static void channels_major_to_batch_major(int N, int O, int S, const float *ybuf, const float *b, float *y) {
  const int64_t items = (int64_t)N * O;
#pragma omp parallel for schedule(static) if (items * S >= PARALLEL_MIN_FLOATS)
  for (int64_t it = 0; it < items; it++) {
    const int n = (int)(it / O), o = (int)(it % O);
    const float *src = ybuf + ((int64_t)o * N + n) * S;
    float *dst = y + it * S;
    const float bias = b ? b[o] : 0.0f;
    for (int i = 0; i < S; i++) dst[i] = src[i] + bias;
  }
}

/* dy (N, O, S) -> dyb (O, N, S). */
static void batch_major_to_channels_major(int N, int O, int S, const float *dy, float *dyb) {
  const int64_t items = (int64_t)O * N;
#pragma omp parallel for schedule(static) if (items * S >= PARALLEL_MIN_FLOATS)
  for (int64_t it = 0; it < items; it++) {
    const int o = (int)(it / N), n = (int)(it % N);
    memcpy(dyb + it * S, dy + ((int64_t)n * O + o) * S, (size_t)S * sizeof *dyb);
  }
}

/* db (O) += sum of dy (N, O, S) over n and s, in double, in a fixed order per channel. */
static void bias_grad_accumulate(int N, int O, int S, const float *dy, float *db) {
#pragma omp parallel for schedule(static) if ((int64_t)N * O * S >= PARALLEL_MIN_FLOATS)
  for (int o = 0; o < O; o++) {
    double acc = 0.0;
    for (int n = 0; n < N; n++) {
      const float *row = dy + ((int64_t)n * O + o) * S;
      for (int i = 0; i < S; i++) acc += row[i];
    }
    db[o] += (float)acc;
  }
}

/* im2col through a zero-padded copy of each input plane: the gathers then need no bounds checks,
 * which makes them 2-3x faster than im2col_batch_bounded on the paper's 14x14 and 28x28 maps.
 * One iteration handles one (c, n) plane and writes its KH*KW rows of cols. */
static void im2col_batch_padded(const wcmi_conv2d_dims *d, const float *x, float *cols) {
  const int N = d->N, H = d->H, W = d->W, KH = d->KH, KW = d->KW, s = d->stride, p = d->pad;
  const int Ho = d->Ho, Wo = d->Wo, S = Ho * Wo, Wp = W + 2 * p, Hp = H + 2 * p;
  const int64_t P = (int64_t)N * S, items = (int64_t)d->C * N;
#pragma omp parallel if (items * KH * KW * S >= PARALLEL_MIN_FLOATS)
  {
    float padded[PADDED_PLANE_MAX]; /* (Hp, Wp); the border stays zero, the interior is overwritten */
    memset(padded, 0, (size_t)Hp * Wp * sizeof *padded);
#pragma omp for schedule(static)
    for (int64_t it = 0; it < items; it++) {
      const int c = (int)(it / N), n = (int)(it % N);
      const float *xp = x + ((int64_t)n * d->C + c) * H * W;
      for (int i = 0; i < H; i++) memcpy(padded + (i + p) * Wp + p, xp + (int64_t)i * W, (size_t)W * sizeof *xp);
      for (int kh = 0; kh < KH; kh++)
        for (int kw = 0; kw < KW; kw++) {
          float *dst = cols + ((int64_t)(c * KH + kh) * KW + kw) * P + (int64_t)n * S;
          for (int oh = 0; oh < Ho; oh++, dst += Wo) {
            const float *src = padded + (oh * s + kh) * Wp + kw;
            for (int ow = 0; ow < Wo; ow++) dst[ow] = src[ow * s];
          }
        }
    }
  }
}

/* col2im into a zero-padded plane on the stack, then the interior is copied out: no bounds checks and
 * no separate zeroing pass over dx. Same summation order as col2im_batch_bounded. */
static void col2im_batch_padded(const wcmi_conv2d_dims *d, const float *dcols, float *dx) {
  const int N = d->N, C = d->C, H = d->H, W = d->W, KH = d->KH, KW = d->KW, s = d->stride, p = d->pad;
  const int Ho = d->Ho, Wo = d->Wo, S = Ho * Wo, Wp = W + 2 * p, Hp = H + 2 * p;
  const int64_t P = (int64_t)N * S, planes = (int64_t)N * C;
#pragma omp parallel if (planes * KH * KW * S >= PARALLEL_MIN_FLOATS)
  {
    float padded[PADDED_PLANE_MAX]; /* (Hp, Wp) */
#pragma omp for schedule(static)
    for (int64_t it = 0; it < planes; it++) {
      const int n = (int)(it / C), c = (int)(it % C);
      memset(padded, 0, (size_t)Hp * Wp * sizeof *padded);
      for (int kh = 0; kh < KH; kh++)
        for (int kw = 0; kw < KW; kw++) {
          const float *src = dcols + ((int64_t)(c * KH + kh) * KW + kw) * P + (int64_t)n * S;
          for (int oh = 0; oh < Ho; oh++, src += Wo) {
            float *dst = padded + (oh * s + kh) * Wp + kw;
            for (int ow = 0; ow < Wo; ow++) dst[ow * s] += src[ow];
          }
        }
      float *plane = dx + it * H * W;
      for (int i = 0; i < H; i++) memcpy(plane + (int64_t)i * W, padded + (i + p) * Wp + p, (size_t)W * sizeof *plane);
    }
  }
}

static int padded_plane_fits(const wcmi_conv2d_dims *d) {
  return ((int64_t)d->H + 2 * d->pad) * ((int64_t)d->W + 2 * d->pad) <= PADDED_PLANE_MAX;
}

static void im2col_batch(const wcmi_conv2d_dims *d, const float *x, float *cols) {
  if (padded_plane_fits(d))
    im2col_batch_padded(d, x, cols);
  else
    im2col_batch_bounded(d, x, cols);
}

static void col2im_batch(const wcmi_conv2d_dims *d, const float *dcols, float *dx) {
  if (padded_plane_fits(d))
    col2im_batch_padded(d, dcols, dx);
  else
    col2im_batch_bounded(d, dcols, dx);
}

/* x (N, C, H, W) -> cols (K, P) */
static void lower_input(const wcmi_conv2d_dims *d, const float *x, float *cols) {
  if (conv_is_pointwise(d))
    batch_major_to_channels_major(d->N, d->C, d->H * d->W, x, cols);
  else
    im2col_batch(d, x, cols);
}

void wcmi_conv2d_forward(const wcmi_conv2d_dims *d, const float *x, const float *w, const float *b, float *y,
                         float *ws) {
  const int N = d->N, O = d->O, K = d->C * d->KH * d->KW, S = d->Ho * d->Wo, P = N * S;
  if (conv_is_dense(d)) {
    wcmi_linear_forward(N, K, O, x, w, b, y);
    return;
  }
  float *cols = ws, *ybuf = ws + (size_t)K * P;
  lower_input(d, x, cols);
  wcmi_sgemm(0, 0, O, P, K, 1.0f, w, K, cols, P, 0.0f, ybuf, P);
  channels_major_to_batch_major(N, O, S, ybuf, b, y);
}

void wcmi_conv2d_backward(const wcmi_conv2d_dims *d, const float *x, const float *w, const float *dy, float *dx,
                          float *dw, float *db, float *ws) {
  const int N = d->N, O = d->O, K = d->C * d->KH * d->KW, S = d->Ho * d->Wo, P = N * S;
  if (conv_is_dense(d)) {
    wcmi_linear_backward(N, K, O, x, w, dy, dx, dw, db);
    return;
  }
  if (db) bias_grad_accumulate(N, O, S, dy, db);
  if (!dx && !dw) return;
  float *cols = ws, *dyb = ws + (size_t)K * P;
  batch_major_to_channels_major(N, O, S, dy, dyb);
  if (dw) {
    /* The columns are rebuilt rather than kept from forward: the workspace may be shared by all
     * layers of a net, and im2col costs little next to the GEMMs unless K is tiny (layer0, K = 16). */
    lower_input(d, x, cols);
    wcmi_sgemm(0, 1, O, K, P, 1.0f, dyb, P, cols, P, 1.0f, dw, K);
  }
  if (dx) {
    wcmi_sgemm(1, 0, K, P, O, 1.0f, w, K, dyb, P, 0.0f, cols, P);
    if (conv_is_pointwise(d))
      channels_major_to_batch_major(N, d->C, S, cols, NULL, dx);
    else
      col2im_batch(d, cols, dx);
  }
}
