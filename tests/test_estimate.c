/* estimate-mi pieces: the Fano bound's values from PAPER.md section 1, the MI objective through a
 * representation head (the logit layer of a Baseline-H model), and the estimate-mi task on such a
 * model: the logits are the representation, and only the critic learns. */
#include "harness.h"
#include "wcmi/io.h"
#include "wcmi/tasks.h"

#include <string.h>

enum { N = 8, HS = 8 };
static const float SPREAD = 200.0f; /* logit scale, see the gradient test */

static void test_fano_bound_matches_paper_values(void) {
  /* PAPER.md section 1, 10 classes: I_worst = 0 -> 30.1%, 1.08 -> 77.0%, >= ln 5 -> 100%. */
  CHECK_CLOSE(wcmi_fano_bound(0.0, 10), 0.301, 5e-4, 0);
  CHECK_CLOSE(wcmi_fano_bound(1.08, 10), 0.770, 5e-4, 0);
  CHECK_CLOSE(wcmi_fano_bound(log(5.0), 10), 1.0, 1e-12, 0);
  CHECK_CLOSE(wcmi_fano_bound(3.0, 10), 1.0, 0, 0);
  CHECK_CLOSE(wcmi_fano_bound(log(5.0) - 0.01, 10), (log(5.0) - 0.01 + log(2.0)) / log(10.0), 1e-12, 0);
  /* A negative "MI" (the attack beat the critic) counts as 0. */
  CHECK_CLOSE(wcmi_fano_bound(-2.5, 10), wcmi_fano_bound(0.0, 10), 0, 0);
}

/* A Baseline-H-like model (encoder + MLP head) with a critic whose global net takes the 10 logits. */
static int logits_model(wcmi_ctx *ctx, wcmi_model *m) {
  int rc = wcmi_model_init(ctx, m, "fashion-mnist", HS, WCMI_HEAD_MLP, N, 7);
  if (rc) return rc;
  wcmi_rng rng;
  wcmi_rng_derive(&rng, 8, WCMI_STREAM_INIT);
  wcmi_net_free(m->global);
  m->global = wcmi_build_global_estimator(ctx, WCMI_NUM_CLASSES, HS, N, &rng);
  return m->global ? WCMI_OK : ctx->status;
}

/* N images of 28x28: sample i has brightness 0.2 + 0.6 i / (N - 1) plus a little noise, so that an
 * untrained encoder already tells the samples apart and the MI loss has a gradient well above the
 * float32 noise of the scores. Values stay inside (0, 1), away from the model's clamp. */
static void fill_inputs(float *x, uint64_t seed) {
  wcmi_rng r;
  wcmi_rng_seed(&r, seed);
  for (int i = 0; i < N; i++)
    for (int p = 0; p < 28 * 28; p++)
      x[i * 28 * 28 + p] = 0.2f + 0.6f * (float)i / (N - 1) + wcmi_rng_uniform_range(&r, -0.05f, 0.05f);
}

/* Fano's inequality needs an MI lower bound in nats: DV and InfoNCE, not the f-divergences. */
static void test_fano_applies_only_to_mi_lower_bounds(void) {
  wcmi_mi_cfg mi = wcmi_mi_default_cfg();
  const char *why = NULL;
  CHECK(wcmi_fano_applies(mi, &why) == 1);
  mi.estimator = WCMI_MI_NCE;
  CHECK(wcmi_fano_applies(mi, &why) == 1);
  mi.estimator = WCMI_MI_FD;
  CHECK(wcmi_fano_applies(mi, &why) == 0);
  CHECK(why != NULL && strstr(why, "f-divergence") != NULL);
}

/* --critics: 3 for the quick profile, 1 for paper, the option wins; critic 0 keeps the run's seed
 * (so --critics 1 is the single-critic run) and the others are distinct and reproducible. */
