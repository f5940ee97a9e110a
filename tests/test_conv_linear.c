/* conv2d and linear kernels against a naive double-precision reference written here:
 * forward values, gradients by central finite differences of L = sum(y * R), hand-computed examples,
 * NULL-gradient skipping, += accumulation, reproducibility and shape validation.
 *
 * Workspaces are malloc'ed with exactly wcmi_conv2d_workspace_floats floats so that AddressSanitizer
 * catches any kernel that writes past what it asked for. */
#include "harness.h"
#include "nn/conv2d_internal.h"
#include "wcmi/core.h"
#include "wcmi/nn.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ------------------------------------------------------------------------------- */

static float *new_floats(size_t n) {
  float *p = malloc((n ? n : 1) * sizeof *p);
  if (!p) abort();
  return p;
}

static double *new_doubles(size_t n) {
  double *p = malloc((n ? n : 1) * sizeof *p);
  if (!p) abort();
  return p;
}

static void fill_uniform(wcmi_rng *r, float *x, size_t n, float lo, float hi) {
  for (size_t i = 0; i < n; i++) x[i] = wcmi_rng_uniform_range(r, lo, hi);
}

static void to_double(const float *x, double *xd, size_t n) {
  for (size_t i = 0; i < n; i++) xd[i] = x[i];
}

/* Worst violation of |a - ref| <= atol + rtol*|ref|, reported once per array so a broken kernel
 * prints one readable line rather than thousands. */
static void check_all_close(const char *what, const float *a, const double *ref, size_t n, double atol,
                            double rtol) {
  size_t worst = 0;
  double worst_excess = -1.0;
  for (size_t i = 0; i < n; i++) {
    double err = fabs((double)a[i] - ref[i]);
    double excess = err - (atol + rtol * fabs(ref[i]));
    if (!(excess <= worst_excess)) {
      worst_excess = excess;
      worst = i;
    }
  }
  CHECK_MSG(n == 0 || worst_excess <= 0.0, "%s[%zu] = %.9g vs reference %.9g (atol %g, rtol %g)", what, worst,
            n ? (double)a[worst] : 0.0, n ? ref[worst] : 0.0, atol, rtol);
}

/* ---- naive double references ---------------------------------------------------------------- */

/* y (N, O, Ho, Wo) = conv(x (N, C, H, W), w (O, C, KH, KW)) + b (O, may be NULL); zero padding. */
static void conv_ref(const wcmi_conv2d_dims *d, const double *x, const double *w, const double *b, double *y) {
  for (int n = 0; n < d->N; n++)
    for (int o = 0; o < d->O; o++)
      for (int oh = 0; oh < d->Ho; oh++)
        for (int ow = 0; ow < d->Wo; ow++) {
          double acc = b ? b[o] : 0.0;
          for (int c = 0; c < d->C; c++)
            for (int kh = 0; kh < d->KH; kh++)
              for (int kw = 0; kw < d->KW; kw++) {
                int ih = oh * d->stride - d->pad + kh, iw = ow * d->stride - d->pad + kw;
                if (ih < 0 || ih >= d->H || iw < 0 || iw >= d->W) continue;
                acc += x[((n * d->C + c) * d->H + ih) * d->W + iw] * w[((o * d->C + c) * d->KH + kh) * d->KW + kw];
              }
          y[((n * d->O + o) * d->Ho + oh) * d->Wo + ow] = acc;
        }
}

/* Gradients of L = sum(y * dy) for y = conv(x, w) + b, by direct summation: dx overwritten,
 * dw and db overwritten. */
static void conv_ref_backward(const wcmi_conv2d_dims *d, const double *x, const double *w, const double *dy,
                              double *dx, double *dw, double *db) {
  memset(dx, 0, (size_t)d->N * d->C * d->H * d->W * sizeof *dx);
  memset(dw, 0, (size_t)d->O * d->C * d->KH * d->KW * sizeof *dw);
  memset(db, 0, (size_t)d->O * sizeof *db);
  for (int n = 0; n < d->N; n++)
    for (int o = 0; o < d->O; o++)
      for (int oh = 0; oh < d->Ho; oh++)
        for (int ow = 0; ow < d->Wo; ow++) {
          double g = dy[((n * d->O + o) * d->Ho + oh) * d->Wo + ow];
          db[o] += g;
          for (int c = 0; c < d->C; c++)
            for (int kh = 0; kh < d->KH; kh++)
              for (int kw = 0; kw < d->KW; kw++) {
                int ih = oh * d->stride - d->pad + kh, iw = ow * d->stride - d->pad + kw;
                if (ih < 0 || ih >= d->H || iw < 0 || iw >= d->W) continue;
                size_t xi = (size_t)((n * d->C + c) * d->H + ih) * d->W + iw;
                size_t wi = (size_t)((o * d->C + c) * d->KH + kh) * d->KW + kw;
                dx[xi] += g * w[wi];
                dw[wi] += g * x[xi];
              }
        }
}

/* y (N, O) = x (N, I) w^T (I, O) + b */
static void linear_ref(int N, int I, int O, const double *x, const double *w, const double *b, double *y) {
  for (int n = 0; n < N; n++)
    for (int o = 0; o < O; o++) {
      double acc = b ? b[o] : 0.0;
      for (int i = 0; i < I; i++) acc += x[n * I + i] * w[o * I + i];
      y[n * O + o] = acc;
    }
}

/* The operation under a finite-difference check: y = f(x, w, b) in double. */
typedef struct op_ref {
  const wcmi_conv2d_dims *conv; /* conv if non-NULL, else linear (N, I, O) */
  int N, I, O;
} op_ref;

static void op_eval(const op_ref *op, const double *x, const double *w, const double *b, double *y) {
  if (op->conv)
    conv_ref(op->conv, x, w, b, y);
  else
    linear_ref(op->N, op->I, op->O, x, w, b, y);
}

static double loss_ref(const op_ref *op, const double *x, const double *w, const double *b, const double *R,
                       double *y, size_t ny) {
  op_eval(op, x, w, b, y);
  double L = 0.0;
  for (size_t i = 0; i < ny; i++) L += y[i] * R[i];
  return L;
}

/* Central differences of L = sum(y * R) w.r.t. every element of p (one of x, w, b), in double. */
static void fd_gradient(const op_ref *op, double *x, double *w, double *b, const double *R, double *y, size_t ny,
                        double *p, size_t np, double *g) {
  const double h = 1e-3; /* L is linear in each argument, so the truncation error is ~0 */
  for (size_t i = 0; i < np; i++) {
    double keep = p[i];
    p[i] = keep + h;
    double lp = loss_ref(op, x, w, b, R, y, ny);
    p[i] = keep - h;
    double lm = loss_ref(op, x, w, b, R, y, ny);
    p[i] = keep;
    g[i] = (lp - lm) / (2 * h);
  }
}

/* Runs the float kernels (forward, backward with dy = R) and compares y with the double forward and
 * dx, dw, db with finite differences of the double forward. */
