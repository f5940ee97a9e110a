/* train-classifier and train-model (PAPER.md section 5).
 *
 * train-classifier: a head (linear or MLP) on a frozen encoder taken from any wcmi model file. The
 * encoder stays in eval mode (running BN statistics, no updates); the head is trained with Adam on
 * cross-entropy, on clean batches (standard) or on PGD examples against head(encoder(x)) (robust).
 * train-model: Baseline-H, encoder + head trained end to end from scratch, standard or with Madry
 * adversarial training.
 * Both evaluate natural and PGD adversarial accuracy on the test set after every epoch, keep
 * best.safetensors by adversarial accuracy when robust (natural otherwise), and state the attack
 * protocol in the summary. */
#include "train/eval.h"
#include "train/head_fit.h"
#include "train/trainer.h"
#include "dist/dist_train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct clf_task {
  int end_to_end; /* 1: train-model (encoder trained too); 0: train-classifier (encoder frozen) */
  wcmi_clf clf;
  int cached;    /* the head is fitted on cached representations (head_fit.h) */
  int evaluated; /* an evaluation ran in this process: last_* are valid */
  int new_best;  /* a new best epoch was found in this process: best_* are valid */
  double last_nat, last_adv, best_nat, best_adv;
} clf_task;

/* The objective: the head's cross-entropy on the clean batch (standard) or on the batch PGD found
 * against head(encoder(x)) with BN in eval mode (robust, the paper's protocol); the parameters: the
 * head, and the encoder too for train-model (end to end). */
static int clf_train_step(trainer *t, const float *x, const int32_t *y, int n, double *vals) {
  clf_task *ct = t->user;
  const float *xt = x;
  int rc;
  if (t->cfg.robust) {
    ct->clf.labels = y;
    const wcmi_objective obj = wcmi_clf_objective(&ct->clf);
    if ((rc = trainer_attack_batch(t, &obj, x, n))) return rc;
    xt = t->xadv;
  }
  float loss;
  int correct = 0;
  wcmi_optim_zero_grad(t->opt);
  /* Frozen encoder: eval mode and no parameter gradients, so only the head learns. */
  int grads = WCMI_CLF_HEAD_PARAMS | (ct->end_to_end ? WCMI_CLF_ENCODER_PARAMS : 0);
  ct->clf.loss_weight = dist_batch_weight(t, n); /* data-parallel: this rank's share of the global mean */
  rc = wcmi_clf_step(&ct->clf, xt, y, n, ct->end_to_end, 1, grads, &loss, NULL, NULL, &correct, NULL);
  ct->clf.loss_weight = 1.0f;
  if (!rc) rc = trainer_check_loss(t, "cross-entropy", loss);
  if (!rc) rc = trainer_optim_step(t);
  if (rc) return rc;
  vals[0] = loss;
  vals[1] = (double)correct / (double)n;
  return WCMI_OK;
}

/* Natural and PGD adversarial accuracy on the test set at the full eps. The evaluation's random
 * starts come from their own stream per epoch, so evaluating never shifts the training stream. */
static int clf_evaluate(trainer *t, clf_task *ct, int epoch) {
  wcmi_rng r;
  wcmi_rng_derive(&r, t->cfg.seed, (uint64_t)WCMI_STREAM_ATTACK * 1000003u + (uint64_t)epoch);
  int rc = task_accuracy(t->ctx, &t->model, &t->test, &t->cfg, &t->cfg.attack, 0, &r, &ct->last_nat, &ct->last_adv);
  if (!rc) ct->evaluated = 1;
  return rc;
}

/* best.safetensors keeps the highest adversarial accuracy when training robustly or when asked to
 * (--select adv: a standard head early-stopped on adversarial accuracy), natural otherwise. */
static int selects_adv(const wcmi_task_cfg *c) {
  return c->select == WCMI_SELECT_ADV || (c->select == WCMI_SELECT_AUTO && c->robust);
}

static int clf_end_epoch(trainer *t, int epoch, wcmi_jsonw *w, double *score) {
  clf_task *ct = t->user;
  int rc = clf_evaluate(t, ct, epoch);
  if (rc) return rc;
  wcmi_jsonw_kv_double(w, "nat_acc", ct->last_nat);
  wcmi_jsonw_kv_double(w, "adv_acc", ct->last_adv);
  wcmi_jsonw_kv_double(w, "train_eps", t->train_eps); /* the eps this epoch trained at */
  *score = selects_adv(&t->cfg) ? ct->last_adv : ct->last_nat;
  if (*score > t->best_score) { /* the trainer saves best.safetensors on the same test */
    ct->new_best = 1;
    ct->best_nat = ct->last_nat;
    ct->best_adv = ct->last_adv;
  }
  return WCMI_OK;
}

