/* train-encoder (PAPER.md section 5): maximize the MI estimate of encoder + estimators on clean
 * batches (objective normal, DIM) or on the batch the worst-case MI attack found (objective worst). */
#include "estimator/mi_step.h"
#include "train/trainer.h"
#include "wcmi/dist.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct encoder_task {
  wcmi_dim dim;
  float *delta, *dx; /* free adversarial training: the perturbation carried across batches, its gradient */
  wcmi_param delta_param; /* delta as checkpoint state, so a resume continues bit-identically */
  double last_normal_mi, last_worst_mi;
  int evaluated; /* last_*_mi hold a measurement (not so with --epochs 0 or a finished run resumed) */
} encoder_task;

/* One signed (l-inf) or normalized (l2) ascent step of size `step` along g on every sample of xadv
 * (n samples of D values), the free-training perturbation's update. */
static void ascend(wcmi_norm norm, float step, const float *g, float *xadv, int n, int64_t D) {
  if (norm == WCMI_NORM_LINF) {
    for (int64_t i = 0; i < (int64_t)n * D; i++) xadv[i] += step * (float)((g[i] > 0) - (g[i] < 0));
    return;
  }
  for (int s = 0; s < n; s++) {
    double g2 = 0;
    for (int64_t i = 0; i < D; i++) g2 += (double)g[s * D + i] * g[s * D + i];
    const float k = g2 > 0 ? step / (float)sqrt(g2) : 0.0f;
    for (int64_t i = 0; i < D; i++) xadv[s * D + i] += k * g[s * D + i];
  }
}

/* "Free" adversarial training (Shafahi et al., 2019) adapted to the MI objective: each batch is
 * replayed m times; every replay is one forward/backward in train mode that yields both the
 * parameter gradients (an Adam step minimizing the MI loss) and the input gradient, with which the
 * perturbation takes one signed ascent step (l-inf; a normalized step for l2) and is projected
 * back into the ball. The perturbation is carried over to the next batch instead of restarting
 * from zero. m replays cost about m forward/backward passes where PGD-K costs K + 1, and the
 * epoch count should be divided by m for the same number of updates. The perturbation is this
 * step's own attack, so it times it as the attack phase itself. */
static int free_step(trainer *t, encoder_task *et, const float *x, int n, double *vals) {
  const float eps = t->train_eps;
  const wcmi_shape in = wcmi_net_in_shape(t->model.encoder);
  const int64_t D = wcmi_shape_numel(&in), nd = (int64_t)n * D;
  float loss = 0.0f;
  for (int r = 0; r < t->cfg.free_replays; r++) {
    double t0 = wcmi_now();
    for (int64_t i = 0; i < nd; i++) t->xadv[i] = x[i] + et->delta[i];
    wcmi_project(t->cfg.attack.norm, eps, x, t->xadv, n, D);
    trainer_add_attack_time(t, wcmi_now() - t0);
    wcmi_optim_zero_grad(t->opt);
    int rc = wcmi_dim_step(&et->dim, t->xadv, n, 1, 1, WCMI_DIM_ENCODER_PARAMS | WCMI_DIM_ESTIMATOR_PARAMS | WCMI_DIM_INPUT,
                           &loss, et->dx);
    if (!rc) rc = trainer_check_loss(t, "MI loss", loss);
    if (!rc) rc = trainer_optim_step(t);
    if (rc) return rc;
    /* Ascent on the MI loss (descent on the MI estimate), from the point just trained on. */
    t0 = wcmi_now();
    ascend(t->cfg.attack.norm, t->cfg.attack.step, et->dx, t->xadv, n, D);
    wcmi_project(t->cfg.attack.norm, eps, x, t->xadv, n, D);
    for (int64_t i = 0; i < nd; i++) et->delta[i] = t->xadv[i] - x[i];
    trainer_add_attack_time(t, wcmi_now() - t0);
  }
  vals[0] = loss;
  vals[1] = wcmi_mi_estimate(et->dim.mi, n, et->dim.L, loss);
  return WCMI_OK;
}

/* The objective: the MI loss of encoder + critics, on the clean batch (DIM) or on the batch the
 * worst-case MI attack found (the paper); the parameters: encoder and both critics. */
static int encoder_step(trainer *t, const float *x, const int32_t *y, int n, double *vals) {
  (void)y;
  encoder_task *et = t->user;
  if (t->cfg.worst && t->cfg.free_replays > 0) return free_step(t, et, x, n, vals);
  return mi_train_step(t, &et->dim, x, n, 1, WCMI_DIM_ENCODER_PARAMS | WCMI_DIM_ESTIMATOR_PARAMS, vals);
}