static void check_op_against_reference(const op_ref *op, size_t nx, size_t nw, size_t without_bias, size_t ny,
                                       uint64_t seed) {
  const size_t nb = without_bias ? 0 : (size_t)op->O;
  wcmi_rng r;
  wcmi_rng_seed(&r, seed);
  float *x = new_floats(nx), *w = new_floats(nw), *b = new_floats(nb), *R = new_floats(ny), *y = new_floats(ny);
  float *dx = new_floats(nx), *dw = new_floats(nw), *db = new_floats(nb);
  fill_uniform(&r, x, nx, -1.0f, 1.0f);
  fill_uniform(&r, w, nw, -0.5f, 0.5f);
  fill_uniform(&r, b, nb, -0.5f, 0.5f);
  fill_uniform(&r, R, ny, -1.0f, 1.0f);
  memset(dw, 0, nw * sizeof *dw);
  memset(db, 0, (nb ? nb : 1) * sizeof *db);
  for (size_t i = 0; i < nx; i++) dx[i] = 1e30f; /* must be overwritten */

  const float *bias = nb ? b : NULL;
  if (op->conv) {
    size_t nws = wcmi_conv2d_workspace_floats(op->conv);
    float *ws = nws ? malloc(nws * sizeof *ws) : NULL;
    wcmi_conv2d_forward(op->conv, x, w, bias, y, ws);
    wcmi_conv2d_backward(op->conv, x, w, R, dx, dw, nb ? db : NULL, ws);
    free(ws);
  } else {
    wcmi_linear_forward(op->N, op->I, op->O, x, w, bias, y);
    wcmi_linear_backward(op->N, op->I, op->O, x, w, R, dx, dw, nb ? db : NULL);
  }

  double *xd = new_doubles(nx), *wd = new_doubles(nw), *bd = new_doubles(nb), *Rd = new_doubles(ny);
  double *yd = new_doubles(ny), *g = new_doubles(nx > nw ? nx : nw);
  to_double(x, xd, nx);
  to_double(w, wd, nw);
  to_double(b, bd, nb);
  to_double(R, Rd, ny);
  double *bref = nb ? bd : NULL;

  op_eval(op, xd, wd, bref, yd);
  /* float forward vs double: K <= 48 products of |x| <= 1, |w| <= 0.5 */
  check_all_close("y", y, yd, ny, 2e-5, 1e-5);

  /* float analytic gradients vs double central differences: abs 1e-3 + rel 1e-3 */
  fd_gradient(op, xd, wd, bref, Rd, yd, ny, xd, nx, g);
  check_all_close("dx", dx, g, nx, 1e-3, 1e-3);
  fd_gradient(op, xd, wd, bref, Rd, yd, ny, wd, nw, g);
  check_all_close("dw", dw, g, nw, 1e-3, 1e-3);
  if (nb) {
    fd_gradient(op, xd, wd, bref, Rd, yd, ny, bd, nb, g);
    check_all_close("db", db, g, nb, 1e-3, 1e-3);
  }

  free(x), free(w), free(b), free(R), free(y), free(dx), free(dw), free(db);
  free(xd), free(wd), free(bd), free(Rd), free(yd), free(g);
}

static wcmi_conv2d_dims conv_dims(int N, int C, int H, int W, int O, int k, int stride, int pad) {
  wcmi_conv2d_dims d = {N, C, H, W, O, k, k, stride, pad, 0, 0, 0, 0};
  return d;
}

static void check_conv(wcmi_conv2d_dims d, int with_bias, uint64_t seed) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  CHECK_OK(&ctx, wcmi_conv2d_dims_init(&ctx, "test", &d));
  if (ctx.status) return;
  op_ref op = {&d, 0, 0, d.O};
  size_t nx = (size_t)d.N * d.C * d.H * d.W, nw = (size_t)d.O * d.C * d.KH * d.KW;
  size_t ny = (size_t)d.N * d.O * d.Ho * d.Wo;
  int failures_before = wt_failures_in_test;
  check_op_against_reference(&op, nx, nw, !with_bias, ny, seed);
  if (wt_failures_in_test != failures_before)
    fprintf(stderr, "    (conv N=%d C=%d H=%d W=%d O=%d k=%dx%d stride=%d pad=%d bias=%d)\n", d.N, d.C, d.H, d.W,
            d.O, d.KH, d.KW, d.stride, d.pad, with_bias);
}

/* ---- conv2d tests ---------------------------------------------------------------------------- */

/* Includes the three Winograd tilings: 4x4 stride 2 pad 1 on 7x7 (3x3 outputs, F(3x3, 2x2)), on
 * 16x16 (8x8 outputs, F(4x4, 2x2)), on 14x14 (7x7 outputs, F(7x7, 2x2)) and on 26x20 (13x10
 * outputs, F(7x7, 2x2) with tiles overhanging the edge). */
static void test_conv2d_gradients_match_double_finite_differences(void) {
  const int ks[] = {1, 3, 4}, strides[] = {1, 2}, pads[] = {0, 1};
  uint64_t seed = 100;
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < 2; j++)
      for (int l = 0; l < 2; l++) check_conv(conv_dims(2, 3, 7, 7, 4, ks[i], strides[j], pads[l]), 1, seed++);
  const wcmi_conv2d_dims wino[] = {conv_dims(2, 3, 7, 7, 4, 4, 2, 1), conv_dims(2, 3, 16, 16, 4, 4, 2, 1),
                                   conv_dims(2, 3, 14, 14, 4, 4, 2, 1), {2, 3, 26, 20, 4, 4, 4, 2, 1, 0, 0, 0, 0}};
  const int tiles[] = {3, 4, 7, 7};
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  for (int k = 0; k < 4; k++) {
    wcmi_conv2d_dims d = wino[k];
    CHECK_OK(&ctx, wcmi_conv2d_dims_init(&ctx, "wino", &d));
    CHECK_MSG(conv2d_winograd_tile(&d) == tiles[k], "shape %d: tile %d, expected %d", k, conv2d_winograd_tile(&d),
              tiles[k]);
    if (k > 0) check_conv(wino[k], 1, seed++); /* (the 7x7 input ran in the loops above) */
  }
}

static void test_conv2d_odd_shapes_and_dense_paths_match_reference(void) {
  /* rectangular input and kernel, no bias */
  wcmi_conv2d_dims d = {2, 2, 6, 9, 3, 3, 2, 2, 1, 0, 0, 0, 0};
  check_conv(d, 0, 1);
  /* kernel covering the whole input (the dense path: a linear layer in disguise) */
  check_conv(conv_dims(2, 3, 5, 5, 4, 5, 1, 0), 1, 2);
  /* 1x1 conv on 1x1 maps, as the global estimator's residual block */
  check_conv(conv_dims(3, 6, 1, 1, 5, 1, 1, 0), 1, 3);
  /* stride larger than the kernel skips input pixels; padding larger than the kernel gives all-zero
   * border outputs */
  check_conv(conv_dims(2, 2, 8, 8, 3, 2, 3, 0), 1, 4);
  check_conv(conv_dims(1, 2, 3, 3, 2, 1, 1, 2), 1, 5);
  /* a stride past the padded input leaves one output per axis */
  check_conv(conv_dims(2, 2, 5, 5, 3, 2, 1000, 1), 1, 7);
  /* a padded plane of 5 x 1102 floats is too large for the stack-staged im2col/col2im, so this one
   * takes the bounds-checked path */
  wcmi_conv2d_dims wide = {1, 1, 3, 1100, 1, 3, 3, 2, 1, 0, 0, 0, 0};
  check_conv(wide, 1, 6);
}

