/* APGD-CE: iterates stay in the eps-ball and in [0,1], it reaches the analytic worst case of a
 * linear classifier, step-size halving lets it settle on a maximum inside the ball, it is
 * deterministic, restarts never weaken it, batch objectives are refused, and on a small
 * non-robust MLP it is at least as strong as PGD at the same number of gradient evaluations. */
#include "harness.h"
#include "wcmi/attack.h"
#include "wcmi/nn.h"

#include <string.h>

static wcmi_ctx ctx;

/* ---- instrumented objective: records every iterate that leaves the ball or the box --------- */
typedef struct {
  int (*inner)(void *user, const float *x, int N, float *loss, unsigned char *succ, float *grad);
  void *inner_user;
  wcmi_norm norm;
  float eps;
  const float *x0;
  int D;
  int out_of_box, out_of_ball, evals, grad_evals;
  double max_dist; /* largest distance to x0 seen, in the attack's norm */
} watched_obj;

static int watched_eval(void *user, const float *x, int N, float *loss, unsigned char *succ, float *grad) {
  watched_obj *o = user;
  o->evals++;
  if (grad) o->grad_evals++;
  for (int i = 0; i < N; i++) {
    double ss = 0, mx = 0;
    for (int j = 0; j < o->D; j++) {
      float v = x[i * o->D + j];
      double d = (double)v - o->x0[i * o->D + j];
      if (v < 0.0f || v > 1.0f) o->out_of_box++;
      ss += d * d;
      mx = fmax(mx, fabs(d));
    }
    double dist = o->norm == WCMI_NORM_LINF ? mx : sqrt(ss);
    /* l-inf: clipping is exact up to the float rounding of x0 +- eps; l2 shrinks by 1e-6 below eps. */
    if (dist > o->eps * (1 + 1e-6) + 1e-7) o->out_of_ball++;
    o->max_dist = fmax(o->max_dist, dist);
  }
  return o->inner(o->inner_user, x, N, loss, succ, grad);
}

/* A wavy per-sample loss f(x) = sum_j c_j sin(freq x_j + phi_j): many local maxima, so APGD moves
 * about, oscillates and halves its steps. */
typedef struct {
  int D;
  const float *c, *phi;
  double freq;
} wavy_obj;

static int wavy_eval(void *user, const float *x, int N, float *loss, unsigned char *succ, float *grad) {
  wavy_obj *o = user;
  for (int i = 0; i < N; i++) {
    double s = 0;
    for (int j = 0; j < o->D; j++) {
      double u = o->freq * x[i * o->D + j] + o->phi[j];
      s += o->c[j] * sin(u);
      if (grad) grad[i * o->D + j] = (float)(o->freq * o->c[j] * cos(u));
    }
    loss[i] = (float)s;
    if (succ) succ[i] = 0;
  }
  return WCMI_OK;
}