/* Mean MI estimate of the co-trained critic on the test set, clean and under the training attack. */
static int test_mi(trainer *t, encoder_task *et, double *normal, double *worst) {
  const int B = t->cfg.batch_size;
  int64_t nb = t->test.n / B;
  if (t->cfg.eval_batches > 0 && nb > t->cfg.eval_batches) nb = t->cfg.eval_batches;
  if (nb == 0) return wcmi_fail(t->ctx, WCMI_EINVAL, "test set has fewer than %d samples", B);
  int64_t D = wcmi_dataset_sample_size(&t->test);
  double sn = 0, sw = 0;
  /* Data-parallel: each rank takes its slice of every test batch; the MI objective gathers the rest. */
  int lo = 0, hi = B;
  wcmi_dist_shard(B, wcmi_dist_rank(t->ctx->dist), wcmi_dist_size(t->ctx->dist), &lo, &hi);
  for (int64_t b = 0; b < nb; b++) {
    const float *x = t->test.images + (b * B + lo) * D;
    float loss;
    int rc = wcmi_dim_step(&et->dim, x, hi - lo, 0, 0, 0, &loss, NULL);
    if (rc) return rc;
    sn += wcmi_mi_estimate(et->dim.mi, B, et->dim.L, loss);
    if (worst) {
      const wcmi_objective obj = wcmi_dim_objective(&et->dim);
      if ((rc = trainer_attack_full(t, &obj, x, hi - lo, t->xadv))) return rc;
      if ((rc = wcmi_dim_step(&et->dim, t->xadv, hi - lo, 0, 0, 0, &loss, NULL))) return rc;
      sw += wcmi_mi_estimate(et->dim.mi, B, et->dim.L, loss);
    }
    if (t->ctx->interrupt)
      return wcmi_fail(t->ctx, WCMI_EINTR, "interrupted during the test MI estimate (batch %lld/%lld)", (long long)(b + 1),
                       (long long)nb);
  }
  *normal = sn / (double)nb;
  if (worst) *worst = sw / (double)nb;
  return WCMI_OK;
}

static int encoder_end_epoch(trainer *t, int epoch, wcmi_jsonw *w, double *score) {
  (void)epoch;
  encoder_task *et = t->user;
  double normal = 0, worst = 0;
  int rc = test_mi(t, et, &normal, &worst);
  if (rc) return rc;
  wcmi_jsonw_kv_double(w, "test_mi_normal", normal);
  wcmi_jsonw_kv_double(w, "test_mi_worst", worst);
  et->last_normal_mi = normal;
  et->last_worst_mi = worst;
  et->evaluated = 1;
  *score = t->cfg.worst ? worst : normal;
  return WCMI_OK;
}

static int encoder_summarize(trainer *t, wcmi_jsonw *w) {
  encoder_task *et = t->user;
  /* No epoch ran here: measure the model as it stands rather than report zeros. */
  int rc = et->evaluated ? WCMI_OK : test_mi(t, et, &et->last_normal_mi, &et->last_worst_mi);
  if (rc) return rc;
  wcmi_jsonw_kv_string(w, "objective", t->cfg.worst ? "worst" : "normal");
  if (t->cfg.worst)
    wcmi_jsonw_kv_string(w, "adversarial_training", t->cfg.free_replays > 0 ? "free (minibatch replay, train-mode gradients)"
                                                                            : "pgd (the paper's: BN in eval during the attack)");
  t->record.cotrained_normal_mi.mean = et->last_normal_mi;
  t->record.cotrained_worst_mi.mean = et->last_worst_mi;
  wcmi_jsonw_kv_string(w, "note", "MI estimates of the co-trained critic; use estimate-mi / vulnerability for the "
                                   "paper's protocol with a fresh critic");
  return WCMI_OK;
}

static const trainer_ops ENCODER_OPS = {
    "train-encoder", {"loss", "mi"}, 2, encoder_step, encoder_end_epoch, encoder_summarize, WCMI_REC_ENCODER,
};

int wcmi_task_train_encoder(wcmi_ctx *ctx, const wcmi_task_cfg *cfg, char **summary) {
  /* Probes fall due by each process's clock and free training replays the whole batch: neither is
   * data-parallel yet, so a multi-rank run refuses them rather than deadlock or diverge. */
  if (wcmi_dist_size(ctx->dist) > 1 && (cfg->probe_every > 0 || cfg->free_replays > 0))
    return wcmi_fail(ctx, WCMI_EINVAL, "train-encoder: --probe-every and --free-replays run in one process only (not "
                                       "under mpirun with more than one rank)");
  trainer t;
  encoder_task et;
  memset(&et, 0, sizeof et);
  int rc = trainer_init(&t, ctx, cfg, &ENCODER_OPS, &et);
  if (!rc) rc = wcmi_model_init(ctx, &t.model, cfg->data, cfg->hsize, WCMI_HEAD_NONE, cfg->batch_size, cfg->seed);
  if (!rc) rc = wcmi_dim_init(ctx, &et.dim, &t.model, cfg->mi, cfg->grad_path, cfg->batch_size);
  if (!rc) {
    wcmi_net *nets[3] = {t.model.encoder, t.model.local, t.model.global};
    rc = trainer_setup(&t, nets, 3);
  }
  curve_probe pr;
  memset(&pr, 0, sizeof pr);
  if (!rc && cfg->probe_every > 0 && !(rc = probe_init(ctx, &pr, cfg, &t.train, &t.test))) t.probe = &pr;
  if (!rc && cfg->worst && cfg->free_replays > 0) {
    const wcmi_shape in = wcmi_net_in_shape(t.model.encoder);
    const size_t nd = (size_t)cfg->batch_size * (size_t)wcmi_shape_numel(&in);
    et.delta = wcmi_alloc(ctx, nd, sizeof(float)); /* zero: the first batch starts at the clean point */
    et.dx = wcmi_alloc(ctx, nd, sizeof(float));
    if (!et.delta || !et.dx) rc = ctx->status;
    snprintf(et.delta_param.name, sizeof et.delta_param.name, "free_at.delta");
    et.delta_param.kind = WCMI_PARAM_BUFFER;
    et.delta_param.shape = wcmi_shape1((int64_t)nd);
    et.delta_param.data = et.delta;
    t.task_state = &et.delta_param;
    t.n_task_state = 1;
  }
  if (!rc) rc = trainer_run(&t, summary);
  wcmi_free(et.delta);
  wcmi_free(et.dx);
  probe_free(&pr);
  wcmi_dim_free(&et.dim);
  trainer_free(&t);
  return rc;
}
