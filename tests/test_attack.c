/* PGD: iterates stay in the eps-ball and in [0,1], use-best never ends below the start, and on a
 * linear classifier l-inf PGD reaches the analytic worst case. */
#include "harness.h"
#include "wcmi/attack.h"
#include "wcmi/tasks.h"
#include "wcmi/train.h"

#include <string.h>

static wcmi_ctx ctx;

/* A linear binary classifier s(x) = w.x + b with loss = -y * s(x) (y = +-1): maximizing it moves
 * each coordinate by -y*eps*sign(w_j) until the box stops it, which is the analytic worst case. */
typedef struct {
  int D;
  const float *w;
  float b;
  const int *y;
  /* bookkeeping for the ball test */
  const float *x0;
  float eps;
  int out_of_ball;
  int evals;
} linear_obj;

static int linear_eval(void *user, const float *x, int N, float *loss, unsigned char *succ, float *grad) {
  linear_obj *o = user;
  o->evals++;
  for (int i = 0; i < N; i++) {
    double s = o->b;
    for (int j = 0; j < o->D; j++) {
      float v = x[i * o->D + j], v0 = o->x0[i * o->D + j];
      if (v < 0.0f || v > 1.0f || fabsf(v - v0) > o->eps * (1 + 1e-6f) + 1e-7f) o->out_of_ball++;
      s += o->w[j] * v;
    }
    loss[i] = (float)(-o->y[i] * s);
    if (succ) succ[i] = loss[i] > 0;
    if (grad)
      for (int j = 0; j < o->D; j++) grad[i * o->D + j] = -o->y[i] * o->w[j];
  }
  return WCMI_OK;
}

static void test_pgd_linf_reaches_analytic_worst_case_on_linear_classifier(void) {
  enum { N = 6, D = 20 };
  wcmi_rng rng;
  wcmi_rng_seed(&rng, 3);
  float w[D], x[N * D], adv[N * D];
  int y[N];
  for (int j = 0; j < D; j++) w[j] = wcmi_rng_uniform_range(&rng, -1, 1);
  for (int i = 0; i < N * D; i++) x[i] = wcmi_rng_uniform(&rng);
  for (int i = 0; i < N; i++) y[i] = i % 2 ? 1 : -1;
  const float eps = 0.1f;
  linear_obj o = {D, w, 0.2f, y, x, eps, 0, 0};
  wcmi_objective obj = {1, linear_eval, &o};
  wcmi_pgd_cfg cfg = {WCMI_NORM_LINF, eps, 0.02f, 10, 0, 0, 0};
  wcmi_attack *a = wcmi_attack_new(&ctx, &cfg, N, D);
  CHECK(a != NULL);
  float fl[N];
  CHECK_OK(&ctx, wcmi_pgd_run(a, &obj, x, N, &rng, adv, fl));
  for (int i = 0; i < N; i++) {
    double worst = -o.b * y[i];
    for (int j = 0; j < D; j++) {
      float dir = -y[i] * (w[j] > 0 ? 1.0f : -1.0f);
      float v = fminf(fmaxf(x[i * D + j] + dir * eps, 0.0f), 1.0f);
      CHECK_CLOSE(adv[i * D + j], v, 1e-6, 0);
      worst += -y[i] * w[j] * v;
    }
    CHECK_CLOSE(fl[i], worst, 1e-5, 1e-5);
  }
  CHECK(o.out_of_ball == 0);
  wcmi_attack_free(a);
}

static void test_pgd_iterates_stay_in_ball_and_box(void) {
  enum { N = 4, D = 50 };
  wcmi_rng rng;
  wcmi_rng_seed(&rng, 4);
  float w[D], x[N * D], adv[N * D];
  int y[N] = {1, -1, 1, -1};
  for (int j = 0; j < D; j++) w[j] = wcmi_rng_uniform_range(&rng, -1, 1);
  for (int i = 0; i < N * D; i++) x[i] = wcmi_rng_uniform(&rng) < 0.3f ? 0.0f : wcmi_rng_uniform(&rng);
  for (int norm = 0; norm < 2; norm++) {
    float eps = norm ? 1.5f : 0.3f;
    linear_obj o = {D, w, 0, y, x, eps, 0, 0};
    if (norm) o.eps = 1e9f; /* l2: checked separately below */
    wcmi_objective obj = {1, linear_eval, &o};
    wcmi_pgd_cfg cfg = {(wcmi_norm)norm, eps, norm ? 0.5f : 0.1f, 7, 1, 2, 1};
    wcmi_attack *a = wcmi_attack_new(&ctx, &cfg, N, D);
    CHECK_OK(&ctx, wcmi_pgd_run(a, &obj, x, N, &rng, adv, NULL));
    CHECK_MSG(o.out_of_ball == 0, "norm %d: %d iterates outside [0,1] or the ball", norm, o.out_of_ball);
    CHECK(o.evals == 3 * 8);
    for (int i = 0; i < N; i++) {
      double ss = 0, mx = 0;
      for (int j = 0; j < D; j++) {
        double d = adv[i * D + j] - x[i * D + j];
        ss += d * d;
        mx = fmax(mx, fabs(d));
      }
      if (norm) CHECK_MSG(sqrt(ss) <= eps * (1 + 1e-5), "l2 distance %g > eps %g", sqrt(ss), (double)eps);
      else CHECK(mx <= eps + 1e-6);
    }
    wcmi_attack_free(a);
  }
}

