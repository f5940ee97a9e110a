/* torch.nn.Conv2d as im2col + GEMM: the algorithm every shape can take (conv2d.c picks it when no
 * specialized one applies), and the pointwise (1x1) entry points of the residual block.
 *
 * Each pass is a GEMM over an im2col column matrix:
 *   cols: (K, P)   K = C*KH*KW, P = (samples)*Ho*Wo, column p = (n, oh, ow)
 *   forward   ybuf (O, P)  = w (O, K) . cols (K, P)        then ybuf (O, n, S) -> y (N, O, S) + b
 *   backward  dyb  (O, P)  <- dy (N, O, S)
 *             dw   (O, K) += dyb (O, P) . cols^T (P, K)
 *             dcols (K, P) = w^T (K, O) . dyb (O, P)        then col2im -> dx (N, C, H, W)
 *
 * Blocked path (the default). The batch is cut into blocks of g samples, g chosen so a block has at
 * least BLOCK_MIN_COLS columns (GEMMs with N >= 256 run about as fast as whole-batch ones, while a
 * per-sample GEMM at 7x7 maps, N = 49, loses a quarter); for the paper's 4x4 convs its column matrix
 * is then about L2-sized (1.2 MB for 64->128), while large weights get wider blocks (block_samples).
 * Each OpenMP thread owns a contiguous range of blocks and runs single-threaded GEMMs on them, so
 * im2col, col2im and the layout changes work on data in cache instead of streaming a column matrix
 * of (K + O) * N*Ho*Wo floats (29 MB for the encoder's 64->128 conv) through memory three times, and
 * the workspace is a few MiB per thread. The weight gradient is summed per thread: thread 0 straight
 * into dw, the others into private partial buffers that are added to dw afterwards in thread order.
 *
 * Shared-GEMM path: the batch in chunks of about SHARED_CHUNK_COLS GEMM columns, one GEMM per chunk
 * and pass split over the threads by wcmi_sgemm, dw accumulated chunk after chunk. Used only where
 * the blocked path's per-thread dw partials would exceed DW_PARTIAL_MAX_FLOATS: the 2048->2048 1x1
 * conv at two or more threads, where it measured ~10% faster than the blocked path (473 vs 520 ms
 * forward+backward). Chunks of 1568 columns (32 samples at 7x7) cost nothing measurable against
 * one whole-batch GEMM (0.96-0.97 of SGEMM either way, bench_conv_bench) and need a 24.5 MiB
 * workspace instead of 98 MiB.
 *
 * A 1x1 conv with stride 1 and no padding needs no im2col: its column matrix is x with the batch and
 * channel axes swapped, (n, C, S) -> (C, n*S), and col2im is the reverse swap.
 *
 * Determinism: every loop is statically partitioned and every output element is written by one
 * iteration in a fixed order; the partition (and with it dw's summation order) depends only on the
 * thread count, so a fixed --threads gives bit-identical results. The shared-GEMM path's loops go
 * parallel only above PARALLEL_MIN_FLOATS: each OpenMP region costs a fork/join and leaves its
 * workers spinning for a while afterwards, which for a copy of less than a megabyte costs more than
 * it saves.
 */
#include "nn/batchnorm_internal.h"
#include "nn/conv2d_internal.h"
#include "wcmi/blas.h"
#include "wcmi/nn.h"

#include <omp.h>
#include <string.h>

enum {
  PARALLEL_MIN_FLOATS = 1 << 18,
  /* Largest zero-padded input plane (floats) staged on the stack by the fast im2col / col2im. */
  PADDED_PLANE_MAX = 4096,
  /* Blocked path: at least this many GEMM columns per block ... */
  BLOCK_MIN_COLS = 256,
  /* ... while the block's column matrix stays within this many floats (unless one sample is more). */
  BLOCK_MAX_COLS_FLOATS = 1 << 21,
  /* ... and at least O*K / WEIGHT_FLOATS_PER_COL columns (see block_samples). */
  WEIGHT_FLOATS_PER_COL = 4096,
  /* Largest total of per-thread weight-gradient partials (floats) the blocked path may use. */
  DW_PARTIAL_MAX_FLOATS = 1 << 21,
  /* Shared-GEMM path: columns per chunk (see shared_chunk_samples). */
  SHARED_CHUNK_COLS = 1568,
};

