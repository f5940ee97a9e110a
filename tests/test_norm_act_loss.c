/* BatchNorm, channel LayerNorm, ReLU, dropout and softmax cross-entropy kernels.
 *
 * Gradients are checked against central finite differences of a naive DOUBLE-precision reference
 * implemented here (loss L = sum(y * R) with a fixed random R), so the float kernels are compared
 * with an independent derivation. Hand-computed cases pin the PyTorch semantics (biased variance
 * for normalization, unbiased variance in running_var, momentum update, num_batches_tracked). */
#include <math.h>
#include <string.h>

#include "harness.h"
#include "wcmi/nn.h"

#define BN_EPS 1e-5f
#define BN_MOMENTUM 0.1f
/* Finite-difference step: truncation error ~h^2 and roundoff ~1e-16/h are both far below the
 * tolerances used for float gradients (~1e-4 relative). */
#define FD_H 1e-5

/* ---- helpers ------------------------------------------------------------------------------- */
static void fill_uniform(wcmi_rng *r, float *a, int n, float lo, float hi) {
  for (int i = 0; i < n; i++) a[i] = wcmi_rng_uniform_range(r, lo, hi);
}
static void to_double(const float *a, double *d, int n) {
  for (int i = 0; i < n; i++) d[i] = (double)a[i];
}
static void fill_float(float *a, int n, float v) {
  for (int i = 0; i < n; i++) a[i] = v;
}

/* Checks max_i |got[i] - (offset + want[i])| <= tol * max(1, max_i |want[i]|) and reports the worst
 * element, so a failure says where and by how much. */
static void check_close_array(const char *what, const float *got, const double *want, int n, double offset,
                              double tol) {
  double scale = 1.0, worst = 0.0;
  int at = 0;
  for (int i = 0; i < n; i++) scale = fabs(want[i]) > scale ? fabs(want[i]) : scale;
  for (int i = 0; i < n; i++) {
    double e = fabs((double)got[i] - (offset + want[i]));
    if (!(e <= worst)) {
      worst = e;
      at = i;
    }
  }
  CHECK_MSG(worst <= tol * scale, "%s: max error %.3g at [%d] (got %.9g, want %.9g), tolerance %.3g * %.3g", what,
            worst, at, (double)got[at], offset + want[at], tol, scale);
}

/* A double reference forward y = f(x, gamma, beta) with its fixed configuration. */
typedef void (*ref_forward_fn)(const void *cfg, const double *x, const double *gamma, const double *beta,
                               double *y);

static double ref_loss(ref_forward_fn f, const void *cfg, const double *x, const double *g, const double *b,
                       const double *R, double *y, int ny) {
  f(cfg, x, g, b, y);
  double L = 0.0;
  for (int i = 0; i < ny; i++) L += y[i] * R[i];
  return L;
}

/* grad[i] = dL/dv[i] by central differences, v being one of x, g, b (perturbed in place). */
static void fd_grad(ref_forward_fn f, const void *cfg, double *x, double *g, double *b, double *v, int nv,
                    const double *R, double *y, int ny, double *grad) {
  for (int i = 0; i < nv; i++) {
    const double keep = v[i];
    v[i] = keep + FD_H;
    const double lp = ref_loss(f, cfg, x, g, b, R, y, ny);
    v[i] = keep - FD_H;
    const double lm = ref_loss(f, cfg, x, g, b, R, y, ny);
    v[i] = keep;
    grad[i] = (lp - lm) / (2.0 * FD_H);
  }
}

/* ---- batch norm reference ------------------------------------------------------------------ */
typedef struct bn_cfg {
  int N, C, S, train;
  const double *running_mean, *running_var; /* eval mode */
} bn_cfg;

/* Batch mean and biased variance of channel c. */
static void bn_ref_stats(const bn_cfg *k, const double *x, int c, double *mean, double *var) {
  const double M = (double)k->N * k->S;
  double s = 0.0, q = 0.0;
  for (int n = 0; n < k->N; n++)
    for (int i = 0; i < k->S; i++) s += x[((size_t)n * k->C + c) * k->S + i];
  *mean = s / M;
  for (int n = 0; n < k->N; n++)
    for (int i = 0; i < k->S; i++) {
      double d = x[((size_t)n * k->C + c) * k->S + i] - *mean;
      q += d * d;
    }
  *var = q / M;
}

static void bn_ref_forward(const void *cfgv, const double *x, const double *g, const double *b, double *y) {
  const bn_cfg *k = cfgv;
  for (int c = 0; c < k->C; c++) {
    double mean, var;
    if (k->train) {
      bn_ref_stats(k, x, c, &mean, &var);
    } else {
      mean = k->running_mean[c];
      var = k->running_var[c];
    }
    const double rs = 1.0 / sqrt(var + (double)BN_EPS);
    for (int n = 0; n < k->N; n++)
      for (int i = 0; i < k->S; i++) {
        size_t j = ((size_t)n * k->C + c) * k->S + i;
        y[j] = (x[j] - mean) * rs * g[c] + b[c];
      }
  }
}

