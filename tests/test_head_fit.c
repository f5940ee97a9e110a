/* The cached head fit (src/train/head_fit.c): whitening gives identity covariance, folding the
 * whitening into the first linear layer reproduces the fitted head on raw features (linear and
 * MLP), a fit on tiny-spread correlated features converges where the raw features would not
 * move the loss, and fits are deterministic. */
#include "harness.h"
#include "train/head_fit.h"

#include <string.h>

enum { D = 8, N = 2048, K = 10 };

/* Features with a ~0.01 spread, strongly correlated dimensions and a class signal: z = 0.01 A
 * (g + 2 e_y[:D]) + offset, A a random mixing matrix (the shape of an encoder's z that made the
 * online linear head stall, issue 14). */
static void make_features(uint64_t seed, float *z, int32_t *y, int n) {
  wcmi_rng r;
  wcmi_rng_seed(&r, seed);
  float A[D][D];
  wcmi_rng fixed;
  wcmi_rng_seed(&fixed, 12345); /* the same mixing for train and test */
  for (int a = 0; a < D; a++)
    for (int b = 0; b < D; b++) A[a][b] = wcmi_rng_normal(&fixed) + (a == b ? 3.0f : 0.0f);
  for (int i = 0; i < n; i++) {
    y[i] = (int32_t)wcmi_rng_below(&r, K);
    float g[D];
    for (int b = 0; b < D; b++) g[b] = 0.7f * wcmi_rng_normal(&r) + ((y[i] >> (b % 4)) & 1 ? 1.0f : -1.0f) * (b < 4 ? 1.5f : 0.0f);
    if (y[i] >= 8) g[4 + y[i] - 8] += 2.5f; /* classes 8, 9 share bit patterns with 0, 1: separate them elsewhere */
    for (int a = 0; a < D; a++) {
      double t = 0;
      for (int b = 0; b < D; b++) t += A[a][b] * g[b];
      z[(int64_t)i * D + a] = (float)(0.01 * t + 0.5);
    }
  }
}

static void test_whitening_gives_identity_covariance(void) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  static float z[N * D], w[N * D];
  static int32_t y[N];
  make_features(1, z, y, N);
  double mu[D], P[D * D];
  feat_set s = {z, y, N};
  CHECK_OK(&ctx, head_fit_whitening(&ctx, &s, D, mu, P));
  head_fit_whiten(&s, D, mu, P, w);
  double worst = 0;
  for (int a = 0; a < D; a++)
    for (int b = 0; b < D; b++) {
      double c = 0, ma = 0, mb = 0;
      for (int i = 0; i < N; i++) ma += w[i * D + a], mb += w[i * D + b];
      ma /= N, mb /= N;
      for (int i = 0; i < N; i++) c += (w[i * D + a] - ma) * (w[i * D + b] - mb);
      c /= N;
      double e = fabs(c - (a == b ? 1.0 : 0.0));
      if (e > worst) worst = e;
    }
  CHECK_MSG(worst < 2e-3, "whitened covariance differs from I by %g", worst);
}

/* head(z) after folding == head(P (z - mu)) before, for a linear and an MLP head (eval mode). */
static void check_fold(wcmi_head_kind kind) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  static float z[N * D], w[N * D];
  static int32_t y[N];
  make_features(2, z, y, N);
  double mu[D], P[D * D];
  feat_set s = {z, y, N};
  CHECK_OK(&ctx, head_fit_whitening(&ctx, &s, D, mu, P));
  head_fit_whiten(&s, D, mu, P, w);
  wcmi_rng r;
  wcmi_rng_seed(&r, 3);
  wcmi_net *h = wcmi_build_head(&ctx, kind, D, K, 64, &r);
  CHECK(h != NULL);
  if (!h) return;
  static float before[64 * K];
  memcpy(before, wcmi_net_forward(h, w, 64, 0), sizeof before);
  CHECK_OK(&ctx, head_fit_fold(&ctx, h, D, mu, P));
  const float *after = wcmi_net_forward(h, z, 64, 0);
  double worst = 0, scale = 0;
  for (int i = 0; i < 64 * K; i++) {
    worst = fmax(worst, fabs(after[i] - before[i]));
    scale = fmax(scale, fabs(before[i]));
  }
  CHECK_MSG(worst <= 1e-3 * scale, "%s head: folded output differs by %g (scale %g)", wcmi_head_name(kind), worst, scale);
  wcmi_net_free(h);
}
static void test_fold_reproduces_linear_head(void) { check_fold(WCMI_HEAD_LINEAR); }
static void test_fold_reproduces_mlp_head(void) { check_fold(WCMI_HEAD_MLP); }

static int fit(wcmi_head_kind kind, int epochs, uint64_t seed, double *acc_raw, float *params_out) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  static float ztr[N * D], zte[N * D];
  static int32_t ytr[N], yte[N];
  make_features(10, ztr, ytr, N);
  make_features(11, zte, yte, N);
  wcmi_rng r;
  wcmi_rng_seed(&r, seed);
  wcmi_net *h = wcmi_build_head(&ctx, kind, D, K, 128, &r), *best = wcmi_build_head(&ctx, kind, D, K, 128, &r);
  head_fit_epoch per[64];
  int best_epoch = -1;
  feat_set tr = {ztr, ytr, N}, te = {zte, yte, N};
  head_fit_cfg c = {.epochs = epochs, .batch_size = 128, .lr = 1e-2, .seed = seed, .task = "test"};
  int rc = head_fit_cached(&ctx, h, best, &tr, &te, D, &c, per, &best_epoch);
  CHECK_OK(&ctx, rc);
  /* The folded head scores raw features: its accuracy on them is the last epoch's. */
  CHECK_OK(&ctx, head_accuracy(&ctx, h, &te, D, acc_raw));
  CHECK_CLOSE(*acc_raw, per[epochs - 1].test_acc, 2.0 / N, 0);
  CHECK(best_epoch >= 0 && per[best_epoch].test_acc >= per[epochs - 1].test_acc);
  if (params_out) memcpy(params_out, wcmi_net_param(h, 0)->data, sizeof(float) * K * D);
  wcmi_net_free(h);
  wcmi_net_free(best);
  return rc;
}

static void test_cached_fit_converges_on_tiny_correlated_features(void) {
  double acc;
  fit(WCMI_HEAD_LINEAR, 20, 5, &acc, NULL);
  CHECK_MSG(acc > 0.85, "linear head on whitened cached features: test accuracy %.3f", acc);
  fit(WCMI_HEAD_MLP, 20, 5, &acc, NULL);
  CHECK_MSG(acc > 0.85, "MLP head on whitened cached features: test accuracy %.3f", acc);
}

static void test_cached_fit_is_deterministic(void) {
  static float a[K * D], b[K * D];
  double x, y;
  fit(WCMI_HEAD_MLP, 3, 9, &x, NULL);
  fit(WCMI_HEAD_LINEAR, 3, 9, &x, a);
  fit(WCMI_HEAD_LINEAR, 3, 9, &y, b);
  CHECK(memcmp(a, b, sizeof a) == 0 && x == y);
}

int main(void) {
  RUN(test_whitening_gives_identity_covariance);
  RUN(test_fold_reproduces_linear_head);
  RUN(test_fold_reproduces_mlp_head);
  RUN(test_cached_fit_converges_on_tiny_correlated_features);
  RUN(test_cached_fit_is_deterministic);
  return wt_finish();
}
