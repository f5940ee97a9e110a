/* train-encoder (PAPER.md section 5): maximize the MI estimate of encoder + estimators on clean
 * batches (objective normal, DIM) or on the batch the worst-case MI attack found (objective worst). */
#include "train/trainer.h"
#include "wcmi/dist.h"

#include <math.h>
#include <string.h>

typedef struct encoder_task {
  wcmi_dim dim;
  wcmi_attack *attack;
  double last_normal_mi, last_worst_mi;
} encoder_task;

/* Runs the MI attack (BN in eval mode, the paper's protocol) on x into t->xadv. */
static int mi_attack(trainer *t, encoder_task *et, const float *x, int n, float eps) {
  wcmi_pgd_cfg a = t->cfg.attack;
  a.eps = eps;
  int rc = wcmi_attack_set_cfg(et->attack, &a);
  if (rc) return rc;
  wcmi_objective obj = wcmi_dim_objective(&et->dim);
  return wcmi_pgd_run(et->attack, &obj, x, n, &t->attack_rng, t->xadv, NULL);
}

static int encoder_step(trainer *t, const float *x, const int32_t *y, int n, double *vals) {
  (void)y;
  encoder_task *et = t->user;
  const float *xt = x;
  double t0 = wcmi_now();
  if (t->cfg.worst) {
    int rc = mi_attack(t, et, x, n, wcmi_eps_schedule(t->cfg.attack.eps, t->epoch, t->cfg.eps_fade_epochs));
    if (rc) return rc;
    xt = t->xadv;
  }
  double t1 = wcmi_now();
  float loss;
  wcmi_optim_zero_grad(t->opt);
  int rc = wcmi_dim_step(&et->dim, xt, n, 1, 1, WCMI_DIM_ENCODER_PARAMS | WCMI_DIM_ESTIMATOR_PARAMS, &loss, NULL);
  if (rc) return rc;
  if (!isfinite(loss))
    return wcmi_fail(t->ctx, WCMI_ENUMERIC, "train-encoder: MI loss is %g at epoch %d: stopping (last good checkpoint kept)",
                     (double)loss, t->epoch + 1);
  double t2 = wcmi_now();
  if ((rc = trainer_optim_step(t))) return rc;
  double t3 = wcmi_now();
  t->phase_time[0] += t1 - t0;
  t->phase_time[1] += t2 - t1;
  t->phase_time[2] += t3 - t2;
  vals[0] = loss;
  vals[1] = wcmi_mi_estimate(et->dim.mi, et->dim.last_N, et->dim.L, loss); /* last_N: the global batch */
  return WCMI_OK;
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
      if ((rc = mi_attack(t, et, x, hi - lo, t->cfg.attack.eps))) return rc;
      if ((rc = wcmi_dim_step(&et->dim, t->xadv, hi - lo, 0, 0, 0, &loss, NULL))) return rc;
      sw += wcmi_mi_estimate(et->dim.mi, B, et->dim.L, loss);
    }
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
  *score = t->cfg.worst ? worst : normal;
  return WCMI_OK;
}

static int encoder_summarize(trainer *t, wcmi_jsonw *w) {
  encoder_task *et = t->user;
  wcmi_jsonw_kv_string(w, "objective", t->cfg.worst ? "worst" : "normal");
  wcmi_jsonw_kv_double(w, "test_mi_normal", et->last_normal_mi);
  wcmi_jsonw_kv_double(w, "test_mi_worst", et->last_worst_mi);
  wcmi_jsonw_kv_string(w, "note", "MI estimates of the co-trained critic; use estimate-mi / vulnerability for the "
                                   "paper's protocol with a fresh critic");
  return WCMI_OK;
}

static const trainer_ops ENCODER_OPS = {
    "train-encoder", {"loss", "mi"}, 2, encoder_step, encoder_end_epoch, encoder_summarize,
};

int wcmi_task_train_encoder(wcmi_ctx *ctx, const wcmi_task_cfg *cfg, char **summary) {
  trainer t;
  encoder_task et;
  memset(&et, 0, sizeof et);
  int rc = trainer_init(&t, ctx, cfg, &ENCODER_OPS, &et);
  if (!rc) rc = wcmi_model_init(ctx, &t.model, cfg->data, cfg->hsize, WCMI_HEAD_NONE, cfg->batch_size, cfg->seed);
  if (!rc) rc = wcmi_dim_init(ctx, &et.dim, &t.model, cfg->mi, cfg->grad_path, cfg->batch_size);
  if (!rc) {
    wcmi_net *nets[3] = {t.model.encoder, t.model.local, t.model.global};
    rc = trainer_setup(&t, nets, 3, &et.attack);
  }
  if (!rc) rc = trainer_run(&t, summary);
  wcmi_attack_free(et.attack);
  wcmi_dim_free(&et.dim);
  trainer_free(&t);
  return rc;
}