enum { BN_MAX = 256, BN_MAXC = 8 };

/* Forward (float vs double), running statistics, and gradients (float analytic vs double FD) of
 * one BatchNorm configuration in train or eval mode. */
static void check_batchnorm(int N, int C, int S, int train, uint64_t seed) {
  const int n = N * C * S;
  CHECK(n <= BN_MAX && C <= BN_MAXC);
  wcmi_rng r;
  wcmi_rng_seed(&r, seed);
  float x[BN_MAX], y[BN_MAX], dy[BN_MAX], dx[BN_MAX], dx2[BN_MAX];
  float g[BN_MAXC], b[BN_MAXC], rm[BN_MAXC], rv[BN_MAXC], mean[BN_MAXC], rstd[BN_MAXC];
  float dg[BN_MAXC], db[BN_MAXC], dg2[BN_MAXC], db2[BN_MAXC];
  fill_uniform(&r, x, n, -1.0f, 1.0f);
  /* Channels get different offsets and spreads so a mixed-up channel index shows. */
  for (int c = 0; c < C; c++)
    for (int i = 0; i < N; i++)
      for (int s = 0; s < S; s++) x[((size_t)i * C + c) * S + s] = x[((size_t)i * C + c) * S + s] * (1.0f + c) + 0.7f * c - 1.0f;
  fill_uniform(&r, g, C, 0.5f, 1.5f);
  fill_uniform(&r, b, C, -0.5f, 0.5f);
  fill_uniform(&r, rm, C, -0.5f, 0.5f);
  fill_uniform(&r, rv, C, 0.5f, 2.0f);
  fill_uniform(&r, dy, n, -1.0f, 1.0f);

  double xd[BN_MAX], yd[BN_MAX], R[BN_MAX], gd[BN_MAXC], bd[BN_MAXC], rmd[BN_MAXC], rvd[BN_MAXC];
  double fdx[BN_MAX], fdg[BN_MAXC], fdb[BN_MAXC];
  to_double(x, xd, n);
  to_double(g, gd, C);
  to_double(b, bd, C);
  to_double(rm, rmd, C);
  to_double(rv, rvd, C);
  to_double(dy, R, n);
  bn_cfg k = {N, C, S, train, rmd, rvd};

  int64_t tracked = 5;
  if (train) {
    wcmi_batchnorm_forward_train(N, C, S, x, g, b, rm, rv, &tracked, BN_MOMENTUM, BN_EPS, y, mean, rstd);
    CHECK(tracked == 6);
    const double M = (double)N * S;
    for (int c = 0; c < C; c++) {
      double bm, bv;
      bn_ref_stats(&k, xd, c, &bm, &bv);
      CHECK_CLOSE(mean[c], bm, 1e-6, 1e-6);
      CHECK_CLOSE(rstd[c], 1.0 / sqrt(bv + BN_EPS), 0, 1e-5);
      CHECK_CLOSE(rm[c], 0.9 * rmd[c] + 0.1 * bm, 1e-6, 1e-6);
      CHECK_CLOSE(rv[c], 0.9 * rvd[c] + 0.1 * bv * M / (M - 1.0), 1e-6, 1e-6);
    }
  } else {
    wcmi_batchnorm_forward_eval(N, C, S, x, g, b, rm, rv, BN_EPS, y);
  }
  bn_ref_forward(&k, xd, gd, bd, yd);
  check_close_array("batchnorm forward y", y, yd, n, 0.0, 1e-5);

  /* Analytic backward: dx overwritten (pre-filled with junk), dgamma/dbeta accumulated onto 0.25. */
  fill_float(dx, n, 1e3f);
  fill_float(dg, C, 0.25f);
  fill_float(db, C, 0.25f);
  if (train)
    wcmi_batchnorm_backward_train(N, C, S, x, g, mean, rstd, dy, dx, dg, db);
  else
    wcmi_batchnorm_backward_eval(N, C, S, x, g, rm, rv, BN_EPS, dy, dx, dg, db);

  double ydummy[BN_MAX];
  fd_grad(bn_ref_forward, &k, xd, gd, bd, xd, n, R, ydummy, n, fdx);
  fd_grad(bn_ref_forward, &k, xd, gd, bd, gd, C, R, ydummy, n, fdg);
  fd_grad(bn_ref_forward, &k, xd, gd, bd, bd, C, R, ydummy, n, fdb);
  check_close_array("batchnorm dx vs finite differences", dx, fdx, n, 0.0, 1e-4);
  check_close_array("batchnorm dgamma vs finite differences (+0.25 accumulated)", dg, fdg, C, 0.25, 1e-4);
  check_close_array("batchnorm dbeta vs finite differences (+0.25 accumulated)", db, fdb, C, 0.25, 1e-4);

  /* NULL skips that output and leaves the others identical. */
  fill_float(dg2, C, 0.25f);
  fill_float(db2, C, 0.25f);
  if (train) {
    wcmi_batchnorm_backward_train(N, C, S, x, g, mean, rstd, dy, dx2, NULL, NULL);
    wcmi_batchnorm_backward_train(N, C, S, x, g, mean, rstd, dy, NULL, dg2, db2);
  } else {
    wcmi_batchnorm_backward_eval(N, C, S, x, g, rm, rv, BN_EPS, dy, dx2, NULL, NULL);
    wcmi_batchnorm_backward_eval(N, C, S, x, g, rm, rv, BN_EPS, dy, NULL, dg2, db2);
  }
  CHECK(memcmp(dx, dx2, sizeof(float) * (size_t)n) == 0);
  CHECK(memcmp(dg, dg2, sizeof(float) * (size_t)C) == 0);
  CHECK(memcmp(db, db2, sizeof(float) * (size_t)C) == 0);
}