/* A loss with a narrow peak near the start and a trap: plain ascent with a huge step overshoots and
 * ends lower than it started; use-best must return at least the starting loss. */
static int bumpy_eval(void *user, const float *x, int N, float *loss, unsigned char *succ, float *grad) {
  (void)user;
  (void)succ;
  double total = 0;
  for (int i = 0; i < N; i++) {
    double v = x[i] - 0.5;
    total += cos(40 * v);
    if (grad) grad[i] = (float)(-40 * sin(40 * v));
  }
  loss[0] = (float)total; /* batch-level objective */
  return WCMI_OK;
}

static void test_use_best_never_ends_below_start(void) {
  enum { N = 5 };
  float x[N] = {0.5f, 0.51f, 0.49f, 0.52f, 0.5f}, adv[N], start, fin;
  wcmi_objective obj = {0, bumpy_eval, NULL};
  bumpy_eval(NULL, x, N, &start, NULL, NULL);
  wcmi_rng rng;
  wcmi_rng_seed(&rng, 1);
  wcmi_pgd_cfg cfg = {WCMI_NORM_LINF, 0.2f, 0.13f, 5, 0, 0, 1};
  wcmi_attack *a = wcmi_attack_new(&ctx, &cfg, N, 1);
  CHECK_OK(&ctx, wcmi_pgd_run(a, &obj, x, N, &rng, adv, &fin));
  CHECK_MSG(fin >= start, "use-best final loss %g < start %g", (double)fin, (double)start);
  /* Without use-best the same run ends lower, so the test above is not vacuous. */
  cfg.use_best = 0;
  wcmi_attack_set_cfg(a, &cfg);
  CHECK_OK(&ctx, wcmi_pgd_run(a, &obj, x, N, &rng, adv, &fin));
  CHECK_MSG(fin < start, "plain PGD unexpectedly kept the start loss (%g >= %g)", (double)fin, (double)start);
  wcmi_attack_free(a);
}

/* Per-sample version: each sample's loss peaks at the clean point x = 0.5, every step moves away
 * from it, and no sample ever succeeds; use-best must hand back the clean point itself (the start
 * is a candidate, as in robustness' PGD loop). */
static int bumpy_per_sample(void *user, const float *x, int N, float *loss, unsigned char *succ, float *grad) {
  (void)user;
  for (int i = 0; i < N; i++) {
    double v = x[i] - 0.5;
    loss[i] = (float)cos(40 * v);
    if (succ) succ[i] = 0;
    if (grad) grad[i] = (float)(-40 * sin(40 * v));
  }
  return WCMI_OK;
}

static void test_use_best_keeps_the_clean_point_per_sample(void) {
  enum { N = 3 };
  float x[N] = {0.5f, 0.5f, 0.5f}, adv[N], fin[N];
  /* A gradient of exactly 0 at the peak would leave sign steps at 0: nudge the first iterate off it. */
  x[1] = 0.5001f;
  x[2] = 0.4999f;
  wcmi_objective obj = {1, bumpy_per_sample, NULL};
  wcmi_rng rng;
  wcmi_rng_seed(&rng, 2);
  wcmi_pgd_cfg cfg = {WCMI_NORM_LINF, 0.2f, 0.13f, 4, 0, 0, 1};
  wcmi_attack *a = wcmi_attack_new(&ctx, &cfg, N, 1);
  CHECK_OK(&ctx, wcmi_pgd_run(a, &obj, x, N, &rng, adv, fin));
  for (int i = 0; i < N; i++) CHECK_MSG(adv[i] == x[i], "sample %d: use-best returned %g, not the clean %g", i, (double)adv[i], (double)x[i]);
  wcmi_attack_free(a);
}