static void test_critic_count_and_seeds(void) {
  wcmi_ctx c;
  wcmi_ctx_init(&c);
  wcmi_task_cfg quick, paper;
  CHECK_OK(&c, wcmi_task_defaults(&c, &quick, "fashion-mnist", "quick"));
  CHECK_OK(&c, wcmi_task_defaults(&c, &paper, "fashion-mnist", "paper"));
  wcmi_estimate_opts o;
  wcmi_estimate_opts_default(&o);
  CHECK(wcmi_estimate_critics(&quick, &o) == 3 && wcmi_estimate_critics(&paper, &o) == 1);
  o.critics = 5;
  CHECK(wcmi_estimate_critics(&quick, &o) == 5 && wcmi_estimate_critics(&paper, &o) == 5);
  CHECK(wcmi_estimate_critic_seed(42, 0) == 42);
  uint64_t s1 = wcmi_estimate_critic_seed(42, 1), s2 = wcmi_estimate_critic_seed(42, 2);
  CHECK(s1 != 42 && s2 != 42 && s1 != s2);
  CHECK(s1 == wcmi_estimate_critic_seed(42, 1) && s1 != wcmi_estimate_critic_seed(43, 1));
}

static void test_input_gradient_through_repr_head_matches_finite_difference(void) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  wcmi_model m;
  CHECK_OK(&ctx, logits_model(&ctx, &m));
  wcmi_dim d;
  CHECK_OK(&ctx, wcmi_dim_init(&ctx, &d, &m, wcmi_mi_default_cfg(), WCMI_PATH_ENCODER, N));
  CHECK_OK(&ctx, wcmi_dim_set_repr_head(&d, m.classifier));
  const int64_t n = (int64_t)N * 28 * 28;
  float *x = malloc((size_t)n * sizeof *x), *g = malloc((size_t)n * sizeof *g), *xp = malloc((size_t)n * sizeof *xp);
  fill_inputs(x, 11);
  float loss;
  /* An untrained model maps all inputs to nearly the same logits, so the critic scores all pairs
   * alike and the loss is too flat to difference in float32: spread the logits out first. */
  wcmi_param *w = wcmi_net_find_param(m.classifier, "classifier.layer1.0.weight");
  CHECK(w != NULL);
  for (int64_t i = 0; w && i < wcmi_shape_numel(&w->shape); i++) w->data[i] *= SPREAD;
  CHECK_OK(&ctx, wcmi_dim_step(&d, x, N, 0, 0, WCMI_DIM_INPUT, &loss, g));
  double gn = 0;
  for (int64_t i = 0; i < n; i++) gn += (double)g[i] * g[i];
  gn = sqrt(gn);
  CHECK(gn > 1e-6);
  /* Central difference along the gradient direction: (f(x + h v) - f(x - h v)) / 2h = |g|. Eval
   * mode makes f deterministic; h moves each pixel by ~1e-3, too little to cross many ReLU kinks. */
  const double h = 0.05;
  float fp, fm;
  for (int64_t i = 0; i < n; i++) xp[i] = x[i] + (float)(h * g[i] / gn);
  CHECK_OK(&ctx, wcmi_dim_step(&d, xp, N, 0, 0, 0, &fp, NULL));
  for (int64_t i = 0; i < n; i++) xp[i] = x[i] - (float)(h * g[i] / gn);
  CHECK_OK(&ctx, wcmi_dim_step(&d, xp, N, 0, 0, 0, &fm, NULL));
  CHECK_CLOSE(((double)fp - fm) / (2 * h), gn, 0, 0.05); /* seen: 1.5% apart */
  free(x);
  free(g);
  free(xp);
  wcmi_dim_free(&d);
  wcmi_model_free(&m);
}

static double grad_norm(wcmi_net *net) {
  double s = 0;
  for (int i = 0; i < wcmi_net_num_params(net); i++) {
    wcmi_param *p = wcmi_net_param(net, i);
    if (p->kind != WCMI_PARAM_TRAINABLE) continue;
    for (int64_t j = 0; j < wcmi_shape_numel(&p->shape); j++) s += (double)p->grad[j] * p->grad[j];
  }
  return sqrt(s);
}