/* Bigger channel counts so the GEMMs and the parallel loops really split work between threads. */
static void test_conv2d_forward_matches_reference_with_many_channels(void) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  wcmi_conv2d_dims cases[] = {{3, 33, 11, 9, 17, 4, 4, 2, 1, 0, 0, 0, 0}, {4, 64, 5, 5, 40, 1, 1, 1, 0, 0, 0, 0, 0}};
  for (int t = 0; t < 2; t++) {
    wcmi_conv2d_dims d = cases[t];
    CHECK_OK(&ctx, wcmi_conv2d_dims_init(&ctx, "many", &d));
    size_t nx = (size_t)d.N * d.C * d.H * d.W, nw = (size_t)d.O * d.C * d.KH * d.KW;
    size_t ny = (size_t)d.N * d.O * d.Ho * d.Wo, nws = wcmi_conv2d_workspace_floats(&d);
    wcmi_rng r;
    wcmi_rng_seed(&r, 9 + (uint64_t)t);
    float *x = new_floats(nx), *w = new_floats(nw), *b = new_floats((size_t)d.O), *y = new_floats(ny);
    float *ws = new_floats(nws);
    fill_uniform(&r, x, nx, -1, 1);
    fill_uniform(&r, w, nw, -0.1f, 0.1f);
    fill_uniform(&r, b, (size_t)d.O, -1, 1);
    wcmi_conv2d_forward(&d, x, w, b, y, ws);
    double *xd = new_doubles(nx), *wd = new_doubles(nw), *bd = new_doubles((size_t)d.O), *yd = new_doubles(ny);
    to_double(x, xd, nx);
    to_double(w, wd, nw);
    to_double(b, bd, (size_t)d.O);
    conv_ref(&d, xd, wd, bd, yd);
    /* up to 528 products of |x| <= 1, |w| <= 0.1 */
    check_all_close("y", y, yd, ny, 1e-4, 1e-4);
    free(x), free(w), free(b), free(y), free(ws), free(xd), free(wd), free(bd), free(yd);
  }
}

/* Runs backward with the given NULL pattern into fresh buffers (dw, db zeroed; dx poisoned). */
static void conv_backward_into(const wcmi_conv2d_dims *d, const float *x, const float *w, const float *dy,
                               float *dx, float *dw, float *db, float *ws) {
  size_t nx = (size_t)d->N * d->C * d->H * d->W, nw = (size_t)d->O * d->C * d->KH * d->KW;
  if (dx)
    for (size_t i = 0; i < nx; i++) dx[i] = NAN;
  if (dw) memset(dw, 0, nw * sizeof *dw);
  if (db) memset(db, 0, (size_t)d->O * sizeof *db);
  wcmi_conv2d_backward(d, x, w, dy, dx, dw, db, ws);
}

/* Shapes big enough for several sample blocks per thread (with a short last block), run at 1, 2 and 3
 * threads, checked against the double reference forward and backward. The third case has a weight
 * of 1500x1500: at 2 and 3 threads its per-thread dw partials (2.25M floats each) exceed the blocked
 * path's limit (2^21 floats), so it takes the shared-GEMM path. The fourth is the paper's first conv
 * (K = 16: the direct thin kernel) on 5 samples. The first (7x7 outputs) and the fifth (6x3) take
 * the Winograd path, F(7x7) and F(3x3) tiles whose input windows overlap. */
static void test_conv2d_parallel_sizes_match_double_reference(void) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  const int threads_before = ctx.num_threads;
  wcmi_conv2d_dims cases[] = {{16, 32, 14, 14, 48, 4, 4, 2, 1, 0, 0, 0, 0},
                              {16, 64, 16, 16, 64, 1, 1, 1, 0, 0, 0, 0, 0},
                              {3, 1500, 2, 2, 1500, 1, 1, 1, 0, 0, 0, 0, 0},
                              {5, 1, 28, 28, 64, 4, 4, 2, 1, 0, 0, 0, 0},
                              {12, 24, 13, 7, 20, 4, 4, 2, 1, 0, 0, 0, 0}};
  for (int run = 0; run < 15; run++) {
    const int t = run % 5;
    wcmi_set_threads(&ctx, run / 5 + 1);
    wcmi_conv2d_dims d = cases[t];
    CHECK_OK(&ctx, wcmi_conv2d_dims_init(&ctx, "parallel", &d));
    CHECK((conv2d_winograd_applies(&d) && !conv2d_thin_applies(&d)) == (t == 0 || t == 4));
    size_t nx = (size_t)d.N * d.C * d.H * d.W, nw = (size_t)d.O * d.C * d.KH * d.KW, nb = (size_t)d.O;
    size_t ny = (size_t)d.N * d.O * d.Ho * d.Wo, nws = wcmi_conv2d_workspace_floats(&d);
    wcmi_rng r;
    wcmi_rng_seed(&r, 21 + (uint64_t)t);
    float *x = new_floats(nx), *w = new_floats(nw), *b = new_floats(nb), *y = new_floats(ny), *dy = new_floats(ny);
    float *dx = new_floats(nx), *dw = new_floats(nw), *db = new_floats(nb), *ws = new_floats(nws);
    fill_uniform(&r, x, nx, -1, 1);
    fill_uniform(&r, w, nw, -0.1f, 0.1f);
    fill_uniform(&r, b, nb, -1, 1);
    fill_uniform(&r, dy, ny, -1, 1);
    wcmi_conv2d_forward(&d, x, w, b, y, ws);
    conv_backward_into(&d, x, w, dy, dx, dw, db, ws);
    double *xd = new_doubles(nx), *wd = new_doubles(nw), *bd = new_doubles(nb), *yd = new_doubles(ny);
    double *dyd = new_doubles(ny), *dxd = new_doubles(nx), *dwd = new_doubles(nw), *dbd = new_doubles(nb);
    to_double(x, xd, nx);
    to_double(w, wd, nw);
    to_double(b, bd, nb);
    to_double(dy, dyd, ny);
    conv_ref(&d, xd, wd, bd, yd);
    conv_ref_backward(&d, xd, wd, dyd, dxd, dwd, dbd);
    /* y, dx: up to 1500 products of magnitude <= 0.1; dw, db: sums of up to 16*196 = 3136 products of
     * magnitude <= 1, so float rounding reaches ~1e-4 there */
    check_all_close("y", y, yd, ny, 1e-4, 1e-4);
    check_all_close("dx", dx, dxd, nx, 1e-4, 1e-4);
    check_all_close("dw", dw, dwd, nw, 1e-3, 1e-4);
    check_all_close("db", db, dbd, nb, 1e-3, 1e-4);
    free(x), free(w), free(b), free(y), free(dy), free(dx), free(dw), free(db), free(ws);
    free(xd), free(wd), free(bd), free(yd), free(dyd), free(dxd), free(dwd), free(dbd);
  }
  wcmi_set_threads(&ctx, threads_before);
}

/* A workspace sized for the largest batch must serve every smaller one: the blocked path's block
 * size depends on the batch and is not monotone in it (with 2 threads, 125 samples get larger blocks
 * than 128). Guard floats after the workspace must stay untouched for every N from 1 to 128, at 1-3
 * threads, and the results must match a run with a workspace sized for exactly that N. */