static void test_apgd_iterates_stay_in_ball_and_box(void) {
  enum { N = 5, D = 40, STEPS = 25, RESTARTS = 2 };
  wcmi_rng rng;
  wcmi_rng_seed(&rng, 11);
  float c[D], phi[D], x[N * D], adv[N * D];
  for (int j = 0; j < D; j++) {
    c[j] = wcmi_rng_uniform_range(&rng, -1, 1);
    phi[j] = wcmi_rng_uniform_range(&rng, 0, 6.28f);
  }
  /* A third of the pixels sit on the box edges, where the box binds before the ball does. */
  for (int i = 0; i < N * D; i++) {
    float u = wcmi_rng_uniform(&rng);
    x[i] = u < 0.15f ? 0.0f : u < 0.3f ? 1.0f : wcmi_rng_uniform(&rng);
  }
  wavy_obj w = {D, c, phi, 7.0};
  for (int norm = 0; norm < 2; norm++) {
    for (int random_start = 0; random_start < 2; random_start++) {
      float eps = norm ? 1.2f : 0.25f;
      watched_obj o = {wavy_eval, &w, (wcmi_norm)norm, eps, x, D, 0, 0, 0, 0, 0};
      wcmi_objective obj = {1, watched_eval, &o};
      wcmi_pgd_cfg cfg = {(wcmi_norm)norm, eps, 0.0f, STEPS, random_start, RESTARTS, 0};
      wcmi_attack *a = wcmi_attack_new(&ctx, &cfg, N, D);
      CHECK(a != NULL);
      float fl[N];
      CHECK_OK(&ctx, wcmi_apgd_run(a, &obj, x, N, &rng, adv, fl));
      CHECK_MSG(o.out_of_box == 0, "norm %d: %d iterates outside [0,1]", norm, o.out_of_box);
      CHECK_MSG(o.out_of_ball == 0, "norm %d: %d iterates outside the eps-ball (max distance %g, eps %g)", norm,
                o.out_of_ball, o.max_dist, (double)eps);
      /* Every run evaluates STEPS + 1 iterates, STEPS of them with a gradient (like PGD). */
      CHECK_MSG(o.evals == (RESTARTS + 1) * (STEPS + 1), "norm %d: %d evaluations", norm, o.evals);
      CHECK(o.grad_evals == (RESTARTS + 1) * STEPS);
      /* The search reaches the edge of the ball (the box test above is not vacuous). */
      CHECK_MSG(o.max_dist > 0.9 * eps, "norm %d: iterates stayed within %g of x", norm, o.max_dist);
      /* The returned point is one of the iterates and its loss is the reported one. */
      float chk[N];
      wavy_eval(&w, adv, N, chk, NULL, NULL);
      for (int i = 0; i < N; i++) CHECK_CLOSE(fl[i], chk[i], 1e-6, 0);
      wcmi_attack_free(a);
    }
  }
}

/* ---- linear classifier (as in test_attack.c): the worst case is analytic ------------------- */
typedef struct {
  int D;
  const float *w;
  float b;
  const int *y;
} linear_obj;

static int linear_eval(void *user, const float *x, int N, float *loss, unsigned char *succ, float *grad) {
  linear_obj *o = user;
  for (int i = 0; i < N; i++) {
    double s = o->b;
    for (int j = 0; j < o->D; j++) s += o->w[j] * x[i * o->D + j];
    loss[i] = (float)(-o->y[i] * s);
    if (succ) succ[i] = loss[i] > 0;
    if (grad)
      for (int j = 0; j < o->D; j++) grad[i * o->D + j] = (float)(-o->y[i]) * o->w[j];
  }
  return WCMI_OK;
}

static void test_apgd_linf_reaches_analytic_worst_case_on_linear_classifier(void) {
  enum { N = 6, D = 20 };
  wcmi_rng rng;
  wcmi_rng_seed(&rng, 3);
  float w[D], x[N * D], adv[N * D];
  int y[N];
  for (int j = 0; j < D; j++) w[j] = wcmi_rng_uniform_range(&rng, -1, 1);
  for (int i = 0; i < N * D; i++) x[i] = wcmi_rng_uniform(&rng);
  for (int i = 0; i < N; i++) y[i] = i % 2 ? 1 : -1;
  const float eps = 0.1f;
  linear_obj o = {D, w, 0.2f, y};
  wcmi_objective obj = {1, linear_eval, &o};
  wcmi_pgd_cfg cfg = {WCMI_NORM_LINF, eps, 0.0f, 10, 0, 0, 0};
  wcmi_attack *a = wcmi_attack_new(&ctx, &cfg, N, D);
  CHECK(a != NULL);
  float fl[N];
  CHECK_OK(&ctx, wcmi_apgd_run(a, &obj, x, N, &rng, adv, fl));
  for (int i = 0; i < N; i++) {
    double worst = -o.b * y[i];
    for (int j = 0; j < D; j++) {
      float dir = (float)(-y[i]) * (w[j] > 0 ? 1.0f : -1.0f);
      float v = fminf(fmaxf(x[i * D + j] + dir * eps, 0.0f), 1.0f);
      CHECK_CLOSE(adv[i * D + j], v, 1e-6, 0);
      worst += -y[i] * w[j] * v;
    }
    CHECK_CLOSE(fl[i], worst, 1e-5, 1e-5);
  }
  wcmi_attack_free(a);
}

/* l2, with x far enough from the box edges that only the ball binds: the worst case is
 * x - y eps w/||w||, raising the loss by exactly eps ||w||. */