static void test_repr_head_params_count_as_encoder_params(void) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  wcmi_model m;
  CHECK_OK(&ctx, logits_model(&ctx, &m));
  wcmi_dim d;
  CHECK_OK(&ctx, wcmi_dim_init(&ctx, &d, &m, wcmi_mi_default_cfg(), WCMI_PATH_ENCODER, N));
  CHECK_OK(&ctx, wcmi_dim_set_repr_head(&d, m.classifier));
  float *x = malloc((size_t)N * 28 * 28 * sizeof *x), loss;
  fill_inputs(x, 12);
  wcmi_net *nets[4];
  int nn = wcmi_model_nets(&m, nets);
  for (int i = 0; i < nn; i++) wcmi_net_zero_grad(nets[i]);
  /* Estimator parameters only: the representation gets no gradient (the frozen case). */
  CHECK_OK(&ctx, wcmi_dim_step(&d, x, N, 0, 1, WCMI_DIM_ESTIMATOR_PARAMS, &loss, NULL));
  CHECK(grad_norm(m.classifier) == 0 && grad_norm(m.encoder) == 0);
  CHECK(grad_norm(m.global) > 0 && grad_norm(m.local) > 0);
  CHECK_OK(&ctx, wcmi_dim_step(&d, x, N, 0, 1, WCMI_DIM_ENCODER_PARAMS, &loss, NULL));
  CHECK(grad_norm(m.classifier) > 0 && grad_norm(m.encoder) > 0);
  free(x);
  wcmi_dim_free(&d);
  wcmi_model_free(&m);
}

static void test_repr_head_shape_mismatch_is_rejected(void) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  wcmi_model m;
  /* The global estimator built for z (64) cannot take the head's 10 logits. */
  CHECK_OK(&ctx, wcmi_model_init(&ctx, &m, "fashion-mnist", HS, WCMI_HEAD_LINEAR, N, 3));
  wcmi_dim d;
  CHECK_OK(&ctx, wcmi_dim_init(&ctx, &d, &m, wcmi_mi_default_cfg(), WCMI_PATH_ENCODER, N));
  CHECK(wcmi_dim_set_repr_head(&d, m.classifier) == WCMI_EINVAL);
  CHECK(strstr(ctx.msg, "global estimator") != NULL);
  CHECK(d.repr_head == NULL);
  wcmi_dim_free(&d);
  wcmi_model_free(&m);
}

static int same_params(wcmi_net *a, wcmi_net *b) {
  for (int i = 0; i < wcmi_net_num_params(a); i++) {
    wcmi_param *p = wcmi_net_param(a, i), *q = wcmi_net_param(b, i);
    if (p->kind == WCMI_PARAM_COUNTER) {
      if (*p->i64 != *q->i64) return 0;
    } else if (memcmp(p->data, q->data, (size_t)wcmi_shape_numel(&p->shape) * sizeof(float))) {
      return 0;
    }
  }
  return 1;
}