static void test_batchnorm1d_train_matches_double_reference_and_finite_differences(void) {
  check_batchnorm(7, 3, 1, 1, 11);
}
static void test_batchnorm1d_eval_matches_double_reference_and_finite_differences(void) {
  check_batchnorm(7, 3, 1, 0, 12);
}
static void test_batchnorm2d_train_matches_double_reference_and_finite_differences(void) {
  check_batchnorm(3, 4, 13, 1, 13); /* S = 13 crosses the kernel's 8-lane partial sums */
}
static void test_batchnorm2d_eval_matches_double_reference_and_finite_differences(void) {
  check_batchnorm(3, 4, 13, 0, 14);
}

/* Hand-computed: N=2, C=1, S=2, x = {1, 2 | 3, 6}, gamma 2, beta 0.5, running (0, 1), momentum 0.1.
 *   mean = 12/4 = 3; squared deviations 4, 1, 0, 9 -> biased var 14/4 = 3.5, unbiased 14/3.
 *   y = 2 (x - 3) / sqrt(3.5 + 1e-5) + 0.5 = {-1.638086881, -0.569043440, 0.5, 3.707130321}.
 *   step 1: running_mean = 0.9*0 + 0.1*3 = 0.3;   running_var = 0.9*1 + 0.1*14/3 = 1.366666667.
 *   step 2: running_mean = 0.9*0.3 + 0.3 = 0.57;  running_var = 0.9*1.366666667 + 0.466666667 = 1.696666667.
 *   eval after 2 steps: y = 2 (x - 0.57) / sqrt(1.696666667 + 1e-5) + 0.5
 *                         = {1.160235554, 2.695667075, 4.231098596, 8.837393159}. */
static void test_batchnorm_hand_computed_statistics_and_running_averages(void) {
  const float x[4] = {1, 2, 3, 6}, g[1] = {2.0f}, b[1] = {0.5f};
  float rm[1] = {0.0f}, rv[1] = {1.0f}, y[4], mean[1], rstd[1];
  int64_t tracked = 0;
  wcmi_batchnorm_forward_train(2, 1, 2, x, g, b, rm, rv, &tracked, BN_MOMENTUM, BN_EPS, y, mean, rstd);
  CHECK_CLOSE(mean[0], 3.0, 1e-7, 0);
  CHECK_CLOSE(rstd[0], 1.0 / sqrt(3.50001), 0, 1e-6);
  const double y1[4] = {-1.638086881, -0.569043440, 0.5, 3.707130321};
  for (int i = 0; i < 4; i++) CHECK_CLOSE(y[i], y1[i], 1e-6, 1e-6);
  CHECK_CLOSE(rm[0], 0.3, 1e-7, 1e-6);
  CHECK_CLOSE(rv[0], 1.366666667, 0, 1e-6);
  CHECK(tracked == 1);

  wcmi_batchnorm_forward_train(2, 1, 2, x, g, b, rm, rv, &tracked, BN_MOMENTUM, BN_EPS, y, mean, rstd);
  CHECK_CLOSE(rm[0], 0.57, 0, 1e-6);
  CHECK_CLOSE(rv[0], 1.696666667, 0, 1e-6);
  CHECK(tracked == 2);

  wcmi_batchnorm_forward_eval(2, 1, 2, x, g, b, rm, rv, BN_EPS, y);
  const double y2[4] = {1.160235554, 2.695667075, 4.231098596, 8.837393159};
  for (int i = 0; i < 4; i++) CHECK_CLOSE(y[i], y2[i], 1e-6, 1e-6);
}

/* Catastrophic cancellation check: a channel with mean 1000 and spread 1 still normalizes to
 * unit variance (a one-pass E[x^2]-E[x]^2 in float would lose all digits). */