static int clf_summarize(trainer *t, wcmi_jsonw *w) {
  clf_task *ct = t->user;
  /* A resumed run that had nothing left to train still reports the final model's accuracy. */
  int rc = ct->evaluated ? WCMI_OK : clf_evaluate(t, ct, t->cfg.epochs);
  if (rc) return rc;
  wcmi_jsonw_kv_string(w, "head", wcmi_head_name(t->cfg.head));
  wcmi_jsonw_kv_string(w, "training", t->cfg.robust ? "robust" : "standard");
  /* How the head was trained: readers compare runs, and the two ways differ in cost, not in math. */
  if (!ct->end_to_end)
    wcmi_jsonw_kv_string(w, "head_fit", ct->cached ? "cached: encoded once (eval mode), fitted on whitened features, "
                                                     "whitening folded into the first linear layer"
                                                   : "online: encoder (eval mode) in the loop every batch");
  if (!ct->end_to_end) wcmi_jsonw_kv_string(w, "encoder_model", t->cfg.model ? t->cfg.model : "");
  else wcmi_jsonw_kv_string(w, "encoder", wcmi_encoder_name(t->cfg.encoder));
  t->record.nat_acc = ct->last_nat;
  t->record.adv_acc = ct->last_adv;
  if (ct->new_best) {
    t->record.best_nat_acc = ct->best_nat;
    t->record.best_adv_acc = ct->best_adv;
  }
  t->record.test_samples = eval_num_samples(&t->cfg, t->test.n);
  wcmi_jsonw_key(w, "attack");
  wcmi_jsonw_begin_object(w);
  eval_attack a = {"pgd", t->cfg.attack, 0, 0};
  eval_protocol_json(w, &a);
  wcmi_jsonw_end_object(w);
  wcmi_jsonw_kv_string(w, "selection", selects_adv(&t->cfg) ? "best.safetensors: highest adv_acc" : "best.safetensors: highest nat_acc");
  return WCMI_OK;
}

/* ---- the cached head fit ----------------------------------------------------------------- */

/* Cached fitting is the same computation as the online loop whenever the training batch is a
 * clean, unaugmented image: the frozen encoder maps it to the same z every epoch. */
static int choose_cached(wcmi_ctx *ctx, const wcmi_task_cfg *cfg, int end_to_end, int *cached) {
  *cached = 0;
  const int augmented = !strcmp(cfg->data, "cifar10");
  if (cfg->head_fit == WCMI_HEAD_FIT_CACHED) {
    if (end_to_end || cfg->robust)
      return wcmi_fail(ctx, WCMI_EINVAL, "--head-fit cached needs a standard head on a frozen encoder (robust heads attack "
                                         "through the encoder every batch)");
    if (augmented)
      return wcmi_fail(ctx, WCMI_EINVAL, "--head-fit cached cannot apply %s's per-epoch augmentation; use --head-fit "
                                         "online", cfg->data);
    if (cfg->select == WCMI_SELECT_ADV)
      return wcmi_fail(ctx, WCMI_EINVAL, "--select adv needs PGD after every epoch: use --head-fit online");
    *cached = 1;
  } else if (cfg->head_fit == WCMI_HEAD_FIT_AUTO) {
    /* --select adv keeps the epoch with the best PGD accuracy, which only the online loop measures. */
    *cached = !end_to_end && !cfg->robust && !augmented && cfg->select != WCMI_SELECT_ADV;
  }
  return WCMI_OK;
}

/* One metrics.jsonl line per epoch of the fit, in the trainer's format. */
static int write_fit_metrics(trainer *t, const head_fit_epoch *per_epoch, int epochs) {
  int rc = WCMI_OK;
  for (int e = 0; e < epochs && !rc; e++) {
    double means[2] = {per_epoch[e].loss, per_epoch[e].train_acc};
    wcmi_jsonw ev;
    wcmi_jsonw_init_buffer(&ev, 0);
    wcmi_jsonw_begin_object(&ev);
    wcmi_jsonw_kv_double(&ev, "nat_acc", per_epoch[e].test_acc);
    wcmi_jsonw_kv_string(&ev, "nat_acc_on", "cached test features");
    wcmi_jsonw_end_object(&ev);
    rc = wcmi_jsonw_finish(t->ctx, &ev);
    if (!rc) rc = trainer_write_epoch(t, e, means, per_epoch[e].seconds, &ev);
    wcmi_jsonw_free(&ev);
  }
  return rc;
}