static void test_conv2d_workspace_serves_every_smaller_batch(void) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  const int threads_before = ctx.num_threads;
  enum { NMAX = 128, GUARD = 256 };
  const wcmi_conv2d_dims shapes[] = {{NMAX, 4, 14, 14, 6, 4, 4, 2, 1, 0, 0, 0, 0}, {NMAX, 6, 7, 7, 5, 4, 4, 2, 1, 0, 0, 0, 0}};
  for (int T = 1; T <= 3; T++) {
    wcmi_set_threads(&ctx, T);
    for (int k = 0; k < 2; k++) {
      wcmi_conv2d_dims big = shapes[k];
      CHECK_OK(&ctx, wcmi_conv2d_dims_init(&ctx, "batches", &big));
      const size_t nws = wcmi_conv2d_workspace_floats(&big);
      const size_t nx = (size_t)NMAX * big.C * big.H * big.W, ny = (size_t)NMAX * big.O * big.Ho * big.Wo;
      const size_t nw = (size_t)big.O * big.C * big.KH * big.KW;
      float *ws = new_floats(nws + GUARD), *x = new_floats(nx), *w = new_floats(nw), *y = new_floats(ny);
      float *dy = new_floats(ny), *dx = new_floats(nx), *dw = new_floats(nw);
      float *y2 = new_floats(ny), *dx2 = new_floats(nx), *dw2 = new_floats(nw);
      wcmi_rng r;
      wcmi_rng_seed(&r, 40 + (uint64_t)k);
      fill_uniform(&r, x, nx, -1, 1);
      fill_uniform(&r, w, nw, -0.5f, 0.5f);
      fill_uniform(&r, dy, ny, -1, 1);
      for (int g = 0; g < GUARD; g++) ws[nws + g] = 12345.0f;
      int guard_bad = 0, mismatch = 0;
      for (int n = 1; n <= NMAX; n++) {
        wcmi_conv2d_dims d = big;
        d.N = n;
        wcmi_conv2d_forward(&d, x, w, NULL, y, ws);
        conv_backward_into(&d, x, w, dy, dx, dw, NULL, ws);
        for (int g = 0; g < GUARD; g++) guard_bad += ws[nws + g] != 12345.0f;
        if (n % 25 != 2) continue; /* a few batches against an exactly sized workspace */
        float *own = new_floats(wcmi_conv2d_workspace_floats(&d) + 1);
        wcmi_conv2d_forward(&d, x, w, NULL, y2, own);
        conv_backward_into(&d, x, w, dy, dx2, dw2, NULL, own);
        const size_t cy = (size_t)n * d.O * d.Ho * d.Wo, cx = (size_t)n * d.C * d.H * d.W;
        mismatch += memcmp(y, y2, cy * sizeof *y) != 0 || memcmp(dx, dx2, cx * sizeof *dx) != 0 ||
                    memcmp(dw, dw2, nw * sizeof *dw) != 0;
        free(own);
      }
      CHECK_MSG(guard_bad == 0, "shape %d, %d threads: %d guard floats overwritten", k, T, guard_bad);
      CHECK_MSG(mismatch == 0, "shape %d, %d threads: %d batches differ from an exactly sized workspace", k, T,
                mismatch);
      free(ws), free(x), free(w), free(y), free(dy), free(dx), free(dw), free(y2), free(dx2), free(dw2);
    }
  }
  wcmi_set_threads(&ctx, threads_before);
}

/* dims.threads is a public field: nonsense values must neither hang the sizing nor overrun the
 * workspace. 0 and -5 size for one thread, INT_MAX for the cap; guard floats after the workspace stay
 * untouched and the results match those of the dims as wcmi_conv2d_dims_init set them. */
static void test_conv2d_hostile_thread_counts_are_clamped(void) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  enum { GUARD = 64 };
  wcmi_conv2d_dims good = {3, 2, 6, 6, 4, 4, 4, 2, 1, 0, 0, 0, 0};
  CHECK_OK(&ctx, wcmi_conv2d_dims_init(&ctx, "hostile", &good));
  const size_t nx = 3 * 2 * 6 * 6, nw = 4 * 2 * 4 * 4, ny = (size_t)3 * 4 * good.Ho * good.Wo;
  float *x = new_floats(nx), *w = new_floats(nw), *dy = new_floats(ny);
  float *y0 = new_floats(ny), *dx0 = new_floats(nx), *dw0 = new_floats(nw);
  float *y = new_floats(ny), *dx = new_floats(nx), *dw = new_floats(nw);
  float *ws0 = new_floats(wcmi_conv2d_workspace_floats(&good) + 1);
  wcmi_rng r;
  wcmi_rng_seed(&r, 61);
  fill_uniform(&r, x, nx, -1, 1);
  fill_uniform(&r, w, nw, -0.5f, 0.5f);
  fill_uniform(&r, dy, ny, -1, 1);
  wcmi_conv2d_forward(&good, x, w, NULL, y0, ws0);
  conv_backward_into(&good, x, w, dy, dx0, dw0, NULL, ws0);
  const int values[] = {0, -5, INT_MAX};
  for (int v = 0; v < 3; v++) {
    wcmi_conv2d_dims d = good;
    d.threads = values[v];
    const size_t nws = wcmi_conv2d_workspace_floats(&d);
    CHECK(nws > 0 && nws < ((size_t)1 << 26));
    float *ws = new_floats(nws + GUARD);
    for (int g = 0; g < GUARD; g++) ws[nws + g] = 12345.0f;
    wcmi_conv2d_forward(&d, x, w, NULL, y, ws);
    conv_backward_into(&d, x, w, dy, dx, dw, NULL, ws);
    int guard_bad = 0;
    for (int g = 0; g < GUARD; g++) guard_bad += ws[nws + g] != 12345.0f;
    CHECK_MSG(guard_bad == 0, "threads = %d: %d guard floats overwritten", values[v], guard_bad);
    for (size_t i = 0; i < ny; i++) CHECK_CLOSE(y[i], y0[i], 1e-5, 1e-5);
    for (size_t i = 0; i < nx; i++) CHECK_CLOSE(dx[i], dx0[i], 1e-5, 1e-5);
    for (size_t i = 0; i < nw; i++) CHECK_CLOSE(dw[i], dw0[i], 1e-5, 1e-5);
    free(ws);
  }
  free(x), free(w), free(dy), free(y0), free(dx0), free(dw0), free(y), free(dx), free(dw), free(ws0);
}

static void test_conv2d_hand_computed_2x2_kernel(void) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  /* x = [1 2 3; 4 5 6; 7 8 9], w = [1 2; 3 4], b = 0.5, stride 1, pad 0:
   *   y00 = 1*1 + 2*2 + 4*3 + 5*4 + 0.5 = 37.5    y01 = 2 + 6 + 15 + 24 + 0.5 = 47.5
   *   y10 = 4 + 10 + 21 + 32 + 0.5 = 67.5         y11 = 5 + 12 + 24 + 36 + 0.5 = 77.5
   * With dy = 1 everywhere:
   *   dw[kh][kw] = sum of the 2x2 input block at offset (kh, kw): [1+2+4+5, 2+3+5+6; 4+5+7+8, 5+6+8+9]
   *              = [12 16; 24 28];  db = 4
   *   dx[i][j] = sum of the weights that touch (i, j) = [1 3 2; 4 10 6; 3 7 4]. */
  {
    wcmi_conv2d_dims d = {1, 1, 3, 3, 1, 2, 2, 1, 0, 0, 0, 0, 0};
    CHECK_OK(&ctx, wcmi_conv2d_dims_init(&ctx, "hand", &d));
    CHECK(d.Ho == 2 && d.Wo == 2);
    float x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, w[4] = {1, 2, 3, 4}, b[1] = {0.5f}, y[4], dy[4] = {1, 1, 1, 1};
    float dx[9], dw[4] = {0}, db[1] = {0};
    float *ws = new_floats(wcmi_conv2d_workspace_floats(&d));
    wcmi_conv2d_forward(&d, x, w, b, y, ws);
    const float ey[4] = {37.5f, 47.5f, 67.5f, 77.5f}, edw[4] = {12, 16, 24, 28};
    const float edx[9] = {1, 3, 2, 4, 10, 6, 3, 7, 4};
    for (int i = 0; i < 4; i++) CHECK_CLOSE(y[i], ey[i], 1e-6, 0);
    wcmi_conv2d_backward(&d, x, w, dy, dx, dw, db, ws);
    for (int i = 0; i < 4; i++) CHECK_CLOSE(dw[i], edw[i], 1e-6, 0);
    for (int i = 0; i < 9; i++) CHECK_CLOSE(dx[i], edx[i], 1e-6, 0);
    CHECK_CLOSE(db[0], 4.0, 1e-6, 0);
    free(ws);
  }
  /* x = [1 2; 3 4], w = [1 2; 3 4], no bias, stride 2, pad 1. The zero-padded input is
   *   0 0 0 0 / 0 1 2 0 / 0 3 4 0 / 0 0 0 0, and each 2x2 window holds one pixel:
   *   y00 = 4*1 = 4, y01 = 3*2 = 6, y10 = 2*3 = 6, y11 = 1*4 = 4.
   * With dy = [1 2; 3 4]: dx(0,0) = 4*dy00 = 4, dx(0,1) = 3*dy01 = 6, dx(1,0) = 2*dy10 = 6,
   *   dx(1,1) = 1*dy11 = 4; dw = [4*4, 3*3; 2*2, 1*1] = [16 9; 4 1] (weight (kh,kw) sees one pixel). */
  {
    wcmi_conv2d_dims d = {1, 1, 2, 2, 1, 2, 2, 2, 1, 0, 0, 0, 0};
    CHECK_OK(&ctx, wcmi_conv2d_dims_init(&ctx, "hand_s2", &d));
    CHECK(d.Ho == 2 && d.Wo == 2);
    float x[4] = {1, 2, 3, 4}, w[4] = {1, 2, 3, 4}, y[4], dy[4] = {1, 2, 3, 4}, dx[4], dw[4] = {0};
    float *ws = new_floats(wcmi_conv2d_workspace_floats(&d));
    wcmi_conv2d_forward(&d, x, w, NULL, y, ws);
    const float ey[4] = {4, 6, 6, 4}, edx[4] = {4, 6, 6, 4}, edw[4] = {16, 9, 4, 1};
    for (int i = 0; i < 4; i++) CHECK_CLOSE(y[i], ey[i], 1e-6, 0);
    wcmi_conv2d_backward(&d, x, w, dy, dx, dw, NULL, ws);
    for (int i = 0; i < 4; i++) CHECK_CLOSE(dx[i], edx[i], 1e-6, 0);
    for (int i = 0; i < 4; i++) CHECK_CLOSE(dw[i], edw[i], 1e-6, 0);
    free(ws);
  }
}