/* PAPER.md section 4: every published number used use-best (robustness' default), so both
 * profiles of every dataset must start with it on. */
static void test_profiles_use_best_like_the_reference(void) {
  const char *data[] = {"mnist", "fashion-mnist", "svhn", "cifar10"}, *prof[] = {"paper", "quick"};
  for (int d = 0; d < 4; d++)
    for (int p = 0; p < 2; p++) {
      wcmi_task_cfg c;
      CHECK_OK(&ctx, wcmi_task_defaults(&ctx, &c, data[d], prof[p]));
      CHECK_MSG(c.attack.use_best == 1, "%s/%s: use_best %d", data[d], prof[p], c.attack.use_best);
      CHECK(c.attack.random_start == 0 && c.attack.restarts == 0);
    }
}

/* APGD's per-sample cross-entropy of a confident sample (true logit ahead by a margin of 30 or
 * more): -logf(p_y) in float rounds it to 0; it must stay positive and fall as the margin grows. */
static void test_sample_loss_of_a_confident_sample_is_positive_and_ordered(void) {
  enum { K = 10 };
  float l[K];
  double prev = INFINITY;
  for (int margin = 30; margin <= 60; margin += 10) {
    for (int k = 0; k < K; k++) l[k] = k == 3 ? 5.0f : 5.0f - (float)margin;
    double got = wcmi_clf_sample_loss(K, l, 3), want = log1p(9.0 * exp(-(double)margin));
    CHECK_MSG(got > 0 && got < prev, "margin %d: loss %g (previous %g)", margin, got, prev);
    CHECK_CLOSE(got, want, 0, 1e-5);
    prev = got;
  }
  /* A wrong prediction: the loss is about the margin by which another class wins. */
  for (int k = 0; k < K; k++) l[k] = 0.0f;
  l[7] = 50.0f;
  CHECK_CLOSE(wcmi_clf_sample_loss(K, l, 3), 50.0 + log1p(9.0 * exp(-50.0)), 0, 1e-6);
  l[7] = 0.25f;
  double lse = log(9.0 + exp(0.25));
  CHECK_CLOSE(wcmi_clf_sample_loss(K, l, 3), lse, 0, 1e-6);
}

static void test_bad_config_is_rejected(void) {
  wcmi_pgd_cfg cfg = {WCMI_NORM_LINF, -0.1f, 0.01f, 10, 0, 0, 0};
  CHECK(wcmi_attack_new(&ctx, &cfg, 4, 4) == NULL);
  CHECK(strstr(ctx.msg, "eps") != NULL);
  cfg.eps = 0.1f;
  cfg.steps = -1;
  CHECK(wcmi_pgd_cfg_check(&ctx, &cfg) == WCMI_EINVAL);
}

/* The reference (robustness' calc_fadein_eps) uses eps * min(1, epoch / E): a clean first epoch,
 * the full eps from epoch E on. */
static void test_eps_fade_in(void) {
  CHECK_CLOSE(wcmi_eps_schedule(0.3f, 0, 10), 0.0, 0, 0);
  CHECK_CLOSE(wcmi_eps_schedule(0.3f, 1, 10), 0.03, 1e-7, 0);
  CHECK_CLOSE(wcmi_eps_schedule(0.3f, 9, 10), 0.27, 1e-7, 0);
  CHECK_CLOSE(wcmi_eps_schedule(0.3f, 10, 10), 0.3, 1e-7, 0);
  CHECK_CLOSE(wcmi_eps_schedule(0.3f, 50, 10), 0.3, 1e-7, 0);
  CHECK_CLOSE(wcmi_eps_schedule(0.3f, 0, 0), 0.3, 1e-7, 0);
}

int main(void) {
  wcmi_ctx_init(&ctx);
  RUN(test_pgd_linf_reaches_analytic_worst_case_on_linear_classifier);
  RUN(test_pgd_iterates_stay_in_ball_and_box);
  RUN(test_use_best_never_ends_below_start);
  RUN(test_use_best_keeps_the_clean_point_per_sample);
  RUN(test_profiles_use_best_like_the_reference);
  RUN(test_sample_loss_of_a_confident_sample_is_positive_and_ordered);
  RUN(test_bad_config_is_rejected);
  RUN(test_eps_fade_in);
  return wt_finish();
}