static void test_batchnorm_large_mean_is_accurate(void) {
  float x[64], y[64], mean[1], rstd[1], rm[1] = {0}, rv[1] = {1};
  const float g[1] = {1}, b[1] = {0};
  for (int i = 0; i < 64; i++) x[i] = 1000.0f + (float)(i % 8) - 3.5f;
  wcmi_batchnorm_forward_train(8, 1, 8, x, g, b, rm, rv, NULL, BN_MOMENTUM, BN_EPS, y, mean, rstd);
  double s2 = 0;
  for (int i = 0; i < 64; i++) s2 += (double)y[i] * y[i];
  CHECK_CLOSE(mean[0], 1000.0, 0, 1e-7);
  CHECK_CLOSE(s2 / 64.0, 5.25 / (5.25 + 1e-5), 1e-5, 0); /* var of {-3.5..3.5} = 5.25 */
}

/* ---- layer norm reference ------------------------------------------------------------------ */
typedef struct ln_cfg {
  int N, C, S;
} ln_cfg;

static void ln_ref_forward(const void *cfgv, const double *x, const double *g, const double *b, double *y) {
  const ln_cfg *k = cfgv;
  for (int n = 0; n < k->N; n++)
    for (int s = 0; s < k->S; s++) {
      double m = 0.0, v = 0.0;
      for (int c = 0; c < k->C; c++) m += x[((size_t)n * k->C + c) * k->S + s];
      m /= k->C;
      for (int c = 0; c < k->C; c++) {
        double d = x[((size_t)n * k->C + c) * k->S + s] - m;
        v += d * d;
      }
      v /= k->C;
      const double rs = 1.0 / sqrt(v + (double)BN_EPS);
      for (int c = 0; c < k->C; c++) {
        size_t j = ((size_t)n * k->C + c) * k->S + s;
        y[j] = (x[j] - m) * rs * g[c] + b[c];
      }
    }
}

enum { LN_MAX = 1024, LN_MAXC = 8 };

static void check_layernorm(int N, int C, int S, uint64_t seed) {
  const int n = N * C * S;
  CHECK(n <= LN_MAX && C <= LN_MAXC);
  static float x[LN_MAX], y[LN_MAX], dy[LN_MAX], dx[LN_MAX], dx2[LN_MAX], mean[LN_MAX], rstd[LN_MAX];
  static double xd[LN_MAX], yd[LN_MAX], R[LN_MAX], fdx[LN_MAX], ytmp[LN_MAX];
  float g[LN_MAXC], b[LN_MAXC], dg[LN_MAXC], db[LN_MAXC], dg2[LN_MAXC], db2[LN_MAXC];
  double gd[LN_MAXC], bd[LN_MAXC], fdg[LN_MAXC], fdb[LN_MAXC];
  wcmi_rng r;
  wcmi_rng_seed(&r, seed);
  fill_uniform(&r, x, n, -2.0f, 3.0f);
  fill_uniform(&r, g, C, 0.5f, 1.5f);
  fill_uniform(&r, b, C, -0.5f, 0.5f);
  fill_uniform(&r, dy, n, -1.0f, 1.0f);
  to_double(x, xd, n);
  to_double(g, gd, C);
  to_double(b, bd, C);
  to_double(dy, R, n);
  ln_cfg k = {N, C, S};

  wcmi_layernorm_channel_forward(N, C, S, x, g, b, BN_EPS, y, mean, rstd);
  ln_ref_forward(&k, xd, gd, bd, yd);
  check_close_array("layernorm forward y", y, yd, n, 0.0, 1e-5);
  /* Saved statistics of location (n=N-1, s=S-1), recomputed here. */
  {
    double m = 0, v = 0;
    for (int c = 0; c < C; c++) m += xd[((size_t)(N - 1) * C + c) * S + S - 1];
    m /= C;
    for (int c = 0; c < C; c++) v += pow(xd[((size_t)(N - 1) * C + c) * S + S - 1] - m, 2);
    CHECK_CLOSE(mean[N * S - 1], m, 1e-6, 1e-6);
    CHECK_CLOSE(rstd[N * S - 1], 1.0 / sqrt(v / C + BN_EPS), 0, 1e-5);
  }

  fill_float(dx, n, 1e3f);
  fill_float(dg, C, 0.25f);
  fill_float(db, C, 0.25f);
  wcmi_layernorm_channel_backward(N, C, S, x, g, mean, rstd, dy, dx, dg, db);
  fd_grad(ln_ref_forward, &k, xd, gd, bd, xd, n, R, ytmp, n, fdx);
  fd_grad(ln_ref_forward, &k, xd, gd, bd, gd, C, R, ytmp, n, fdg);
  fd_grad(ln_ref_forward, &k, xd, gd, bd, bd, C, R, ytmp, n, fdb);
  check_close_array("layernorm dx vs finite differences", dx, fdx, n, 0.0, 1e-4);
  check_close_array("layernorm dgamma vs finite differences (+0.25 accumulated)", dg, fdg, C, 0.25, 1e-4);
  check_close_array("layernorm dbeta vs finite differences (+0.25 accumulated)", db, fdb, C, 0.25, 1e-4);

  fill_float(dg2, C, 0.25f);
  fill_float(db2, C, 0.25f);
  wcmi_layernorm_channel_backward(N, C, S, x, g, mean, rstd, dy, dx2, NULL, NULL);
  wcmi_layernorm_channel_backward(N, C, S, x, g, mean, rstd, dy, NULL, dg2, db2);
  CHECK(memcmp(dx, dx2, sizeof(float) * (size_t)n) == 0);
  CHECK(memcmp(dg, dg2, sizeof(float) * (size_t)C) == 0);
  CHECK(memcmp(db, db2, sizeof(float) * (size_t)C) == 0);
}