static void test_apgd_l2_reaches_analytic_worst_case_on_linear_classifier(void) {
  enum { N = 4, D = 16 };
  wcmi_rng rng;
  wcmi_rng_seed(&rng, 5);
  float w[D], x[N * D], adv[N * D], clean[N], fl[N];
  int y[N] = {1, -1, -1, 1};
  double wn = 0;
  for (int j = 0; j < D; j++) {
    w[j] = wcmi_rng_uniform_range(&rng, -1, 1);
    wn += (double)w[j] * w[j];
  }
  wn = sqrt(wn);
  for (int i = 0; i < N * D; i++) x[i] = wcmi_rng_uniform_range(&rng, 0.4f, 0.6f);
  const float eps = 0.3f; /* every coordinate moves by at most eps < 0.4 */
  linear_obj o = {D, w, -0.1f, y};
  wcmi_objective obj = {1, linear_eval, &o};
  linear_eval(&o, x, N, clean, NULL, NULL);
  wcmi_pgd_cfg cfg = {WCMI_NORM_L2, eps, 0.0f, 10, 0, 0, 0};
  wcmi_attack *a = wcmi_attack_new(&ctx, &cfg, N, D);
  CHECK_OK(&ctx, wcmi_apgd_run(a, &obj, x, N, &rng, adv, fl));
  for (int i = 0; i < N; i++) {
    CHECK_CLOSE(fl[i], clean[i] + eps * wn, 1e-5, 1e-5);
    for (int j = 0; j < D; j++) CHECK_CLOSE(adv[i * D + j], x[i * D + j] - y[i] * eps * w[j] / wn, 1e-5, 0);
  }
  wcmi_attack_free(a);
}

/* A concave loss -(x - c)^2 whose maximum lies inside the ball: sign steps of a fixed size bounce
 * around c, so getting close to it requires the step-size halving at the checkpoints. */
static int parabola_eval(void *user, const float *x, int N, float *loss, unsigned char *succ, float *grad) {
  const float *c = user;
  for (int i = 0; i < N; i++) {
    double d = (double)x[i] - c[i];
    loss[i] = (float)(-d * d);
    if (succ) succ[i] = 0;
    if (grad) grad[i] = (float)(-2 * d);
  }
  return WCMI_OK;
}

static void test_apgd_step_halving_settles_on_interior_maximum(void) {
  enum { N = 3 };
  float x[N] = {0.5f, 0.3f, 0.7f}, c[N] = {0.5f + 0.137f, 0.3f - 0.211f, 0.7f + 0.05f}, adv[N], pgd_adv[N];
  wcmi_rng rng;
  wcmi_rng_seed(&rng, 2);
  wcmi_objective obj = {1, parabola_eval, c};
  wcmi_pgd_cfg cfg = {WCMI_NORM_LINF, 0.3f, 0.1f, 100, 0, 0, 1};
  wcmi_attack *a = wcmi_attack_new(&ctx, &cfg, N, 1);
  CHECK_OK(&ctx, wcmi_apgd_run(a, &obj, x, N, &rng, adv, NULL));
  CHECK_OK(&ctx, wcmi_pgd_run(a, &obj, x, N, &rng, pgd_adv, NULL));
  for (int i = 0; i < N; i++) {
    /* The initial step 2*eps = 0.6 halves roughly a dozen times over 100 iterations. */
    CHECK_MSG(fabsf(adv[i] - c[i]) < 1e-3f, "sample %d: APGD ends at %g, maximum at %g", i, (double)adv[i],
              (double)c[i]);
  }
  /* Fixed-step PGD (step 0.1, use-best) cannot get as close on at least one sample. */
  double pgd_err = 0;
  for (int i = 0; i < N; i++) pgd_err = fmax(pgd_err, fabs(pgd_adv[i] - c[i]));
  CHECK_MSG(pgd_err > 1e-2, "fixed-step PGD got within %g of the maxima: the test does not need halving", pgd_err);
  wcmi_attack_free(a);
}