static void test_conv2d_null_gradients_are_skipped_and_params_accumulate(void) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  wcmi_conv2d_dims cases[] = {{4, 5, 9, 9, 6, 4, 4, 2, 1, 0, 0, 0, 0}, {4, 5, 1, 1, 6, 1, 1, 1, 0, 0, 0, 0, 0}};
  for (int t = 0; t < 2; t++) {
    wcmi_conv2d_dims d = cases[t];
    CHECK_OK(&ctx, wcmi_conv2d_dims_init(&ctx, "nulls", &d));
    size_t nx = (size_t)d.N * d.C * d.H * d.W, nw = (size_t)d.O * d.C * d.KH * d.KW;
    size_t ny = (size_t)d.N * d.O * d.Ho * d.Wo, nws = wcmi_conv2d_workspace_floats(&d);
    wcmi_rng r;
    wcmi_rng_seed(&r, 77);
    float *x = new_floats(nx), *w = new_floats(nw), *dy = new_floats(ny), *ws = new_floats(nws);
    float *dx_full = new_floats(nx), *dw_full = new_floats(nw), *db_full = new_floats((size_t)d.O);
    float *dx = new_floats(nx), *dw = new_floats(nw), *db = new_floats((size_t)d.O);
    fill_uniform(&r, x, nx, -1, 1);
    fill_uniform(&r, w, nw, -1, 1);
    fill_uniform(&r, dy, ny, -1, 1);
    conv_backward_into(&d, x, w, dy, dx_full, dw_full, db_full, ws);
    CHECK(wcmi_all_finite(dx_full, (int64_t)nx)); /* the NaN poison was overwritten */

    /* dx only, parameters only, bias only: each equals the full computation bit for bit */
    conv_backward_into(&d, x, w, dy, dx, NULL, NULL, ws);
    CHECK(memcmp(dx, dx_full, nx * sizeof *dx) == 0);
    conv_backward_into(&d, x, w, dy, NULL, dw, db, ws);
    CHECK(memcmp(dw, dw_full, nw * sizeof *dw) == 0);
    CHECK(memcmp(db, db_full, (size_t)d.O * sizeof *db) == 0);
    conv_backward_into(&d, x, w, dy, NULL, NULL, db, ws);
    CHECK(memcmp(db, db_full, (size_t)d.O * sizeof *db) == 0);
    /* nothing requested: must not touch anything (ws may even be NULL) */
    wcmi_conv2d_backward(&d, x, w, dy, NULL, NULL, NULL, NULL);

    /* a second backward adds the same gradient again: dw = 2 * dw_full up to the rounding of one
     * addition per element (the BLAS adds its partial sums onto C) */
    wcmi_conv2d_backward(&d, x, w, dy, NULL, dw, db, ws);
    for (size_t i = 0; i < nw; i++) CHECK_CLOSE(dw[i], 2.0 * dw_full[i], 1e-5, 1e-5);
    for (int o = 0; o < d.O; o++) CHECK_CLOSE(db[o], 2.0 * db_full[o], 1e-6, 1e-6);
    free(x), free(w), free(dy), free(ws), free(dx_full), free(dw_full), free(db_full), free(dx), free(dw);
    free(db);
  }
}

static void check_conv2d_bit_reproducible(wcmi_conv2d_dims d) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  CHECK_OK(&ctx, wcmi_conv2d_dims_init(&ctx, "repro", &d));
  size_t nx = (size_t)d.N * d.C * d.H * d.W, nw = (size_t)d.O * d.C * d.KH * d.KW;
  size_t ny = (size_t)d.N * d.O * d.Ho * d.Wo, nws = wcmi_conv2d_workspace_floats(&d);
  wcmi_rng r;
  wcmi_rng_seed(&r, 5);
  float *x = new_floats(nx), *w = new_floats(nw), *b = new_floats((size_t)d.O), *dy = new_floats(ny);
  float *ws = new_floats(nws), *y[2], *dx[2], *dw[2], *db[2];
  fill_uniform(&r, x, nx, -1, 1);
  fill_uniform(&r, w, nw, -1, 1);
  fill_uniform(&r, b, (size_t)d.O, -1, 1);
  fill_uniform(&r, dy, ny, -1, 1);
  for (int k = 0; k < 2; k++) {
    y[k] = new_floats(ny), dx[k] = new_floats(nx), dw[k] = new_floats(nw), db[k] = new_floats((size_t)d.O);
    wcmi_conv2d_forward(&d, x, w, b, y[k], ws);
    conv_backward_into(&d, x, w, dy, dx[k], dw[k], db[k], ws);
  }
  CHECK(memcmp(y[0], y[1], ny * sizeof(float)) == 0);
  CHECK(memcmp(dx[0], dx[1], nx * sizeof(float)) == 0);
  CHECK(memcmp(dw[0], dw[1], nw * sizeof(float)) == 0);
  CHECK(memcmp(db[0], db[1], (size_t)d.O * sizeof(float)) == 0);
  for (int k = 0; k < 2; k++) free(y[k]), free(dx[k]), free(dw[k]), free(db[k]);
  free(x), free(w), free(b), free(dy), free(ws);
}

/* The blocked im2col path, then Winograd's F(7x7), F(3x3) and F(4x4). */
static void test_conv2d_is_bit_reproducible(void) {
  wcmi_conv2d_dims gemm = conv_dims(8, 16, 14, 14, 32, 4, 2, 1);
  gemm.algo = WCMI_CONV_GEMM;
  check_conv2d_bit_reproducible(gemm);
  check_conv2d_bit_reproducible(conv_dims(8, 16, 14, 14, 32, 4, 2, 1));
  check_conv2d_bit_reproducible(conv_dims(8, 16, 7, 7, 32, 4, 2, 1));
  check_conv2d_bit_reproducible(conv_dims(8, 16, 16, 16, 32, 4, 2, 1));
}