static void test_layernorm_channel_vector_matches_reference_and_finite_differences(void) {
  check_layernorm(5, 7, 1, 21); /* the global estimator's case: z as a 1x1 map */
}
static void test_layernorm_channel_map_matches_reference_and_finite_differences(void) {
  check_layernorm(2, 5, 9, 22);
}
static void test_layernorm_channel_wide_map_crosses_location_blocks(void) {
  check_layernorm(2, 3, 70, 23); /* 70 locations: more than one block of 64 */
}

/* ---- determinism across thread counts -------------------------------------------------------- */
/* Big enough to take the OpenMP path; each channel / location is reduced by one thread in a fixed
 * order, so 1 and 2 threads must agree bit for bit. */
/* BN + ReLU in one pass must equal BN then ReLU bit for bit, in train mode (outputs, mean/rstd,
 * running statistics, counter) and eval mode, with values on both sides of 0 and a NaN (which must
 * stay NaN, as wcmi_relu_forward keeps it). */
static void test_fused_bn_relu_forward_is_bit_identical(void) {
  enum { N = 6, C = 5, S = 7, NN = N * C * S };
  static float x[NN], y1[NN], y2[NN];
  float gamma[C], beta[C], rm1[C], rv1[C], rm2[C], rv2[C], mean1[C], mean2[C], rstd1[C], rstd2[C];
  wcmi_rng r;
  wcmi_rng_seed(&r, 77);
  fill_uniform(&r, x, NN, -2.0f, 2.0f);
  x[11] = NAN;
  fill_uniform(&r, gamma, C, -1.5f, 1.5f);
  fill_uniform(&r, beta, C, -0.5f, 0.5f);
  fill_uniform(&r, rm1, C, -0.5f, 0.5f);
  fill_uniform(&r, rv1, C, 0.5f, 2.0f);
  memcpy(rm2, rm1, sizeof rm1);
  memcpy(rv2, rv1, sizeof rv1);
  int64_t nb1 = 3, nb2 = 3;
  /* a NaN poisons its channel's statistics: use a NaN-free copy for train mode */
  static float xt[NN];
  memcpy(xt, x, sizeof x);
  xt[11] = 0.25f;
  wcmi_batchnorm_forward_train(N, C, S, xt, gamma, beta, rm1, rv1, &nb1, 0.1f, 1e-5f, y1, mean1, rstd1);
  wcmi_relu_forward(NN, y1, y1);
  wcmi_batchnorm_relu_forward_train(N, C, S, xt, gamma, beta, rm2, rv2, &nb2, 0.1f, 1e-5f, y2, mean2, rstd2);
  CHECK(memcmp(y1, y2, sizeof y1) == 0);
  CHECK(memcmp(mean1, mean2, sizeof mean1) == 0 && memcmp(rstd1, rstd2, sizeof rstd1) == 0);
  CHECK(memcmp(rm1, rm2, sizeof rm1) == 0 && memcmp(rv1, rv2, sizeof rv1) == 0 && nb1 == nb2);
  int zeros = 0, positives = 0;
  for (int i = 0; i < NN; i++) zeros += y2[i] == 0.0f, positives += y2[i] > 0.0f;
  CHECK_MSG(zeros > 0 && positives > 0, "test is vacuous: %d zeros, %d positives", zeros, positives);

  wcmi_batchnorm_forward_eval(N, C, S, x, gamma, beta, rm1, rv1, 1e-5f, y1);
  wcmi_relu_forward(NN, y1, y1);
  wcmi_batchnorm_relu_forward_eval(N, C, S, x, gamma, beta, rm1, rv1, 1e-5f, y2);
  CHECK(memcmp(y1, y2, sizeof y1) == 0);
  CHECK(isnan(y2[11]));
}