static void test_apgd_is_deterministic_and_restarts_never_weaken_it(void) {
  enum { N = 6, D = 30 };
  wcmi_rng rng;
  wcmi_rng_seed(&rng, 21);
  float c[D], phi[D], x[N * D], adv1[N * D], adv2[N * D], fl0[N], fl1[N], fl2[N];
  for (int j = 0; j < D; j++) {
    c[j] = wcmi_rng_uniform_range(&rng, -1, 1);
    phi[j] = wcmi_rng_uniform_range(&rng, 0, 6.28f);
  }
  for (int i = 0; i < N * D; i++) x[i] = wcmi_rng_uniform(&rng);
  /* Period 2*pi/25 = 0.25 < the ball's width 0.4: several local maxima per coordinate. */
  wavy_obj w = {D, c, phi, 25.0};
  wcmi_objective obj = {1, wavy_eval, &w};
  wcmi_pgd_cfg cfg = {WCMI_NORM_LINF, 0.2f, 0.0f, 20, 0, 0, 0};
  wcmi_attack *a = wcmi_attack_new(&ctx, &cfg, N, D);
  CHECK_OK(&ctx, wcmi_apgd_run(a, &obj, x, N, &rng, adv1, fl0));
  /* Restarts: the first run starts at x as before, so the per-sample worst can only rise. */
  cfg.restarts = 3;
  CHECK_OK(&ctx, wcmi_attack_set_cfg(a, &cfg));
  wcmi_rng r1, r2;
  wcmi_rng_seed(&r1, 99);
  wcmi_rng_seed(&r2, 99);
  CHECK_OK(&ctx, wcmi_apgd_run(a, &obj, x, N, &r1, adv1, fl1));
  CHECK_OK(&ctx, wcmi_apgd_run(a, &obj, x, N, &r2, adv2, fl2));
  CHECK(memcmp(adv1, adv2, sizeof adv1) == 0);
  CHECK(memcmp(fl1, fl2, sizeof fl1) == 0);
  int rose = 0;
  for (int i = 0; i < N; i++) {
    CHECK_MSG(fl1[i] >= fl0[i], "sample %d: loss with restarts %g < without %g", i, (double)fl1[i], (double)fl0[i]);
    rose += fl1[i] > fl0[i];
  }
  CHECK_MSG(rose > 0, "restarts found nothing better on any sample (wavy loss should have other maxima)");
  wcmi_attack_free(a);
}

static int batch_eval(void *user, const float *x, int N, float *loss, unsigned char *succ, float *grad) {
  (void)user;
  (void)succ;
  loss[0] = 0;
  for (int i = 0; i < N; i++) {
    loss[0] += x[i];
    if (grad) grad[i] = 1;
  }
  return WCMI_OK;
}

static void test_apgd_rejects_batch_objectives(void) {
  float x[4] = {0.1f, 0.2f, 0.3f, 0.4f}, adv[4];
  wcmi_objective obj = {0, batch_eval, NULL};
  wcmi_pgd_cfg cfg = {WCMI_NORM_LINF, 0.1f, 0.0f, 5, 0, 0, 0};
  wcmi_attack *a = wcmi_attack_new(&ctx, &cfg, 4, 1);
  wcmi_rng rng;
  wcmi_rng_seed(&rng, 1);
  CHECK(wcmi_apgd_run(a, &obj, x, 4, &rng, adv, NULL) == WCMI_EINVAL);
  CHECK_MSG(strstr(ctx.msg, "per-sample") != NULL, "message: %s", ctx.msg);
  wcmi_attack_free(a);
}

/* ---- APGD vs PGD on a small non-robust MLP ------------------------------------------------- */
enum { MLP_D = 10, MLP_K = 2, MLP_HID = 64, MLP_TRAIN = 2000, MLP_TEST = 300, MLP_BATCH = 100 };

/* Synthetic data in [0,1]^D: class 1 inside a sphere around the centre of the cube (about half the
 * points), class 0 outside. The boundary is curved, so the classifier needs its hidden layers. */
static int32_t synthetic_label(const float *v) {
  double r2 = 0;
  for (int j = 0; j < MLP_D; j++) r2 += (v[j] - 0.5) * (v[j] - 0.5);
  return (int32_t)(r2 < 0.07 * MLP_D);
}

static void synthetic_data(wcmi_rng *rng, float *x, int32_t *y, int n) {
  for (int i = 0; i < n; i++) {
    for (int j = 0; j < MLP_D; j++) x[i * MLP_D + j] = wcmi_rng_uniform(rng);
    y[i] = synthetic_label(x + i * MLP_D);
  }
}