static void test_estimate_mi_on_baseline_logits_trains_only_the_critic(void) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  wcmi_set_threads(&ctx, 1);
  wcmi_model m;
  CHECK_OK(&ctx, wcmi_model_init(&ctx, &m, "fashion-mnist", 0, WCMI_HEAD_MLP, 32, 5));
  char model[512], run[512];
  snprintf(model, sizeof model, "%s/baseline.safetensors", wt_tmpdir());
  snprintf(run, sizeof run, "%s/estimate-logits", wt_tmpdir());
  CHECK_OK(&ctx, wcmi_model_save(&ctx, &m, model, NULL, 0, NULL, 0));
  wcmi_task_cfg c;
  CHECK_OK(&ctx, wcmi_task_defaults(&ctx, &c, "fashion-mnist", "quick"));
  c.train_subset = 64;
  c.test_subset = 64;
  c.batch_size = 32;
  c.epochs = 2;
  c.max_batches = 1;
  c.eval_batches = 2;
  c.hsize = HS;
  c.attack.steps = 1;
  c.worst = 1;
  c.model = model;
  c.out_dir = run;
  wcmi_estimate_opts o;
  wcmi_estimate_opts_default(&o);
  o.refit_max_epochs = 2;
  char *summary = NULL;
  CHECK_OK(&ctx, wcmi_task_estimate_mi_ex(&ctx, &c, &o, &summary));
  wcmi_json *j = NULL;
  if (summary) CHECK_OK(&ctx, wcmi_json_parse(&ctx, "summary", summary, strlen(summary), &j));
  const char *repr = NULL;
  int64_t dim = 0;
  double mi = NAN, refit = NAN;
  if (j) {
    CHECK_OK(&ctx, wcmi_json_get_string(&ctx, "summary", j, "representation", &repr));
    CHECK_OK(&ctx, wcmi_json_get_int(&ctx, "summary", j, "representation_dim", &dim));
    CHECK_OK(&ctx, wcmi_json_get_number(&ctx, "summary", j, "test_mi", &mi));
    CHECK_OK(&ctx, wcmi_json_get_number(&ctx, "summary", wcmi_json_get(j, "refit"), "mi", &refit));
  }
  CHECK(repr && !strcmp(repr, "logits"));
  CHECK(dim == WCMI_NUM_CLASSES);
  CHECK(isfinite(mi) && isfinite(refit));
  /* The encoder and head in the run's checkpoint are the frozen originals, BN statistics included. */
  char ckpt[600];
  snprintf(ckpt, sizeof ckpt, "%s/latest.safetensors", run);
  wcmi_st *st = NULL;
  wcmi_model back;
  CHECK_OK(&ctx, wcmi_model_init(&ctx, &back, "fashion-mnist", 0, WCMI_HEAD_MLP, 32, 99));
  CHECK_OK(&ctx, wcmi_st_open(&ctx, ckpt, &st));
  if (st) {
    CHECK_OK(&ctx, wcmi_net_load(&ctx, st, back.encoder));
    CHECK_OK(&ctx, wcmi_net_load(&ctx, st, back.classifier));
    wcmi_st_close(st);
  }
  CHECK(same_params(back.encoder, m.encoder));
  CHECK(same_params(back.classifier, m.classifier));
  wcmi_json_free(j);
  free(summary);
  wcmi_model_free(&back);
  wcmi_model_free(&m);
}

/* All trainable parameters' gradients of net, concatenated in parameter order. */
static float *copy_grads(wcmi_net *net) {
  float *out = malloc((size_t)wcmi_net_num_trainable(net) * sizeof *out + 1), *o = out;
  for (int i = 0; i < wcmi_net_num_params(net); i++) {
    wcmi_param *p = wcmi_net_param(net, i);
    if (p->kind != WCMI_PARAM_TRAINABLE) continue;
    memcpy(o, p->grad, (size_t)wcmi_shape_numel(&p->shape) * sizeof *o);
    o += wcmi_shape_numel(&p->shape);
  }
  return out;
}

/* The MI gradient dL/dLx goes into the local estimator's output buffer (wcmi_net_output_for_grad)
 * instead of a buffer of its own. A step with every gradient (estimator and encoder parameters, the
 * input through both paths) must give bit-identical gradients either way. */