static void test_norm_results_identical_for_1_and_2_threads(void) {
  enum { N = 4, C = 32, S = 300, NN = N * C * S, OUTS = 4 };
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  const int threads_before = ctx.num_threads;
  /* Per thread count: BN y, BN dx, LN y, LN dx. */
  float *x = wcmi_alloc(&ctx, NN, sizeof(float)), *dy = wcmi_alloc(&ctx, NN, sizeof(float));
  float *out[2][OUTS] = {{NULL}};
  static float stat[2][4][N * S], gb[2][4][C];
  memset(stat, 0, sizeof(stat));
  memset(gb, 0, sizeof(gb));
  int ok = x && dy;
  for (int t = 0; t < 2; t++)
    for (int o = 0; o < OUTS; o++) ok = ok && (out[t][o] = wcmi_alloc(&ctx, NN, sizeof(float))) != NULL;
  CHECK(ok);
  if (ok) {
    wcmi_rng r;
    wcmi_rng_seed(&r, 5);
    fill_uniform(&r, x, NN, -1, 1);
    fill_uniform(&r, dy, NN, -1, 1);
    float g[C], b[C];
    fill_uniform(&r, g, C, 0.5f, 1.5f);
    fill_uniform(&r, b, C, -0.5f, 0.5f);
    for (int t = 0; t < 2; t++) {
      wcmi_set_threads(&ctx, t + 1);
      float rm[C] = {0}, rv[C];
      fill_float(rv, C, 1.0f);
      wcmi_batchnorm_forward_train(N, C, S, x, g, b, rm, rv, NULL, BN_MOMENTUM, BN_EPS, out[t][0], stat[t][0],
                                   stat[t][1]);
      wcmi_batchnorm_backward_train(N, C, S, x, g, stat[t][0], stat[t][1], dy, out[t][1], gb[t][0], gb[t][1]);
      wcmi_layernorm_channel_forward(N, C, S, x, g, b, BN_EPS, out[t][2], stat[t][2], stat[t][3]);
      wcmi_layernorm_channel_backward(N, C, S, x, g, stat[t][2], stat[t][3], dy, out[t][3], gb[t][2], gb[t][3]);
    }
    CHECK(memcmp(stat[0], stat[1], sizeof(stat[0])) == 0);
    CHECK(memcmp(gb[0], gb[1], sizeof(gb[0])) == 0);
    for (int o = 0; o < OUTS; o++)
      CHECK_MSG(memcmp(out[0][o], out[1][o], sizeof(float) * NN) == 0, "output %d differs between 1 and 2 threads",
                o);
  }
  wcmi_set_threads(&ctx, threads_before);
  for (int t = 0; t < 2; t++)
    for (int o = 0; o < OUTS; o++) wcmi_free(out[t][o]);
  wcmi_free(x);
  wcmi_free(dy);
}

/* ---- ReLU ----------------------------------------------------------------------------------- */
typedef struct relu_cfg {
  int n;
} relu_cfg;
static void relu_ref_forward(const void *cfgv, const double *x, const double *g, const double *b, double *y) {
  const relu_cfg *k = cfgv;
  for (int i = 0; i < k->n; i++) y[i] = x[i] > 0 ? x[i] : 0.0;
}

static void test_relu_gradient_matches_finite_differences(void) {
  enum { N = 64 };
  float x[N], y[N], dy[N], dx[N];
  double xd[N], R[N], fdx[N], ytmp[N];
  wcmi_rng r;
  wcmi_rng_seed(&r, 31);
  /* |x| in [0.1, 1]: far from the kink at 0, where finite differences are meaningless. */
  for (int i = 0; i < N; i++) x[i] = wcmi_rng_uniform_range(&r, 0.1f, 1.0f) * (i % 3 == 0 ? -1.0f : 1.0f);
  fill_uniform(&r, dy, N, -1, 1);
  to_double(x, xd, N);
  to_double(dy, R, N);
  wcmi_relu_forward(N, x, y);
  for (int i = 0; i < N; i++) CHECK(y[i] == (x[i] > 0 ? x[i] : 0.0f));
  fill_float(dx, N, 1e3f);
  wcmi_relu_backward(N, y, dy, dx);
  relu_cfg k = {N};
  fd_grad(relu_ref_forward, &k, xd, NULL, NULL, xd, N, R, ytmp, N, fdx);
  check_close_array("relu dx vs finite differences", dx, fdx, N, 0.0, 1e-6);
}

static void test_relu_propagates_nan(void) {
  const float x[2] = {NAN, -1.0f};
  float y[2];
  wcmi_relu_forward(2, x, y);
  CHECK(isnan(y[0]));
  CHECK(y[1] == 0.0f);
}

/* ---- dropout -------------------------------------------------------------------------------- */
enum { DROP_N = 100000 };
static float drop_x[DROP_N], drop_y[DROP_N], drop_mask[DROP_N], drop_mask2[DROP_N], drop_dx[DROP_N];

static void test_dropout_p0_is_identity(void) {
  wcmi_rng r;
  wcmi_rng_seed(&r, 1);
  fill_uniform(&r, drop_x, 1000, -1, 1);
  wcmi_dropout_forward(1000, 0.0f, &r, drop_x, drop_y, drop_mask);
  CHECK(memcmp(drop_x, drop_y, sizeof(float) * 1000) == 0);
  for (int i = 0; i < 1000; i++) CHECK(drop_mask[i] == 1.0f);
}