/* Winograd F(3x3, 2x2), F(4x4, 2x2) and F(7x7, 2x2) against im2col + GEMM (algo WCMI_CONV_GEMM) on
 * the same data, at 1-3 threads: square and rectangular outputs with several tiles, tiles overhanging
 * the output's edge, padding 0, 1 and 2, odd padded sizes whose last input rows and columns the conv
 * never reads (their dx must be exactly 0), a bias, dw accumulated onto what it held and dx
 * overwritten (poisoned with NaN first), a batch processed in several chunks, and guard floats after
 * the workspace that must stay untouched. Tolerance, of the largest |value| of each tensor: 3e-5 for
 * F(3x3) and F(4x4) (points up to -2, coefficients up to 8 and 1/6: errors of about 5e-6 of it over
 * 256 products, growing with the square root of the sum's length; the 128-channel case sums 2048),
 * 1e-4 for F(7x7) (points +-1/2 and +-2, coefficients up to 64: about 2e-5 over 256 products). */
static void check_close_to_scale(const char *what, const float *a, const float *ref, size_t n, double frac) {
  double scale = 0;
  for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs((double)ref[i]));
  double *rd = new_doubles(n);
  to_double(ref, rd, n);
  check_all_close(what, a, rd, n, frac * scale, 0.0);
  free(rd);
}

static void test_conv2d_winograd_agrees_with_gemm_path(void) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  const int threads_before = ctx.num_threads;
  const wcmi_conv2d_dims cases[] = {{4, 32, 7, 7, 24, 4, 4, 2, 1, 0, 0, 0, 0},   /* the encoder's 3x3 */
                                    {3, 9, 13, 19, 11, 4, 4, 2, 1, 0, 0, 0, 0},  /* 6x9: 2x3 tiles */
                                    {2, 5, 8, 8, 7, 4, 4, 2, 0, 0, 0, 0, 0},     /* no padding */
                                    {2, 3, 4, 10, 5, 4, 4, 2, 2, 0, 0, 0, 0},    /* 3x6, padding 2 */
                                    {3, 4, 9, 15, 6, 4, 4, 2, 0, 0, 0, 0, 0},    /* row 8, col 14 unread */
                                    {3, 10, 14, 14, 12, 4, 4, 2, 1, 0, 0, 0, 0}, /* 7x7: F(7x7) */
                                    {2, 6, 16, 14, 5, 4, 4, 2, 1, 0, 0, 0, 0},   /* 8x7: F(4x4), overhang */
                                    {2, 5, 17, 17, 4, 4, 4, 2, 0, 0, 0, 0, 0},   /* 7x7, row 16 unread */
                                    {2, 5, 28, 26, 6, 4, 4, 2, 1, 0, 0, 0, 0},   /* 14x13: F(7x7), overhang */
                                    /* F(7x7): 40K floats of V + M per sample, so the batch runs
                                     * in two chunks, of 36 and 35 samples */
                                    {71, 128, 14, 14, 128, 4, 4, 2, 1, 0, 0, 0, 0}};
  enum { CASES = sizeof cases / sizeof cases[0] };
  for (int T = 1; T <= 3; T++) {
    wcmi_set_threads(&ctx, T);
    for (int k = 0; k < CASES; k++) {
      wcmi_conv2d_dims dw_ = cases[k], dg = cases[k];
      dg.algo = WCMI_CONV_GEMM;
      CHECK_OK(&ctx, wcmi_conv2d_dims_init(&ctx, "wino", &dw_));
      CHECK_OK(&ctx, wcmi_conv2d_dims_init(&ctx, "gemm", &dg));
      CHECK_MSG(conv2d_winograd_applies(&dw_) && !conv2d_winograd_applies(&dg), "case %d: paths not as intended", k);
      const wcmi_conv2d_dims *d = &dw_;
      const size_t nx = (size_t)d->N * d->C * d->H * d->W, nw = (size_t)d->O * d->C * 16, nb = (size_t)d->O;
      const size_t ny = (size_t)d->N * d->O * d->Ho * d->Wo;
      float *x = new_floats(nx), *w = new_floats(nw), *b = new_floats(nb), *dy = new_floats(ny);
      enum { GUARD = 64 };
      const size_t nws = wcmi_conv2d_workspace_floats(d);
      float *ws = new_floats(nws + GUARD), *wsg = new_floats(wcmi_conv2d_workspace_floats(&dg));
      for (int i = 0; i < GUARD; i++) ws[nws + i] = 777.0f;
      float *y[2], *dx[2], *dwt[2];
      wcmi_rng r;
      wcmi_rng_seed(&r, 300 + (uint64_t)k);
      fill_uniform(&r, x, nx, -1, 1);
      fill_uniform(&r, w, nw, -0.25f, 0.25f);
      fill_uniform(&r, b, nb, -1, 1);
      fill_uniform(&r, dy, ny, -1, 1);
      for (int a = 0; a < 2; a++) {
        y[a] = new_floats(ny), dx[a] = new_floats(nx), dwt[a] = new_floats(nw);
        for (size_t i = 0; i < nx; i++) dx[a][i] = NAN;
        for (size_t i = 0; i < nw; i++) dwt[a][i] = 0.5f; /* accumulated onto */
        const wcmi_conv2d_dims *da = a ? &dg : d;
        wcmi_conv2d_forward(da, x, w, b, y[a], a ? wsg : ws);
        wcmi_conv2d_backward(da, x, w, dy, dx[a], dwt[a], NULL, a ? wsg : ws);
      }
      const double tol = conv2d_winograd_tile(d) == 7 ? 1e-4 : 3e-5;
      check_close_to_scale("y", y[0], y[1], ny, tol);
      check_close_to_scale("dx", dx[0], dx[1], nx, tol);
      check_close_to_scale("dw", dwt[0], dwt[1], nw, tol);
      /* inputs the conv never reads get an exact zero */
      const int hp_used = 2 * d->Ho + 2 - d->pad, wp_used = 2 * d->Wo + 2 - d->pad;
      int unread_nonzero = 0;
      for (size_t nc = 0; nc < (size_t)d->N * d->C; nc++)
        for (int i = 0; i < d->H; i++)
          for (int j = 0; j < d->W; j++)
            if ((i >= hp_used || j >= wp_used) && dx[0][(nc * d->H + i) * d->W + j] != 0.0f) unread_nonzero++;
      CHECK_MSG(unread_nonzero == 0, "case %d: %d unread inputs got a nonzero gradient", k, unread_nonzero);
      int guard_bad = 0;
      for (int i = 0; i < GUARD; i++) guard_bad += ws[nws + i] != 777.0f;
      CHECK_MSG(guard_bad == 0, "case %d: %d guard floats after the workspace overwritten", k, guard_bad);
      if (wt_failures_in_test) fprintf(stderr, "    (case %d, %d threads)\n", k, T);
      for (int a = 0; a < 2; a++) free(y[a]), free(dx[a]), free(dwt[a]);
      free(x), free(w), free(b), free(dy), free(ws), free(wsg);
    }
  }
  wcmi_set_threads(&ctx, threads_before);
}