typedef struct {
  wcmi_net *net;
  const int32_t *labels;
  float *probs, *dlogits; /* (max_batch, K) */
} ce_obj;

/* Per-sample cross-entropy -log softmax(logits)[y] and its input gradient; success = argmax != y. */
static int ce_eval(void *user, const float *x, int N, float *loss, unsigned char *succ, float *grad) {
  ce_obj *o = user;
  const float *logits = wcmi_net_forward(o->net, x, N, 0);
  if (!logits) return WCMI_EINVAL;
  wcmi_cross_entropy_forward(N, MLP_K, logits, o->labels, o->probs);
  for (int i = 0; i < N; i++) {
    const float *l = logits + i * MLP_K;
    float mx = l[0];
    int arg = 0;
    for (int k = 1; k < MLP_K; k++)
      if (l[k] > mx) mx = l[k], arg = k;
    double se = 0;
    for (int k = 0; k < MLP_K; k++) se += exp((double)l[k] - mx);
    loss[i] = (float)(mx + log(se) - l[o->labels[i]]); /* max-shifted log-sum-exp: finite even when p_y underflows */
    if (succ) succ[i] = arg != o->labels[i];
  }
  if (grad) {
    /* Gradient of the summed loss: scale N undoes the mean. */
    wcmi_cross_entropy_backward(N, MLP_K, o->probs, o->labels, (float)N, o->dlogits);
    int rc = wcmi_net_backward(o->net, o->dlogits, WCMI_GRAD_INPUT);
    if (rc) return rc;
    memcpy(grad, wcmi_net_input_grad(o->net), (size_t)N * MLP_D * sizeof(float));
  }
  return WCMI_OK;
}

static wcmi_net *train_mlp(wcmi_rng *rng, const float *x, const int32_t *y) {
  wcmi_net *net = wcmi_net_new(&ctx, "mlp", wcmi_shape1(MLP_D));
  CHECK(net != NULL);
  CHECK_OK(&ctx, wcmi_net_add_linear(net, "0", MLP_HID, 1));
  CHECK_OK(&ctx, wcmi_net_add_relu(net));
  CHECK_OK(&ctx, wcmi_net_add_linear(net, "2", MLP_HID, 1));
  CHECK_OK(&ctx, wcmi_net_add_relu(net));
  CHECK_OK(&ctx, wcmi_net_add_linear(net, "4", MLP_K, 1));
  CHECK_OK(&ctx, wcmi_net_finalize(net, MLP_TEST, rng));
  wcmi_adam_cfg ac = wcmi_adam_defaults();
  ac.lr = 1e-2f;
  wcmi_optim *opt = wcmi_adam_new(&ctx, &net, 1, ac);
  CHECK(opt != NULL);
  float probs[MLP_BATCH * MLP_K], dl[MLP_BATCH * MLP_K];
  for (int epoch = 0; epoch < 20; epoch++)
    for (int b = 0; b < MLP_TRAIN; b += MLP_BATCH) {
      const float *logits = wcmi_net_forward(net, x + b * MLP_D, MLP_BATCH, 1);
      wcmi_cross_entropy_forward(MLP_BATCH, MLP_K, logits, y + b, probs);
      wcmi_cross_entropy_backward(MLP_BATCH, MLP_K, probs, y + b, 1.0f, dl);
      wcmi_optim_zero_grad(opt);
      CHECK_OK(&ctx, wcmi_net_backward(net, dl, WCMI_GRAD_PARAMS));
      wcmi_optim_step(opt);
    }
  wcmi_optim_free(opt);
  return net;
}

static int correct_count(ce_obj *o, const float *x) {
  float loss[MLP_TEST];
  unsigned char succ[MLP_TEST];
  ce_eval(o, x, MLP_TEST, loss, succ, NULL);
  int right = 0;
  for (int i = 0; i < MLP_TEST; i++) right += !succ[i];
  return right;
}

/* The claim, at equal budget (same eps, same gradient evaluations, no restarts; PGD with
 * step eps/4 and use-best, its strongest single run). On a model this small both attacks usually
 * end on the same points, and either may miss a single sample the other finds, so the claim is
 * checked where it is stable: summed over 6 models x 2 eps x 2 budgets APGD leaves no more points
 * correct than PGD, and no single setting lets APGD trail PGD by more than one sample of 300. */