/* Keep rate over 1e5 draws: standard deviation sqrt(p(1-p)/n) <= 0.0016, tolerance 0.006 (~4 sd). */
static void check_dropout_rate(float p) {
  wcmi_rng r;
  wcmi_rng_seed(&r, 2);
  fill_uniform(&r, drop_x, DROP_N, -1, 1);
  wcmi_dropout_forward(DROP_N, p, &r, drop_x, drop_y, drop_mask);
  const float scale = (float)(1.0 / (1.0 - (double)p));
  int kept = 0, bad = 0;
  for (int i = 0; i < DROP_N; i++) {
    if (drop_mask[i] == scale) kept++;
    else if (drop_mask[i] != 0.0f) bad++;
    if (drop_y[i] != drop_x[i] * drop_mask[i]) bad++;
  }
  CHECK_MSG(bad == 0, "dropout p=%g: %d mask/output entries are neither 0 nor x/(1-p)", (double)p, bad);
  CHECK_CLOSE((double)kept / DROP_N, 1.0 - p, 0.006, 0);
}
static void test_dropout_keep_rate_is_one_minus_p(void) {
  check_dropout_rate(0.1f);
  check_dropout_rate(0.5f);
  check_dropout_rate(0.9f);
}

static void test_dropout_same_seed_gives_same_mask(void) {
  wcmi_rng a, b;
  wcmi_rng_seed(&a, 77);
  wcmi_rng_seed(&b, 77);
  fill_float(drop_x, 4096, 1.0f);
  wcmi_dropout_forward(4096, 0.3f, &a, drop_x, drop_y, drop_mask);
  wcmi_dropout_forward(4096, 0.3f, &b, drop_x, drop_y, drop_mask2);
  CHECK(memcmp(drop_mask, drop_mask2, sizeof(float) * 4096) == 0);
  /* The rng advanced: the next call draws a different mask. */
  wcmi_dropout_forward(4096, 0.3f, &a, drop_x, drop_y, drop_mask2);
  CHECK(memcmp(drop_mask, drop_mask2, sizeof(float) * 4096) != 0);
}

static void test_dropout_gradient_is_mask_times_dy(void) {
  wcmi_rng r;
  wcmi_rng_seed(&r, 3);
  fill_uniform(&r, drop_x, 5000, -1, 1);
  wcmi_dropout_forward(5000, 0.25f, &r, drop_x, drop_y, drop_mask);
  fill_uniform(&r, drop_x, 5000, -1, 1); /* reuse as dy */
  wcmi_dropout_backward(5000, drop_mask, drop_x, drop_dx);
  int bad = 0;
  for (int i = 0; i < 5000; i++) bad += drop_dx[i] != drop_mask[i] * drop_x[i];
  CHECK(bad == 0);
}

/* ---- cross-entropy -------------------------------------------------------------------------- */
typedef struct ce_cfg {
  int N, K;
  const int32_t *labels;
} ce_cfg;

/* Mean over rows of -log softmax(logits)[label], written naively in double. */
static double ce_ref_loss(const ce_cfg *k, const double *l) {
  double total = 0.0;
  for (int i = 0; i < k->N; i++) {
    double z = 0.0;
    for (int j = 0; j < k->K; j++) z += exp(l[i * k->K + j]);
    total += -log(exp(l[i * k->K + k->labels[i]]) / z);
  }
  return total / k->N;
}

/* logits [0, ln 3], label 1: p = (1/4, 3/4), loss = -ln(3/4) = ln(4/3) = 0.287682072;
 * dlogits = p - onehot = (0.25, -0.25). Adding the row [ln 3, 0], label 1 (loss ln 4) gives the
 * mean (ln(4/3) + ln 4) / 2 = 0.836988217. */
static void test_cross_entropy_hand_example(void) {
  const float l1[2] = {0.0f, (float)log(3.0)};
  const int32_t lab1[1] = {1};
  float p[4], d[4];
  CHECK_CLOSE(wcmi_cross_entropy_forward(1, 2, l1, lab1, p), 0.287682072, 1e-7, 1e-6);
  CHECK_CLOSE(p[0], 0.25, 1e-7, 0);
  CHECK_CLOSE(p[1], 0.75, 1e-7, 0);
  wcmi_cross_entropy_backward(1, 2, p, lab1, 1.0f, d);
  CHECK_CLOSE(d[0], 0.25, 1e-7, 0);
  CHECK_CLOSE(d[1], -0.25, 1e-7, 0);

  const float l2[4] = {0.0f, (float)log(3.0), (float)log(3.0), 0.0f};
  const int32_t lab2[2] = {1, 1};
  CHECK_CLOSE(wcmi_cross_entropy_forward(2, 2, l2, lab2, p), 0.836988217, 1e-7, 1e-6);
  wcmi_cross_entropy_backward(2, 2, p, lab2, 1.0f, d);
  const double want[4] = {0.125, -0.125, 0.375, -0.375}; /* (p - onehot) / 2 */
  for (int i = 0; i < 4; i++) CHECK_CLOSE(d[i], want[i], 1e-7, 0);
}