/* Samples per block for T threads: enough columns for an efficient GEMM, few enough that the block's
 * column matrix stays near L2 size, and a block count that is a multiple of T so every thread gets the
 * same number of blocks. */
static int block_samples(const wcmi_conv2d_dims *d, int T) {
  const int64_t S = (int64_t)d->Ho * d->Wo, K = conv2d_K(d), N = d->N;
  /* Each block's GEMM streams the whole weight (O*K floats) once and does 2*cols FLOPs per weight
   * float: large weights (the H->H 1x1 convs at H = 2048) need wider blocks to amortize that stream. */
  int64_t cols = (int64_t)d->O * K / WEIGHT_FLOATS_PER_COL;
  if (cols < BLOCK_MIN_COLS) cols = BLOCK_MIN_COLS;
  int64_t g = (cols + S - 1) / S;
  while (g > 1 && K * g * S > BLOCK_MAX_COLS_FLOATS) g--;
  if (g > N) g = N;
  int64_t nb = (N + g - 1) / g;
  if (nb > T) nb = nb / T * T;
  return (int)((N + nb - 1) / nb);
}

/* One thread's scratch: the block's column matrix (K, g*S) and its output / output gradient (O, g*S). */
static size_t block_slot_floats(const wcmi_conv2d_dims *d, int T) {
  const size_t cols = (size_t)block_samples(d, T) * (size_t)d->Ho * (size_t)d->Wo;
  const size_t n = ((size_t)conv2d_K(d) + (size_t)d->O) * cols;
  return (n + 15) / 16 * 16; /* keep every slot 64-byte aligned */
}

static size_t dw_partial_floats(const wcmi_conv2d_dims *d) {
  const size_t n = (size_t)d->O * (size_t)conv2d_K(d);
  return (n + 15) / 16 * 16;
}

/* The blocked path needs a private weight-gradient buffer per extra thread; past a limit (many threads
 * on a large 1x1 conv) the shared-GEMM path is used instead. */
static int use_blocked(const wcmi_conv2d_dims *d, int T) {
  return (double)(T - 1) * (double)dw_partial_floats(d) <= (double)DW_PARTIAL_MAX_FLOATS;
}

/* Samples per chunk of the shared-GEMM path for a batch of N: chunks of about SHARED_CHUNK_COLS
 * columns, as even as the batch allows. ceil(N / ceil(N*S / C)) <= ceil(C / S) for every N, which
 * is what the workspace is sized for. */
static int shared_chunk_samples(const wcmi_conv2d_dims *d, int N) {
  const int64_t S = (int64_t)d->Ho * d->Wo, P = (int64_t)N * S;
  const int64_t chunks = (P + SHARED_CHUNK_COLS - 1) / SHARED_CHUNK_COLS;
  return (int)((N + chunks - 1) / chunks);
}

static size_t shared_workspace_floats(const wcmi_conv2d_dims *d) {
  const int64_t S = (int64_t)d->Ho * d->Wo;
  int64_t g = (SHARED_CHUNK_COLS + S - 1) / S;
  if (g > d->N) g = d->N;
  return (size_t)(conv2d_K(d) + d->O) * (size_t)g * (size_t)S;
}

/* The block size is not monotone in the batch (the block count is rounded to a multiple of T), so
 * the blocked path is sized for the largest block any batch of 1 .. N samples gets. */