static void expect_rejected(wcmi_conv2d_dims d, const char *name, const char *needle) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  int rc = wcmi_conv2d_dims_init(&ctx, name, &d);
  CHECK_MSG(rc == WCMI_EINVAL, "expected WCMI_EINVAL for %s (%s), got %d", name, needle, rc);
  CHECK_MSG(strstr(ctx.msg, name) != NULL, "message '%s' does not name layer %s", ctx.msg, name);
  CHECK_MSG(strstr(ctx.msg, needle) != NULL, "message '%s' does not mention '%s'", ctx.msg, needle);
  CHECK_MSG(strchr(ctx.msg, '\n') == NULL, "message '%s' is not one line", ctx.msg);
}

static void test_conv2d_dims_init_rejects_impossible_shapes(void) {
  expect_rejected(conv_dims(2, 3, 2, 2, 4, 5, 1, 1), "encoder.layer2.0", "kernel height 5");
  wcmi_conv2d_dims wide = {2, 3, 8, 2, 4, 3, 4, 1, 0, 0, 0, 0, 0};
  expect_rejected(wide, "encoder.layer1.0", "kernel width 4");
  expect_rejected(conv_dims(2, 0, 8, 8, 4, 3, 1, 1), "layer0.0", "input channels");
  wcmi_conv2d_dims odd_algo = conv_dims(2, 3, 8, 8, 4, 3, 1, 1);
  odd_algo.algo = 7;
  expect_rejected(odd_algo, "layer3.0", "unknown algorithm 7");
  expect_rejected(conv_dims(0, 3, 8, 8, 4, 3, 1, 1), "layer0.0", "batch");
  expect_rejected(conv_dims(2, 3, 8, 8, -1, 3, 1, 1), "layer0.0", "output channels");
  expect_rejected(conv_dims(2, 3, 8, 8, 4, 0, 1, 1), "layer0.0", "kernel height");
  expect_rejected(conv_dims(2, 3, 8, 8, 4, 3, 0, 1), "block_nonlinear.0", "stride");
  expect_rejected(conv_dims(2, 3, 8, 8, 4, 3, 1, -1), "block_nonlinear.3", "padding");
  expect_rejected(conv_dims(1 << 20, 1, 1 << 12, 1 << 12, 1, 1, 1, 0), "huge", "too large");
  expect_rejected(conv_dims(1, 1, 1, 1, 1, 1, 1, 1 << 30), "huge_pad", "padding");

  /* the paper's shapes: 28 -> 14 -> 7 -> 3 with k4 s2 p1 */
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  const int in[] = {28, 14, 7}, out[] = {14, 7, 3};
  for (int i = 0; i < 3; i++) {
    wcmi_conv2d_dims d = conv_dims(128, 64, in[i], in[i], 128, 4, 2, 1);
    CHECK_OK(&ctx, wcmi_conv2d_dims_init(&ctx, "encoder", &d));
    CHECK(d.Ho == out[i] && d.Wo == out[i]);
  }
}

/* ---- linear tests ---------------------------------------------------------------------------- */

static void test_linear_gradients_match_double_finite_differences(void) {
  const int shapes[][3] = {{1, 1, 1}, {3, 7, 5}, {4, 16, 9}, {2, 30, 11}};
  for (int t = 0; t < 4; t++) {
    op_ref op = {NULL, shapes[t][0], shapes[t][1], shapes[t][2]};
    size_t nx = (size_t)op.N * op.I, nw = (size_t)op.O * op.I, ny = (size_t)op.N * op.O;
    check_op_against_reference(&op, nx, nw, 0, ny, 200 + (uint64_t)t);
    check_op_against_reference(&op, nx, nw, 1, ny, 300 + (uint64_t)t);
  }
}

static void test_linear_hand_computed(void) {
  /* x = [1 2; 3 4], w = [1 0; 1 -1; 2 1], b = [0.5 0 -1]
   *   y = x w^T + b = [1+0.5, 1-2, 2+2-1; 3+0.5, 3-4, 6+4-1] = [1.5 -1 3; 3.5 -1 9]
   * dy = [1 0 1; 0 2 0]:
   *   dx = dy w = [1+2, 0+1; 2, -2] = [3 1; 2 -2]
   *   dw = dy^T x = [1 2; 2*3 2*4; 1 2] = [1 2; 6 8; 1 2];  db = [1 2 1] */
  float x[4] = {1, 2, 3, 4}, w[6] = {1, 0, 1, -1, 2, 1}, b[3] = {0.5f, 0, -1}, y[6];
  float dy[6] = {1, 0, 1, 0, 2, 0}, dx[4], dw[6] = {0}, db[3] = {0};
  wcmi_linear_forward(2, 2, 3, x, w, b, y);
  const float ey[6] = {1.5f, -1, 3, 3.5f, -1, 9}, edx[4] = {3, 1, 2, -2}, edw[6] = {1, 2, 6, 8, 1, 2};
  const float edb[3] = {1, 2, 1};
  for (int i = 0; i < 6; i++) CHECK_CLOSE(y[i], ey[i], 1e-6, 0);
  wcmi_linear_backward(2, 2, 3, x, w, dy, dx, dw, db);
  for (int i = 0; i < 4; i++) CHECK_CLOSE(dx[i], edx[i], 1e-6, 0);
  for (int i = 0; i < 6; i++) CHECK_CLOSE(dw[i], edw[i], 1e-6, 0);
  for (int i = 0; i < 3; i++) CHECK_CLOSE(db[i], edb[i], 1e-6, 0);
}

static void test_linear_null_gradients_are_skipped_and_params_accumulate(void) {
  enum { N = 6, I = 13, O = 7 };
  wcmi_rng r;
  wcmi_rng_seed(&r, 11);
  float x[N * I], w[O * I], dy[N * O], dx_full[N * I], dw_full[O * I] = {0}, db_full[O] = {0};
  float dx[N * I], dw[O * I] = {0}, db[O] = {0};
  fill_uniform(&r, x, N * I, -1, 1);
  fill_uniform(&r, w, O * I, -1, 1);
  fill_uniform(&r, dy, N * O, -1, 1);
  for (int i = 0; i < N * I; i++) dx_full[i] = NAN;
  wcmi_linear_backward(N, I, O, x, w, dy, dx_full, dw_full, db_full);
  CHECK(wcmi_all_finite(dx_full, N * I));
  wcmi_linear_backward(N, I, O, x, w, dy, dx, NULL, NULL);
  CHECK(memcmp(dx, dx_full, sizeof dx) == 0);
  wcmi_linear_backward(N, I, O, x, w, dy, NULL, dw, db);
  CHECK(memcmp(dw, dw_full, sizeof dw) == 0);
  CHECK(memcmp(db, db_full, sizeof db) == 0);
  wcmi_linear_backward(N, I, O, x, w, dy, NULL, dw, db);
  for (int i = 0; i < O * I; i++) CHECK_CLOSE(dw[i], 2.0 * dw_full[i], 1e-6, 1e-6);
  for (int o = 0; o < O; o++) CHECK_CLOSE(db[o], 2.0 * db_full[o], 1e-6, 1e-6);
}

/* ---- init ------------------------------------------------------------------------------------ */

static void test_init_uniform_is_bounded_reproducible_and_uniform(void) {
  enum { n = 100000 };
  static float a[n], b[n];
  wcmi_rng r1, r2;
  wcmi_rng_derive(&r1, 1, WCMI_STREAM_INIT);
  wcmi_rng_derive(&r2, 1, WCMI_STREAM_INIT);
  const float bound = 1.0f / sqrtf(64.0f * 16.0f); /* conv 64 -> 128, k4: fan_in = 1024 */
  wcmi_init_uniform(&r1, a, n, bound);
  wcmi_init_uniform(&r2, b, n, bound);
  CHECK(memcmp(a, b, sizeof a) == 0);
  double s = 0, s2 = 0;
  for (int i = 0; i < n; i++) {
    CHECK(a[i] >= -bound && a[i] <= bound);
    s += a[i];
    s2 += (double)a[i] * a[i];
  }
  /* U(-B, B): mean 0, variance B^2/3; with n = 1e5 the standard errors are ~0.2% of B and ~0.3% */
  CHECK_CLOSE(s / n / bound, 0.0, 0.01, 0);
  CHECK_CLOSE(s2 / n / (bound * bound), 1.0 / 3.0, 0, 0.02);
}