static void test_cross_entropy_matches_reference_and_finite_differences(void) {
  enum { N = 6, K = 10 };
  float l[N * K], p[N * K], d[N * K], d2[N * K];
  double ld[N * K], fd[N * K];
  int32_t lab[N];
  wcmi_rng r;
  wcmi_rng_seed(&r, 41);
  fill_uniform(&r, l, N * K, -3, 3);
  for (int i = 0; i < N; i++) lab[i] = (int32_t)wcmi_rng_below(&r, K);
  to_double(l, ld, N * K);
  ce_cfg k = {N, K, lab};
  const float loss = wcmi_cross_entropy_forward(N, K, l, lab, p);
  CHECK_CLOSE(loss, ce_ref_loss(&k, ld), 0, 1e-6);
  for (int i = 0; i < N * K; i++) {
    const double keep = ld[i];
    ld[i] = keep + FD_H;
    const double lp = ce_ref_loss(&k, ld);
    ld[i] = keep - FD_H;
    const double lm = ce_ref_loss(&k, ld);
    ld[i] = keep;
    fd[i] = (lp - lm) / (2 * FD_H);
  }
  fill_float(d, N * K, 1e3f);
  wcmi_cross_entropy_backward(N, K, p, lab, 1.0f, d);
  check_close_array("cross-entropy dlogits vs finite differences", d, fd, N * K, 0.0, 1e-6);
  /* The upstream scale multiplies the gradient. */
  wcmi_cross_entropy_backward(N, K, p, lab, 2.5f, d2);
  for (int i = 0; i < N * K; i++) CHECK_CLOSE(d2[i], 2.5 * d[i], 1e-7, 1e-6);
}

/* Logits ~1e4 overflow exp() without the max shift. Row 0: [1e4, 1e4 - 1, -1e4], label 0 ->
 * loss ln(1 + e^-1) = 0.313261688; row 1 the same logits with label 2 -> loss 2e4 + ln(1 + e^-1). */
static void test_cross_entropy_stable_for_huge_logits(void) {
  const float l[6] = {1e4f, 1e4f - 1.0f, -1e4f, 1e4f, 1e4f - 1.0f, -1e4f};
  const int32_t lab[2] = {0, 2};
  float p[6], d[6];
  float loss = wcmi_cross_entropy_forward(1, 3, l, lab, p);
  CHECK(isfinite(loss));
  CHECK_CLOSE(loss, 0.313261688, 1e-6, 0);
  loss = wcmi_cross_entropy_forward(2, 3, l, lab, p);
  CHECK(isfinite(loss));
  CHECK_CLOSE(loss, (0.313261688 + 2e4 + 0.313261688) / 2, 0, 1e-6);
  CHECK(wcmi_all_finite(p, 6));
  CHECK_CLOSE(p[0] + p[1] + p[2], 1.0, 1e-6, 0);
  CHECK_CLOSE(p[0], 1.0 / (1.0 + exp(-1.0)), 1e-6, 0);
  wcmi_cross_entropy_backward(2, 3, p, lab, 1.0f, d);
  CHECK(wcmi_all_finite(d, 6));
  CHECK_CLOSE(d[5], -0.5, 1e-6, 0); /* p[label] ~ 0 for row 1 */
}

int main(void) {
  RUN(test_batchnorm1d_train_matches_double_reference_and_finite_differences);
  RUN(test_batchnorm1d_eval_matches_double_reference_and_finite_differences);
  RUN(test_batchnorm2d_train_matches_double_reference_and_finite_differences);
  RUN(test_batchnorm2d_eval_matches_double_reference_and_finite_differences);
  RUN(test_batchnorm_hand_computed_statistics_and_running_averages);
  RUN(test_batchnorm_large_mean_is_accurate);
  RUN(test_layernorm_channel_vector_matches_reference_and_finite_differences);
  RUN(test_layernorm_channel_map_matches_reference_and_finite_differences);
  RUN(test_layernorm_channel_wide_map_crosses_location_blocks);
  RUN(test_fused_bn_relu_forward_is_bit_identical);
  RUN(test_norm_results_identical_for_1_and_2_threads);
  RUN(test_relu_gradient_matches_finite_differences);
  RUN(test_relu_propagates_nan);
  RUN(test_dropout_p0_is_identity);
  RUN(test_dropout_keep_rate_is_one_minus_p);
  RUN(test_dropout_same_seed_gives_same_mask);
  RUN(test_dropout_gradient_is_mask_times_dy);
  RUN(test_cross_entropy_hand_example);
  RUN(test_cross_entropy_matches_reference_and_finite_differences);
  RUN(test_cross_entropy_stable_for_huge_logits);
  return wt_finish();
}