/* Encode both splits once, fit the head on the cached features, then write the run directory as
 * the online loop would: metrics per epoch, latest (last epoch) and best (highest test accuracy)
 * checkpoints, and the summary with PGD accuracy through the encoder. A resumed cached run refits
 * from the start: the fit is deterministic and costs seconds, so the result is the same. */
static int fit_cached(trainer *t, clf_task *ct, char **summary) {
  wcmi_ctx *ctx = t->ctx;
  const wcmi_task_cfg *c = &t->cfg;
  char path[1100];
  snprintf(path, sizeof path, "%s/metrics.jsonl", t->run_dir);
  /* Data-parallel: rank 0 alone writes the run directory (another rank could remove its new file). */
  if (dist_is_root(ctx) && unlink(path) != 0 && access(path, F_OK) == 0)
    return wcmi_fail(ctx, WCMI_EIO, "%s: cannot remove the previous fit's metrics", path);
  float *ztr = NULL, *zte = NULL;
  int zdim = 0, zdim_te = 0, best_epoch = -1;
  head_fit_epoch *per_epoch = calloc((size_t)(c->epochs > 0 ? c->epochs : 1), sizeof *per_epoch);
  wcmi_net *best_head = NULL;
  int rc = per_epoch ? WCMI_OK : wcmi_fail(ctx, WCMI_ENOMEM, "out of memory");
  if (!rc && c->progress) fprintf(stderr, "[%s] encoding %lld + %lld images once\n", t->ops->task, (long long)t->train.n,
                                  (long long)t->test.n);
  if (!rc) rc = feat_encode(ctx, &t->model, &t->train, c->batch_size, &ztr, &zdim);
  if (!rc) rc = feat_encode(ctx, &t->model, &t->test, c->batch_size, &zte, &zdim_te);
  if (!rc) {
    wcmi_rng init;
    wcmi_rng_derive(&init, c->seed, WCMI_STREAM_INIT);
    if (!(best_head = wcmi_build_head(ctx, c->head, zdim, WCMI_NUM_CLASSES, c->batch_size, &init))) rc = ctx->status;
  }
  if (!rc) {
    const feat_set tr = {ztr, t->train.labels, t->train.n}, te = {zte, t->test.labels, t->test.n};
    const head_fit_cfg hc = {.epochs = c->epochs,           .batch_size = c->batch_size, .max_batches = c->max_batches,
                             .lr = c->lr,                   .seed = c->seed,             .progress = c->progress,
                             .task = t->ops->task,          .lr_schedule = c->lr_schedule,
                             .warmup_epochs = c->warmup_epochs};
    rc = head_fit_cached(ctx, t->model.classifier, best_head, &tr, &te, zdim, &hc, per_epoch, &best_epoch);
  }
  if (!rc) rc = write_fit_metrics(t, per_epoch, c->epochs);
  if (!rc && best_epoch >= 0) {
    t->best_epoch = best_epoch;
    t->best_score = per_epoch[best_epoch].test_acc;
  }
  /* latest = the last epoch's head; its accuracy (PGD through the encoder) is the run's result. */
  if (!rc) rc = trainer_save_checkpoint(t, "latest.safetensors", c->epochs);
  if (!rc) rc = clf_evaluate(t, ct, c->epochs);
  if (!rc && best_epoch >= 0) {
    if (!(rc = wcmi_net_copy_params(ctx, t->model.classifier, best_head)))
      rc = trainer_save_checkpoint(t, "best.safetensors", best_epoch + 1);
    double nat = ct->last_nat, adv = ct->last_adv;
    if (!rc && best_epoch != c->epochs - 1) rc = clf_evaluate(t, ct, best_epoch);
    if (!rc) {
      ct->new_best = 1;
      ct->best_nat = ct->last_nat;
      ct->best_adv = ct->last_adv;
      ct->last_nat = nat;
      ct->last_adv = adv;
    }
  }
  if (!rc) rc = trainer_finish(t, summary);
  wcmi_net_free(best_head);
  wcmi_free(ztr);
  wcmi_free(zte);
  free(per_epoch);
  return rc;
}

static const trainer_ops CLASSIFIER_OPS = {
    "train-classifier", {"loss", "train_acc"}, 2, clf_train_step, clf_end_epoch, clf_summarize, WCMI_REC_CLASSIFIER,
};
static const trainer_ops MODEL_OPS = {
    "train-model", {"loss", "train_acc"}, 2, clf_train_step, clf_end_epoch, clf_summarize, WCMI_REC_CLASSIFIER,
};