static void test_dim_gradient_in_the_lx_buffer_matches_a_separate_buffer(void) {
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  wcmi_model m;
  CHECK_OK(&ctx, wcmi_model_init(&ctx, &m, "fashion-mnist", HS, WCMI_HEAD_LINEAR, N, 9));
  /* The model's own local estimator takes its output gradient only in its output buffer
   * (wcmi_net_set_grad_in_output; test_net checks that mode): a separate buffer is refused. */
  wcmi_dim d;
  CHECK_OK(&ctx, wcmi_dim_init(&ctx, &d, &m, wcmi_mi_default_cfg(), WCMI_PATH_BOTH, N));
  float *xr = calloc((size_t)N * 28 * 28, sizeof *xr), lr;
  float *own = wcmi_alloc(&ctx, (size_t)N * d.H * d.L, sizeof(float)), *in_lx = d.dLx;
  d.dLx = own;
  CHECK(wcmi_dim_step(&d, xr, N, 0, 1, WCMI_DIM_ESTIMATOR_PARAMS, &lr, NULL) == WCMI_EINVAL);
  CHECK(strstr(wcmi_errmsg(&ctx), "output buffer") != NULL);
  d.dLx = in_lx;
  wcmi_free(own), free(xr);
  wcmi_dim_free(&d);
  /* A local estimator built without that promise: conv, ReLU, the residual block. */
  wcmi_net_free(m.local);
  m.local = wcmi_net_new(&ctx, "dim_local", wcmi_shape3(1, 28, 28));
  CHECK(m.local != NULL);
  CHECK_OK(&ctx, wcmi_net_add_conv2d(m.local, "layer0.0", 8, 4, 2, 1, 0));
  CHECK_OK(&ctx, wcmi_net_add_relu(m.local));
  CHECK_OK(&ctx, wcmi_net_add_resblock(m.local, "", HS));
  wcmi_rng rng;
  wcmi_rng_seed(&rng, 10);
  CHECK_OK(&ctx, wcmi_net_finalize(m.local, N, &rng));
  CHECK_OK(&ctx, wcmi_dim_init(&ctx, &d, &m, wcmi_mi_default_cfg(), WCMI_PATH_BOTH, N));
  CHECK(!d.dLx_owned && d.dLx == wcmi_net_output_for_grad(m.local));
  const int64_t nx = (int64_t)N * 28 * 28;
  float *x = malloc((size_t)nx * sizeof *x), *g1 = malloc((size_t)nx * sizeof *g1);
  float *g2 = malloc((size_t)nx * sizeof *g2);
  fill_inputs(x, 13);
  wcmi_net *nets[4];
  const int nn = wcmi_model_nets(&m, nets);
  const int all = WCMI_DIM_ESTIMATOR_PARAMS | WCMI_DIM_ENCODER_PARAMS | WCMI_DIM_INPUT;
  float loss1, loss2;
  for (int i = 0; i < nn; i++) wcmi_net_zero_grad(nets[i]);
  CHECK_OK(&ctx, wcmi_dim_step(&d, x, N, 0, 1, all, &loss1, g1));
  float *grads1[4] = {0}, *grads2[4] = {0};
  for (int i = 0; i < nn; i++) {
    grads1[i] = copy_grads(nets[i]);
    wcmi_net_zero_grad(nets[i]);
  }
  /* the same step with a separate dLx buffer (owned by d from here on, freed by wcmi_dim_free) */
  d.dLx = wcmi_alloc(&ctx, (size_t)N * d.H * d.L, sizeof(float));
  d.dLx_owned = 1;
  CHECK_OK(&ctx, wcmi_dim_step(&d, x, N, 0, 1, all, &loss2, g2));
  CHECK(loss1 == loss2);
  CHECK(memcmp(g1, g2, (size_t)nx * sizeof *g1) == 0);
  for (int i = 0; i < nn; i++) {
    grads2[i] = copy_grads(nets[i]);
    const size_t bytes = (size_t)wcmi_net_num_trainable(nets[i]) * sizeof(float);
    CHECK_MSG(memcmp(grads1[i], grads2[i], bytes) == 0, "net %d: parameter gradients differ", i);
    free(grads1[i]), free(grads2[i]);
  }
  free(x), free(g1), free(g2);
  wcmi_dim_free(&d);
  wcmi_model_free(&m);
}

int main(void) {
  RUN(test_fano_bound_matches_paper_values);
  RUN(test_fano_applies_only_to_mi_lower_bounds);
  RUN(test_critic_count_and_seeds);
  RUN(test_input_gradient_through_repr_head_matches_finite_difference);
  RUN(test_repr_head_params_count_as_encoder_params);
  RUN(test_repr_head_shape_mismatch_is_rejected);
  RUN(test_dim_gradient_in_the_lx_buffer_matches_a_separate_buffer);
  RUN(test_estimate_mi_on_baseline_logits_trains_only_the_critic);
  return wt_finish();
}