size_t conv2d_gemm_workspace_floats(const wcmi_conv2d_dims *d, int T) {
  if (use_blocked(d, T)) {
    wcmi_conv2d_dims e = *d;
    size_t slot = 0;
    for (e.N = 1; e.N <= d->N; e.N++) {
      const size_t n = block_slot_floats(&e, T);
      if (n > slot) slot = n;
    }
    return (size_t)T * slot + (size_t)(T - 1) * dw_partial_floats(d);
  }
  return shared_workspace_floats(d);
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

/* The lowering helpers below work on the samples [n0, n0 + g) and a column matrix of g*S columns.
 * `par` lets them open their own parallel loop (shared-GEMM path); the blocked path calls them from
 * inside its parallel region with par = 0. */

/* x (N, C, H, W) -> cols (K, g*S). One iteration fills the S columns of sample n0+j in row r. */
static void im2col_bounded(const wcmi_conv2d_dims *d, const float *x, int n0, int g, float *cols, int par) {
  const int H = d->H, W = d->W, KH = d->KH, KW = d->KW, s = d->stride, p = d->pad;
  const int Ho = d->Ho, Wo = d->Wo, S = Ho * Wo;
  const int64_t P = (int64_t)g * S, items = conv2d_K(d) * g;
#pragma omp parallel for schedule(static) if (par && items * S >= PARALLEL_MIN_FLOATS)
  for (int64_t it = 0; it < items; it++) {
    const int r = (int)(it / g), j = (int)(it % g);
    const int kw = r % KW, kh = (r / KW) % KH, c = r / (KW * KH);
    const float *xp = x + ((int64_t)(n0 + j) * d->C + c) * H * W;
    float *dst = cols + r * P + (int64_t)j * S;
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

/* dcols (K, g*S) -> dx planes of samples [n0, n0 + g), overwritten. One iteration owns one (n, c)
 * input plane and sums its KH*KW contributions in a fixed order. */
static void col2im_bounded(const wcmi_conv2d_dims *d, const float *dcols, int n0, int g, float *dx, int par) {
  const int C = d->C, H = d->H, W = d->W, KH = d->KH, KW = d->KW, s = d->stride, p = d->pad;
  const int Ho = d->Ho, Wo = d->Wo, S = Ho * Wo;
  const int64_t P = (int64_t)g * S, planes = (int64_t)g * C;
#pragma omp parallel for schedule(static) if (par && planes * KH * KW * S >= PARALLEL_MIN_FLOATS)
  for (int64_t it = 0; it < planes; it++) {
    const int j = (int)(it / C), c = (int)(it % C);
    float *plane = dx + ((int64_t)n0 * C + it) * H * W;
    memset(plane, 0, (size_t)H * W * sizeof *plane);
    for (int kh = 0; kh < KH; kh++) {
      for (int kw = 0; kw < KW; kw++) {
        const int r = (c * KH + kh) * KW + kw;
        const float *src = dcols + r * P + (int64_t)j * S;
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

/* dst[i] = src[i*s] (and its adjoint, dst[i*s] += src[i]) with the common strides spelled out, so
 * the compiler vectorizes them (stride 2: two loads and a shuffle per four floats) instead of
 * running one scalar load and store per float. */
static inline void strided_gather(float *restrict dst, const float *restrict src, int n, int s) {
  if (s == 1)
    for (int i = 0; i < n; i++) dst[i] = src[i];
  else if (s == 2)
    for (int i = 0; i < n; i++) dst[i] = src[2 * i];
  else
    for (int i = 0; i < n; i++) dst[i] = src[i * s];
}

static inline void strided_scatter_add(float *restrict dst, const float *restrict src, int n, int s) {
  if (s == 1) {
    for (int i = 0; i < n; i++) dst[i] += src[i];
  } else if (s == 2) {
    /* Adding 0 to the odd slots turns the loop into whole-vector loads, adds and stores; it leaves
     * every value as it was (only a -0.0 there becomes +0.0). The last pair stops short so that
     * nothing past dst[2 * (n - 1)] is touched. */
    for (int i = 0; i + 1 < n; i++) {
      dst[2 * i] += src[i];
      dst[2 * i + 1] += 0.0f;
    }
    if (n > 0) dst[2 * (n - 1)] += src[n - 1];
  } else {
    for (int i = 0; i < n; i++) dst[i * s] += src[i];
  }
}

/* im2col through a zero-padded copy of each input plane: the gathers then need no bounds checks,
 * which makes them 2-3x faster than im2col_bounded on the paper's 14x14 and 28x28 maps.
 * One iteration handles one (c, n) plane and writes its KH*KW rows of cols. */
static void im2col_padded(const wcmi_conv2d_dims *d, const float *x, int n0, int g, float *cols, int par) {
  const int H = d->H, W = d->W, KH = d->KH, KW = d->KW, s = d->stride, p = d->pad;
  const int Ho = d->Ho, Wo = d->Wo, S = Ho * Wo, Wp = W + 2 * p, Hp = H + 2 * p;
  const int64_t P = (int64_t)g * S, items = (int64_t)d->C * g;
#pragma omp parallel if (par && items * KH * KW * S >= PARALLEL_MIN_FLOATS)
  {
    float padded[PADDED_PLANE_MAX]; /* (Hp, Wp); the border stays zero, the interior is overwritten */
    memset(padded, 0, (size_t)Hp * Wp * sizeof *padded);
#pragma omp for schedule(static)
    for (int64_t it = 0; it < items; it++) {
      const int c = (int)(it / g), j = (int)(it % g);
      const float *xp = x + ((int64_t)(n0 + j) * d->C + c) * H * W;
      for (int i = 0; i < H; i++) memcpy(padded + (i + p) * Wp + p, xp + (int64_t)i * W, (size_t)W * sizeof *xp);
      for (int kh = 0; kh < KH; kh++)
        for (int kw = 0; kw < KW; kw++) {
          float *dst = cols + ((int64_t)(c * KH + kh) * KW + kw) * P + (int64_t)j * S;
          for (int oh = 0; oh < Ho; oh++, dst += Wo) {
            strided_gather(dst, padded + (oh * s + kh) * Wp + kw, Wo, s);
          }
        }
    }
  }
}

/* col2im into a zero-padded plane on the stack, then the interior is copied out: no bounds checks and
 * no separate zeroing pass over dx. Same summation order as col2im_bounded. */
static void col2im_padded(const wcmi_conv2d_dims *d, const float *dcols, int n0, int g, float *dx, int par) {
  const int C = d->C, H = d->H, W = d->W, KH = d->KH, KW = d->KW, s = d->stride, p = d->pad;
  const int Ho = d->Ho, Wo = d->Wo, S = Ho * Wo, Wp = W + 2 * p, Hp = H + 2 * p;
  const int64_t P = (int64_t)g * S, planes = (int64_t)g * C;
#pragma omp parallel if (par && planes * KH * KW * S >= PARALLEL_MIN_FLOATS)
  {
    float padded[PADDED_PLANE_MAX]; /* (Hp, Wp) */
#pragma omp for schedule(static)
    for (int64_t it = 0; it < planes; it++) {
      const int j = (int)(it / C), c = (int)(it % C);
      memset(padded, 0, (size_t)Hp * Wp * sizeof *padded);
      for (int kh = 0; kh < KH; kh++)
        for (int kw = 0; kw < KW; kw++) {
          const float *src = dcols + ((int64_t)(c * KH + kh) * KW + kw) * P + (int64_t)j * S;
          for (int oh = 0; oh < Ho; oh++, src += Wo) {
            strided_scatter_add(padded + (oh * s + kh) * Wp + kw, src, Wo, s);
          }
        }
      float *plane = dx + ((int64_t)n0 * C + it) * H * W;
      for (int i = 0; i < H; i++) memcpy(plane + (int64_t)i * W, padded + (i + p) * Wp + p, (size_t)W * sizeof *plane);
    }
  }
}

static int padded_plane_fits(const wcmi_conv2d_dims *d) {
  return ((int64_t)d->H + 2 * d->pad) * ((int64_t)d->W + 2 * d->pad) <= PADDED_PLANE_MAX;
}

/* src (N, R, S) samples [n0, n0 + g) -> dst (R, g*S), through the BN+ReLU map of row r when xf is
 * given (batchnorm_internal.h's bn_affine / bn_relu, so the values are bit-identical to the BN forward). */
static void gather_samples(int n0, int g, int R, int S, const float *src, const conv2d_bnrelu *xf, float *dst,
                           int par) {
  const int64_t items = (int64_t)R * g;
#pragma omp parallel for schedule(static) if (par && items * S >= PARALLEL_MIN_FLOATS)
  for (int64_t it = 0; it < items; it++) {
    const int r = (int)(it / g), j = (int)(it % g);
    const float *from = src + ((int64_t)(n0 + j) * R + r) * S;
    float *to = dst + it * S;
    if (!xf) {
      memcpy(to, from, (size_t)S * sizeof *dst);
      continue;
    }
    const float m = xf->shift[r], k = xf->scale[r], be = xf->bias[r];
    for (int i = 0; i < S; i++) to[i] = bn_relu(bn_affine(from[i], m, k, be));
  }
}

/* src (R, g*S) -> dst (N, R, S) samples [n0, n0 + g), adding b (R) if given; added to dst's values
 * when `add`, else overwriting them. */
static void scatter_samples(int n0, int g, int R, int S, const float *src, const float *b, float *dst, int add,
                            int par) {
  const int64_t items = (int64_t)g * R;
#pragma omp parallel for schedule(static) if (par && items * S >= PARALLEL_MIN_FLOATS)
  for (int64_t it = 0; it < items; it++) {
    const int j = (int)(it / R), r = (int)(it % R);
    const float *from = src + ((int64_t)r * g + j) * S;
    float *to = dst + ((int64_t)n0 * R + it) * S;
    const float bias = b ? b[r] : 0.0f;
    if (add)
      for (int i = 0; i < S; i++) to[i] += from[i] + bias;
    else
      for (int i = 0; i < S; i++) to[i] = from[i] + bias;
  }
}

/* x samples [n0, n0 + g) -> cols (K, g*S); xf (pointwise convs only) transforms x on the way. */
static void lower_samples(const wcmi_conv2d_dims *d, const float *x, const conv2d_bnrelu *xf, int n0, int g,
                          float *cols, int par) {
  if (conv2d_is_pointwise(d))
    gather_samples(n0, g, d->C, d->H * d->W, x, xf, cols, par);
  else if (padded_plane_fits(d))
    im2col_padded(d, x, n0, g, cols, par);
  else
    im2col_bounded(d, x, n0, g, cols, par);
}

/* dcols (K, g*S) -> dx samples [n0, n0 + g), overwritten, or added to dx for pointwise convs when
 * `add` (the public entry points never add). */
static void raise_samples(const wcmi_conv2d_dims *d, const float *dcols, int n0, int g, float *dx, int add,
                          int par) {
  if (conv2d_is_pointwise(d))
    scatter_samples(n0, g, d->C, d->H * d->W, dcols, NULL, dx, add, par);
  else if (padded_plane_fits(d))
    col2im_padded(d, dcols, n0, g, dx, par);
  else
    col2im_bounded(d, dcols, n0, g, dx, par);
}

/* db (O) += sum of dy (N, O, S) over n and s, in double, in a fixed order per channel. */
void conv2d_bias_grad(int N, int O, int S, const float *dy, float *db) {
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

/* One block of samples [n0, n0 + gn) through the GEMMs, with the block's column matrix in cols and
 * its output (gradient) matrix in buf; both paths below run their blocks through these. `par`: the
 * layout loops may open their own parallel region. */
static void forward_samples(const wcmi_conv2d_dims *d, const float *x, const conv2d_bnrelu *xf, const float *w,
                            const float *b, float *y, int n0, int gn, float *cols, float *buf, int par) {
  const int O = d->O, K = (int)conv2d_K(d), S = d->Ho * d->Wo, cn = gn * S;
  lower_samples(d, x, xf, n0, gn, cols, par);
  wcmi_sgemm(0, 0, O, cn, K, 1.0f, w, K, cols, cn, 0.0f, buf, cn);
  scatter_samples(n0, gn, O, S, buf, b, y, 0, par);
}

static void backward_samples(const wcmi_conv2d_dims *d, const float *x, const conv2d_bnrelu *xf, const float *w,
                             const float *dy, float *dx, int dx_add, float *dw, int n0, int gn, float *cols,
                             float *buf, int par) {
  const int O = d->O, K = (int)conv2d_K(d), S = d->Ho * d->Wo, cn = gn * S;
  gather_samples(n0, gn, O, S, dy, NULL, buf, par);
  if (dw) {
    lower_samples(d, x, xf, n0, gn, cols, par);
    wcmi_sgemm(0, 1, O, K, cn, 1.0f, buf, cn, cols, cn, 1.0f, dw, K);
  }
  if (dx) {
    wcmi_sgemm(1, 0, K, cn, O, 1.0f, w, K, buf, cn, 0.0f, cols, cn);
    raise_samples(d, cols, n0, gn, dx, dx_add, par);
  }
}

/* ---- blocked path ---------------------------------------------------------------------------- */

static void forward_blocked(const wcmi_conv2d_dims *d, const float *x, const conv2d_bnrelu *xf, const float *w,
                            const float *b, float *y, float *ws, int T) {
  const int K = (int)conv2d_K(d), S = d->Ho * d->Wo, g = block_samples(d, T);
  const int nb = (d->N + g - 1) / g;
  const size_t slot = block_slot_floats(d, T);
#pragma omp parallel num_threads(T)
  {
    const int t = omp_get_thread_num(), team = omp_get_num_threads();
    float *cols = ws + (size_t)t * slot, *ybuf = cols + (size_t)K * g * S;
    int lo, hi;
    wcmi_thread_range(nb, t, team, &lo, &hi);
    for (int blk = lo; blk < hi; blk++) {
      const int n0 = blk * g, gn = d->N - n0 < g ? d->N - n0 : g;
      forward_samples(d, x, xf, w, b, y, n0, gn, cols, ybuf, 0);
    }
  }
}

static void backward_blocked(const wcmi_conv2d_dims *d, const float *x, const conv2d_bnrelu *xf, const float *w,
                             const float *dy, float *dx, int dx_add, float *dw, float *ws, int T) {
  const int O = d->O, K = (int)conv2d_K(d), S = d->Ho * d->Wo, g = block_samples(d, T);
  const int nb = (d->N + g - 1) / g;
  const size_t slot = block_slot_floats(d, T), part = dw_partial_floats(d);
  float *partials = ws + (size_t)T * slot; /* thread t >= 1 sums its dw into partials[(t-1) * part] */
  int team_size = 1;
#pragma omp parallel num_threads(T)
  {
    const int t = omp_get_thread_num(), team = omp_get_num_threads();
#pragma omp single
    team_size = team;
    float *cols = ws + (size_t)t * slot, *dyb = cols + (size_t)K * g * S;
    float *dwt = NULL;
    if (dw) {
      dwt = t == 0 ? dw : partials + (size_t)(t - 1) * part;
      if (t > 0) memset(dwt, 0, (size_t)O * K * sizeof *dwt);
    }
    int lo, hi;
    wcmi_thread_range(nb, t, team, &lo, &hi);
    for (int blk = lo; blk < hi; blk++) {
      const int n0 = blk * g, gn = d->N - n0 < g ? d->N - n0 : g;
      backward_samples(d, x, xf, w, dy, dx, dx_add, dwt, n0, gn, cols, dyb, 0);
    }
  }
  if (dw) wcmi_add_partials(dw, partials, team_size - 1, part, (size_t)O * K);
}

/* ---- shared-GEMM path ------------------------------------------------------------------------ */

static void forward_shared(const wcmi_conv2d_dims *d, const float *x, const conv2d_bnrelu *xf, const float *w,
                           const float *b, float *y, float *ws) {
  const int N = d->N, K = (int)conv2d_K(d), S = d->Ho * d->Wo, g = shared_chunk_samples(d, N);
  for (int n0 = 0; n0 < N; n0 += g) {
    const int gn = N - n0 < g ? N - n0 : g;
    forward_samples(d, x, xf, w, b, y, n0, gn, ws, ws + (size_t)K * gn * S, 1);
  }
}

static void backward_shared(const wcmi_conv2d_dims *d, const float *x, const conv2d_bnrelu *xf, const float *w,
                            const float *dy, float *dx, int dx_add, float *dw, float *ws) {
  const int N = d->N, K = (int)conv2d_K(d), S = d->Ho * d->Wo, g = shared_chunk_samples(d, N);
  for (int n0 = 0; n0 < N; n0 += g) {
    const int gn = N - n0 < g ? N - n0 : g;
    backward_samples(d, x, xf, w, dy, dx, dx_add, dw, n0, gn, ws, ws + (size_t)K * gn * S, 1);
  }
}

/* ---- the algorithm's entry points (conv2d.c) ------------------------------------------------- */

void conv2d_gemm_forward(const wcmi_conv2d_dims *d, const float *x, const float *w, const float *b, float *y,
                         float *ws, int T) {
  if (use_blocked(d, T))
    forward_blocked(d, x, NULL, w, b, y, ws, T);
  else
    forward_shared(d, x, NULL, w, b, y, ws);
}

void conv2d_gemm_backward(const wcmi_conv2d_dims *d, const float *x, const float *w, const float *dy, float *dx,
                          float *dw, float *ws, int T) {
  if (use_blocked(d, T))
    backward_blocked(d, x, NULL, w, dy, dx, 0, dw, ws, T);
  else
    backward_shared(d, x, NULL, w, dy, dx, 0, dw, ws);
}

/* ---- pointwise entry points for the residual block (conv2d_internal.h) ------------------------ */

/* The blocked and shared-GEMM paths read a whole sample block into the workspace before writing its
 * outputs, which is what makes y == x and dx == dy safe; the thin kernel and the dense (linear) path
 * do not, so dense shapes (1x1 maps) stage through the workspace:
 *   [0, N*C)            the transformed input (when xf is given)
 *   [N*C, N*C + N*M)    the output or input gradient, M = max(C, O), copied out afterwards. */
static size_t pointwise_dense_floats(const wcmi_conv2d_dims *d) {
  const size_t M = (size_t)(d->C > d->O ? d->C : d->O);
  return (size_t)d->N * ((size_t)d->C + M);
}

size_t conv2d_pointwise_workspace_floats(const wcmi_conv2d_dims *d) {
  return conv2d_is_dense(d) ? pointwise_dense_floats(d) : conv2d_workspace_any_threads(d, conv2d_gemm_workspace_floats);
}

/* Dense shapes: x (N, C) through xf into ws (as gather_samples), or x itself. */
static const float *dense_input(const wcmi_conv2d_dims *d, const float *x, const conv2d_bnrelu *xf, float *ws) {
  if (!xf) return x;
  const int C = d->C;
  for (int n = 0; n < d->N; n++) {
    const float *from = x + (size_t)n * C;
    float *to = ws + (size_t)n * C;
    for (int c = 0; c < C; c++) to[c] = bn_relu(bn_affine(from[c], xf->shift[c], xf->scale[c], xf->bias[c]));
  }
  return ws;
}

void conv2d_pointwise_forward(const wcmi_conv2d_dims *d, const float *x, const conv2d_bnrelu *xf, const float *w,
                              const float *b, float *y, float *ws) {
  if (conv2d_is_dense(d)) {
    const float *in = dense_input(d, x, xf, ws);
    float *out = ws + (size_t)d->N * d->C;
    wcmi_linear_forward(d->N, d->C, d->O, in, w, b, out);
    memcpy(y, out, (size_t)d->N * d->O * sizeof *y);
    return;
  }
  const int T = conv2d_threads(d);
  if (use_blocked(d, T))
    forward_blocked(d, x, xf, w, b, y, ws, T);
  else
    forward_shared(d, x, xf, w, b, y, ws);
}

void conv2d_pointwise_backward(const wcmi_conv2d_dims *d, const float *x, const conv2d_bnrelu *xf, const float *w,
                               const float *dy, float *dx, int dx_add, float *dw, float *db, float *ws) {
  if (db) conv2d_bias_grad(d->N, d->O, d->Ho * d->Wo, dy, db);
  if (!dx && !dw) return;
  if (conv2d_is_dense(d)) {
    const float *in = dw ? dense_input(d, x, xf, ws) : x;
    float *gx = dx ? ws + (size_t)d->N * d->C : NULL;
    wcmi_linear_backward(d->N, d->C, d->O, in, w, dy, gx, dw, NULL);
    const int64_t n = (int64_t)d->N * d->C;
    if (dx && dx_add)
      for (int64_t i = 0; i < n; i++) dx[i] += gx[i];
    else if (dx)
      memcpy(dx, gx, (size_t)n * sizeof *dx);
    return;
  }
  const int T = conv2d_threads(d);
  if (use_blocked(d, T))
    backward_blocked(d, x, xf, w, dy, dx, dx_add, dw, ws, T);
  else
    backward_shared(d, x, xf, w, dy, dx, dx_add, dw, ws);
}