/* The frozen encoder: the encoder of any wcmi model file (train-encoder, train-classifier or
 * train-model result), copied into t->model. */
static int load_frozen_encoder(wcmi_ctx *ctx, const wcmi_task_cfg *cfg, wcmi_model *dst) {
  wcmi_model src;
  int rc = wcmi_model_load(ctx, cfg->model, cfg->batch_size, &src, NULL);
  if (rc) return rc;
  if (strcmp(src.dataset, cfg->data))
    rc = wcmi_fail(ctx, WCMI_EINVAL, "%s: encoder was trained on %s, but the data is %s (pass --data %s)", cfg->model,
                   src.dataset, cfg->data, src.dataset);
  if (!rc && src.encoder_kind != dst->encoder_kind)
    rc = wcmi_fail(ctx, WCMI_EINVAL, "%s: a %s model has no encoder to freeze (train heads on raw pixels with train-model "
                   "--encoder pixels)", cfg->model, wcmi_encoder_name(src.encoder_kind));
  if (!rc) rc = wcmi_net_copy_params(ctx, dst->encoder, src.encoder);
  wcmi_model_free(&src);
  return rc;
}

static int run_classifier_task(wcmi_ctx *ctx, const wcmi_task_cfg *cfg, int end_to_end, char **summary) {
  const char *task = end_to_end ? "train-model" : "train-classifier";
  if (cfg->head != WCMI_HEAD_LINEAR && cfg->head != WCMI_HEAD_MLP)
    return wcmi_fail(ctx, WCMI_EINVAL, "%s: --head must be linear or mlp", task);
  if (!end_to_end && !cfg->model) return wcmi_fail(ctx, WCMI_EINVAL, "%s: no encoder model file (--model FILE)", task);
  int cached = 0;
  int rc0 = choose_cached(ctx, cfg, end_to_end, &cached);
  if (rc0) return rc0;
  /* Check the encoder file before anything is written into the run directory. A resumed online run
   * takes its encoder from its own checkpoint instead. */
  wcmi_model probe;
  memset(&probe, 0, sizeof probe);
  int rc = WCMI_OK;
  /* A cached fit always starts from the encoder file (a resumed one refits from the start). */
  const int from_file = !end_to_end && (!cfg->resume_dir || cached);
  if (from_file) {
    rc = wcmi_model_init(ctx, &probe, cfg->data, 0, cfg->head, cfg->batch_size, cfg->seed);
    if (!rc) rc = load_frozen_encoder(ctx, cfg, &probe);
  }
  trainer t;
  clf_task ct;
  memset(&ct, 0, sizeof ct);
  memset(&t, 0, sizeof t);
  ct.end_to_end = end_to_end;
  ct.cached = cached;
  if (!rc) rc = trainer_init(&t, ctx, cfg, end_to_end ? &MODEL_OPS : &CLASSIFIER_OPS, &ct);
  if (!rc) {
    /* The probe already is the model to train (new head from the seed, copied encoder). */
    if (from_file) {
      t.model = probe;
      memset(&probe, 0, sizeof probe);
    } else {
      rc = wcmi_model_init_ex(ctx, &t.model, cfg->data, end_to_end ? cfg->encoder : WCMI_ENCODER_BASIC, 0, cfg->head,
                              cfg->batch_size, cfg->seed);
    }
  }
  t.local_means = 1; /* loss and train_acc are means over the step's samples */
  if (!rc) rc = wcmi_clf_init(ctx, &ct.clf, &t.model, cfg->batch_size);
  if (!rc) {
    wcmi_net *both[2] = {t.model.encoder, t.model.classifier}, *head[1] = {t.model.classifier};
    rc = end_to_end ? trainer_setup(&t, both, 2) : trainer_setup(&t, head, 1);
  }
  if (!rc) rc = cached ? fit_cached(&t, &ct, summary) : trainer_run(&t, summary);
  wcmi_model_free(&probe);
  wcmi_clf_free(&ct.clf);
  trainer_free(&t);
  return rc;
}

int wcmi_task_train_classifier(wcmi_ctx *ctx, const wcmi_task_cfg *cfg, char **summary) {
  return run_classifier_task(ctx, cfg, 0, summary);
}

int wcmi_task_train_model(wcmi_ctx *ctx, const wcmi_task_cfg *cfg, char **summary) {
  return run_classifier_task(ctx, cfg, 1, summary);
}