static void test_apgd_at_least_as_strong_as_pgd_on_nonrobust_mlp(void) {
  static float xtr[MLP_TRAIN * MLP_D], xte[MLP_TEST * MLP_D], adv[MLP_TEST * MLP_D];
  static int32_t ytr[MLP_TRAIN], yte[MLP_TEST];
  static float probs[MLP_TEST * MLP_K], dl[MLP_TEST * MLP_K];
  const float epss[2] = {0.06f, 0.1f};
  const int budgets[2] = {10, 20};
  int pgd_total = 0, apgd_total = 0;
  /* One thread: the matrices are tiny, and with more threads the OpenMP and BLAS hand-offs cost
   * more than the work (40x slower on a loaded 2-core machine). */
  const int threads = ctx.num_threads;
  wcmi_set_threads(&ctx, 1);
  for (uint64_t seed = 1; seed <= 6; seed++) {
    wcmi_rng rng;
    wcmi_rng_seed(&rng, seed);
    synthetic_data(&rng, xtr, ytr, MLP_TRAIN);
    synthetic_data(&rng, xte, yte, MLP_TEST);
    wcmi_net *net = train_mlp(&rng, xtr, ytr);
    ce_obj o = {net, yte, probs, dl};
    wcmi_objective obj = {1, ce_eval, &o};
    int nat = correct_count(&o, xte);
    CHECK_MSG(nat > 0.75 * MLP_TEST, "seed %d: the MLP only reached %d/%d clean", (int)seed, nat, MLP_TEST);
    for (int ei = 0; ei < 2; ei++)
      for (int bi = 0; bi < 2; bi++) {
        const float eps = epss[ei];
        wcmi_pgd_cfg cfg = {WCMI_NORM_LINF, eps, eps / 4, budgets[bi], 0, 0, 1};
        wcmi_attack *a = wcmi_attack_new(&ctx, &cfg, MLP_TEST, MLP_D);
        CHECK_OK(&ctx, wcmi_pgd_run(a, &obj, xte, MLP_TEST, &rng, adv, NULL));
        int pgd = correct_count(&o, adv);
        CHECK_OK(&ctx, wcmi_apgd_run(a, &obj, xte, MLP_TEST, &rng, adv, NULL));
        int apgd = correct_count(&o, adv);
        printf("  seed %d eps %.2f %2d steps: correct of %d: clean %d, PGD %d, APGD-CE %d\n", (int)seed, (double)eps,
               budgets[bi], MLP_TEST, nat, pgd, apgd);
        CHECK_MSG(apgd <= pgd + 1, "seed %d eps %g %d steps: APGD leaves %d correct, PGD %d", (int)seed, (double)eps,
                  budgets[bi], apgd, pgd);
        /* The attack matters at this eps (otherwise the comparison says nothing). */
        CHECK_MSG(pgd < nat - 0.1 * MLP_TEST, "PGD only lowers correct points from %d to %d", nat, pgd);
        pgd_total += pgd;
        apgd_total += apgd;
        wcmi_attack_free(a);
      }
    wcmi_net_free(net);
  }
  wcmi_set_threads(&ctx, threads);
  printf("  total correct over 24 settings: PGD %d, APGD-CE %d\n", pgd_total, apgd_total);
  CHECK_MSG(apgd_total <= pgd_total, "APGD leaves %d points correct in total, PGD %d", apgd_total, pgd_total);
}

int main(void) {
  wcmi_ctx_init(&ctx);
  RUN(test_apgd_iterates_stay_in_ball_and_box);
  RUN(test_apgd_linf_reaches_analytic_worst_case_on_linear_classifier);
  RUN(test_apgd_l2_reaches_analytic_worst_case_on_linear_classifier);
  RUN(test_apgd_step_halving_settles_on_interior_maximum);
  RUN(test_apgd_is_deterministic_and_restarts_never_weaken_it);
  RUN(test_apgd_rejects_batch_objectives);
  RUN(test_apgd_at_least_as_strong_as_pgd_on_nonrobust_mlp);
  return wt_finish();
}