/* The residual block's pointwise entry points (src/nn/conv2d_internal.h): a 1x1 conv whose input goes
 * through BN+ReLU as it is read, run in place (y over x, dx over dy). Against the public conv on the
 * materialized BN+ReLU input, out of place, the results must be bit-identical: same blocks, same GEMMs;
 * with dx_add the input gradient is added to dx's contents.
 * Shapes: 7x7 maps (blocked path), 1x1 maps (dense path, staged through the workspace), and at 3
 * threads a 1100->1100 conv whose per-thread dw partials exceed the blocked path's limit, with
 * 600 x 2 x 2 = 2400 GEMM columns: the shared-GEMM path in two chunks. Guard floats after the
 * workspace stay untouched. */
static void test_conv2d_pointwise_inplace_with_bnrelu_input_matches_public_conv(void) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  const int threads_before = ctx.num_threads;
  enum { GUARD = 64 };
  const struct { int N, C, HW, T; } cases[] = {{16, 24, 7, 2}, {9, 20, 1, 2}, {16, 24, 7, 1}, {600, 1100, 2, 3}};
  for (int k = 0; k < 4; k++) {
    wcmi_set_threads(&ctx, cases[k].T);
    const int C = cases[k].C, HW = cases[k].HW;
    wcmi_conv2d_dims d = {cases[k].N, C, HW, HW, C, 1, 1, 1, 0, 0, 0, 0, 0};
    CHECK_OK(&ctx, wcmi_conv2d_dims_init(&ctx, "pointwise", &d));
    const size_t n = (size_t)d.N * C * HW * HW, nw = (size_t)C * C;
    const size_t nws = conv2d_pointwise_workspace_floats(&d), nref = wcmi_conv2d_workspace_floats(&d);
    float *a = new_floats(n), *b = new_floats(n), *w = new_floats(nw), *bias = new_floats((size_t)C);
    float *shift = new_floats((size_t)C), *scale = new_floats((size_t)C), *beta = new_floats((size_t)C);
    float *io = new_floats(n), *y = new_floats(n), *dy = new_floats(n), *dx = new_floats(n);
    float *dw = new_floats(nw), *db = new_floats((size_t)C), *dw2 = new_floats(nw), *db2 = new_floats((size_t)C);
    float *ws = new_floats(nws + GUARD), *wsr = new_floats(nref + 1);
    wcmi_rng r;
    wcmi_rng_seed(&r, 70 + (uint64_t)k);
    fill_uniform(&r, a, n, -2, 2);
    fill_uniform(&r, w, nw, -0.2f, 0.2f);
    fill_uniform(&r, bias, (size_t)C, -1, 1);
    fill_uniform(&r, shift, (size_t)C, -0.5f, 0.5f);
    fill_uniform(&r, scale, (size_t)C, 0.5f, 1.5f);
    fill_uniform(&r, beta, (size_t)C, -0.5f, 0.5f);
    fill_uniform(&r, dy, n, -1, 1);
    for (int g = 0; g < GUARD; g++) ws[nws + g] = 777.0f;
    /* the reference input: BN+ReLU materialized with the same expression */
    const int S = HW * HW;
    for (size_t i = 0; i < n; i++) {
      const int c = (int)((i / (size_t)S) % (size_t)C);
      const float v = (a[i] - shift[c]) * scale[c] + beta[c];
      b[i] = v < 0.0f ? 0.0f : v;
    }
    const conv2d_bnrelu xf = {shift, scale, beta};
    /* forward: reference out of place on b; pointwise in place on a copy of b, and out of place from a via xf */
    wcmi_conv2d_forward(&d, b, w, bias, y, wsr);
    memcpy(io, b, n * sizeof *io);
    conv2d_pointwise_forward(&d, io, NULL, w, bias, io, ws);
    CHECK_MSG(memcmp(io, y, n * sizeof *io) == 0, "case %d: in-place forward differs", k);
    conv2d_pointwise_forward(&d, a, &xf, w, bias, io, ws);
    CHECK_MSG(memcmp(io, y, n * sizeof *io) == 0, "case %d: forward through the BN+ReLU input differs", k);
    /* backward: reference on b; pointwise with xf from a, dx over dy */
    memset(dw, 0, nw * sizeof *dw), memset(db, 0, (size_t)C * sizeof *db);
    memset(dw2, 0, nw * sizeof *dw2), memset(db2, 0, (size_t)C * sizeof *db2);
    wcmi_conv2d_backward(&d, b, w, dy, dx, dw, db, wsr);
    memcpy(io, dy, n * sizeof *io);
    conv2d_pointwise_backward(&d, a, &xf, w, io, io, 0, dw2, db2, ws);
    CHECK_MSG(memcmp(io, dx, n * sizeof *io) == 0, "case %d: in-place dx differs", k);
    CHECK_MSG(memcmp(dw2, dw, nw * sizeof *dw) == 0, "case %d: dw through the BN+ReLU input differs", k);
    CHECK_MSG(memcmp(db2, db, (size_t)C * sizeof *db) == 0, "case %d: db differs", k);
    /* dx_add: the input gradient added to what dx holds (here y) */
    memcpy(io, y, n * sizeof *io);
    conv2d_pointwise_backward(&d, b, NULL, w, dy, io, 1, NULL, NULL, ws);
    int add_bad = 0;
    for (size_t i = 0; i < n; i++) add_bad += io[i] != y[i] + dx[i];
    CHECK_MSG(add_bad == 0, "case %d: %d elements of dx += differ", k, add_bad);
    int guard_bad = 0;
    for (int g = 0; g < GUARD; g++) guard_bad += ws[nws + g] != 777.0f;
    CHECK_MSG(guard_bad == 0, "case %d: %d guard floats overwritten", k, guard_bad);
    free(a), free(b), free(w), free(bias), free(shift), free(scale), free(beta), free(io), free(y), free(dy);
    free(dx), free(dw), free(db), free(dw2), free(db2), free(ws), free(wsr);
  }
  wcmi_set_threads(&ctx, threads_before);
}

int main(void) {
  RUN(test_conv2d_gradients_match_double_finite_differences);
  RUN(test_conv2d_odd_shapes_and_dense_paths_match_reference);
  RUN(test_conv2d_forward_matches_reference_with_many_channels);
  RUN(test_conv2d_parallel_sizes_match_double_reference);
  RUN(test_conv2d_workspace_serves_every_smaller_batch);
  RUN(test_conv2d_hostile_thread_counts_are_clamped);
  RUN(test_conv2d_hand_computed_2x2_kernel);
  RUN(test_conv2d_null_gradients_are_skipped_and_params_accumulate);
  RUN(test_conv2d_is_bit_reproducible);
  RUN(test_conv2d_winograd_agrees_with_gemm_path);
  RUN(test_conv2d_dims_init_rejects_impossible_shapes);
  RUN(test_conv2d_pointwise_inplace_with_bnrelu_input_matches_public_conv);
  RUN(test_linear_gradients_match_double_finite_differences);
  RUN(test_linear_hand_computed);
  RUN(test_linear_null_gradients_are_skipped_and_params_accumulate);
  RUN(test_init_uniform_is_bounded_reproducible_and_uniform);
  return wt_finish();
}
