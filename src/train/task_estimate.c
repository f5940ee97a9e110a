/* estimate-mi and vulnerability (PAPER.md section 5): the MI of a frozen representation, in the
 * normal and the worst case, with a fresh critic, the paper's Algorithm 2 selection and a
 * re-fitted worst-case estimate. Method and caveats: docs/estimate-mi.md. */
#include "train/trainer.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* RNG streams of this task, apart from core.h's well-known ids so none of them shifts another. */
enum { STREAM_ESTIMATOR_INIT = 101, STREAM_REFIT_INIT = 102, STREAM_REFIT_SPLIT = 103 };

#define OPTS_FILE "estimate.json"

void wcmi_estimate_opts_default(wcmi_estimate_opts *o) {
  o->repr = WCMI_REPR_AUTO;
  o->refit_patience = 3;
  o->refit_max_epochs = 50;
}

const char *wcmi_repr_name(wcmi_repr_kind r) {
  return r == WCMI_REPR_Z ? "z" : r == WCMI_REPR_LOGITS ? "logits" : "auto";
}

/* ---- small helpers ------------------------------------------------------------------------- */

/* The options that config.json does not hold are kept beside it, so --resume continues the same
 * estimate. */
static int save_opts(wcmi_ctx *ctx, const char *dir, const wcmi_estimate_opts *o) {
  wcmi_jsonw w;
  wcmi_jsonw_init_buffer(&w, 2);
  wcmi_jsonw_begin_object(&w);
  wcmi_jsonw_kv_string(&w, "repr", wcmi_repr_name(o->repr));
  wcmi_jsonw_kv_int(&w, "refit_patience", o->refit_patience);
  wcmi_jsonw_kv_int(&w, "refit_max_epochs", o->refit_max_epochs);
  wcmi_jsonw_end_object(&w);
  char path[1100];
  snprintf(path, sizeof path, "%s/%s", dir, OPTS_FILE);
  int rc = wcmi_jsonw_finish(ctx, &w);
  if (!rc) rc = wcmi_atomic_write(ctx, path, wcmi_jsonw_text(&w), strlen(wcmi_jsonw_text(&w)));
  wcmi_jsonw_free(&w);
  return rc;
}

static int load_opts(wcmi_ctx *ctx, const char *dir, wcmi_estimate_opts *o) {
  char path[1100];
  snprintf(path, sizeof path, "%s/%s", dir, OPTS_FILE);
  if (access(path, F_OK) != 0) return WCMI_OK; /* interrupted before it was written: keep the given ones */
  wcmi_json *j = NULL;
  int rc = wcmi_json_parse_file(ctx, path, 1 << 16, &j);
  if (rc) return rc;
  const char *repr = NULL;
  int64_t p = 0, e = 0;
  if (!(rc = wcmi_json_get_string(ctx, path, j, "repr", &repr)) && !(rc = wcmi_json_get_int(ctx, path, j, "refit_patience", &p)) &&
      !(rc = wcmi_json_get_int(ctx, path, j, "refit_max_epochs", &e))) {
    o->repr = !strcmp(repr, "z") ? WCMI_REPR_Z : !strcmp(repr, "logits") ? WCMI_REPR_LOGITS : WCMI_REPR_AUTO;
    o->refit_patience = (int)p;
    o->refit_max_epochs = (int)e;
  }
  wcmi_json_free(j);
  return rc;
}

static void write_attack(wcmi_jsonw *w, const wcmi_task_cfg *c) {
  wcmi_jsonw_begin_object(w);
  wcmi_jsonw_kv_string(w, "target", "MI loss of the critic (batch-level; maximizing it minimizes the MI estimate)");
  wcmi_jsonw_kv_string(w, "norm", c->attack.norm == WCMI_NORM_L2 ? "l2" : "linf");
  wcmi_jsonw_kv_double(w, "eps", c->attack.eps);
  wcmi_jsonw_kv_double(w, "step", c->attack.step);
  wcmi_jsonw_kv_int(w, "steps", c->attack.steps);
  wcmi_jsonw_kv_bool(w, "random_start", c->attack.random_start);
  wcmi_jsonw_kv_int(w, "restarts", c->attack.restarts);
  wcmi_jsonw_kv_bool(w, "use_best", c->attack.use_best);
  wcmi_jsonw_kv_string(w, "grad_path", c->grad_path == WCMI_PATH_BOTH ? "both" : "encoder");
  wcmi_jsonw_kv_string(w, "batchnorm", "eval");
  wcmi_jsonw_kv_string(w, "phases", "the same attack in training and held-out evaluation");
  wcmi_jsonw_end_object(w);
}

static void write_estimator(wcmi_jsonw *w, const wcmi_task_cfg *c) {
  wcmi_jsonw_begin_object(w);
  wcmi_jsonw_kv_string(w, "name", wcmi_mi_estimator_name(c->mi.estimator));
  if (c->mi.estimator == WCMI_MI_FD) wcmi_jsonw_kv_string(w, "measure", wcmi_mi_measure_name(c->mi.measure));
  wcmi_jsonw_kv_string(w, "critic", "encode-and-dot-product: dim_local on x, dim_global on the representation");
  wcmi_jsonw_kv_int(w, "hsize", c->hsize);
  wcmi_jsonw_kv_int(w, "epochs", c->epochs);
  wcmi_jsonw_kv_int(w, "batch_size", c->batch_size);
  wcmi_jsonw_kv_double(w, "lr", c->lr);
  wcmi_jsonw_end_object(w);
}

/* A fresh local/global critic pair for representations of zdim values. */
static int fresh_critic(wcmi_ctx *ctx, const wcmi_model *m, int hsize, int zdim, int max_batch, uint64_t seed,
                        uint64_t stream, wcmi_net **local, wcmi_net **global) {
  wcmi_rng rng;
  wcmi_rng_derive(&rng, seed, stream);
  *local = wcmi_build_local_estimator(ctx, &m->in, hsize, max_batch, &rng);
  *global = *local ? wcmi_build_global_estimator(ctx, zdim, hsize, max_batch, &rng) : NULL;
  if (!*global) {
    wcmi_net_free(*local);
    *local = NULL;
    return ctx->status ? ctx->status : WCMI_ENOMEM;
  }
  return WCMI_OK;
}

/* ---- the estimate-mi task ------------------------------------------------------------------ */

typedef struct estimate_task {
  wcmi_estimate_opts opts;
  int logits; /* the representation is classifier(encoder(x)) */
  int zdim;
  wcmi_dim dim;
  wcmi_attack *attack;
} estimate_task;

/* Loads the model to analyse and replaces whatever critic it carries by a fresh one. */
static int load_frozen_model(wcmi_ctx *ctx, const wcmi_task_cfg *cfg, estimate_task *et, wcmi_model *m) {
  if (!cfg->model) return wcmi_fail(ctx, WCMI_EINVAL, "estimate-mi: no model to analyse (--model FILE)");
  int rc = wcmi_model_load(ctx, cfg->model, cfg->batch_size, m, NULL);
  if (rc) return rc;
  if (strcmp(m->dataset, cfg->data))
    return wcmi_fail(ctx, WCMI_EINVAL, "%s: the model is for %s but the data is %s (pass --data %s)", cfg->model,
                     m->dataset, cfg->data, m->dataset);
  if (et->opts.repr == WCMI_REPR_LOGITS && !m->classifier)
    return wcmi_fail(ctx, WCMI_EINVAL, "%s: --repr logits needs a model with a classifier head (this one has none)",
                     cfg->model);
  et->logits = et->opts.repr == WCMI_REPR_LOGITS || (et->opts.repr == WCMI_REPR_AUTO && m->classifier);
  et->zdim = et->logits ? WCMI_NUM_CLASSES : WCMI_ZDIM;
  wcmi_net_free(m->local);
  wcmi_net_free(m->global);
  m->local = m->global = NULL;
  m->hsize = cfg->hsize;
  return fresh_critic(ctx, m, cfg->hsize, et->zdim, cfg->batch_size, cfg->seed, STREAM_ESTIMATOR_INIT, &m->local,
                      &m->global);
}

/* The MI attack against the current critic (BN in eval mode), x (n) into xadv. */
static int mi_attack(wcmi_attack *attack, wcmi_dim *dim, const wcmi_pgd_cfg *cfg, float eps, const float *x, int n,
                     wcmi_rng *rng, float *xadv) {
  wcmi_pgd_cfg a = *cfg;
  a.eps = eps;
  int rc = wcmi_attack_set_cfg(attack, &a);
  if (rc) return rc;
  wcmi_objective obj = wcmi_dim_objective(dim);
  return wcmi_pgd_run(attack, &obj, x, n, rng, xadv, NULL);
}

/* One estimator step: the encoder (and head) stay frozen in eval mode; only the critic learns,
 * on the clean batch (normal) or on the batch the attack found against it (worst). */
static int estimate_step(trainer *t, const float *x, const int32_t *y, int n, double *vals) {
  (void)y;
  estimate_task *et = t->user;
  const float *xt = x;
  double t0 = wcmi_now();
  int rc;
  if (t->cfg.worst) {
    float eps = wcmi_eps_schedule(t->cfg.attack.eps, t->epoch, t->cfg.eps_fade_epochs);
    if ((rc = mi_attack(et->attack, &et->dim, &t->cfg.attack, eps, x, n, &t->attack_rng, t->xadv))) return rc;
    xt = t->xadv;
  }
  double t1 = wcmi_now();
  float loss;
  wcmi_optim_zero_grad(t->opt);
  if ((rc = wcmi_dim_step(&et->dim, xt, n, 0, 1, WCMI_DIM_ESTIMATOR_PARAMS, &loss, NULL))) return rc;
  if (!isfinite(loss))
    return wcmi_fail(t->ctx, WCMI_ENUMERIC, "estimate-mi: MI loss is %g at epoch %d: stopping (last good checkpoint kept)",
                     (double)loss, t->epoch + 1);
  double t2 = wcmi_now();
  wcmi_optim_step(t->opt);
  t->phase_time[0] += t1 - t0;
  t->phase_time[1] += t2 - t1;
  t->phase_time[2] += wcmi_now() - t2;
  vals[0] = loss;
  vals[1] = wcmi_mi_estimate(et->dim.mi, n, et->dim.L, loss);
  return WCMI_OK;
}

/* Mean MI estimate over nb batches of B samples at x, everything in eval mode. With attack != NULL
 * each batch is first moved by the MI attack and the perturbed batch is kept in keep (nb*B). */
static int heldout_mi(trainer *t, wcmi_dim *dim, wcmi_attack *attack, const float *x, int64_t nb, int B, float *keep,
                      double *mean) {
  const int64_t D = wcmi_dataset_sample_size(&t->test);
  double s = 0;
  for (int64_t b = 0; b < nb; b++) {
    const float *xb = x + b * B * D;
    int rc;
    if (attack) {
      float *dst = keep + b * B * D;
      if ((rc = mi_attack(attack, dim, &t->cfg.attack, t->cfg.attack.eps, xb, B, &t->attack_rng, dst))) return rc;
      xb = dst;
    }
    float loss;
    if ((rc = wcmi_dim_step(dim, xb, B, 0, 0, 0, &loss, NULL))) return rc;
    if (!isfinite(loss)) return wcmi_fail(t->ctx, WCMI_ENUMERIC, "estimate-mi: held-out MI loss is %g", (double)loss);
    s += wcmi_mi_estimate(dim->mi, B, dim->L, loss);
    if (t->ctx->interrupt) return wcmi_fail(t->ctx, WCMI_EINTR, "interrupted during the held-out estimate (rerun with --resume %s)", t->run_dir);
  }
  *mean = s / (double)nb;
  return WCMI_OK;
}

typedef struct refit_result {
  double mi;      /* best held-out value */
  int best_epoch; /* 0-based */
  int epochs;     /* epochs run */
  int64_t n_fit, n_heldout;
  int batch;
} refit_result;

/* Copies the rows idx[0..n) of src (rows of D floats) into dst. */
static void gather_rows(const float *src, const int64_t *idx, int64_t n, int64_t D, float *dst) {
  for (int64_t i = 0; i < n; i++) memcpy(dst + i * D, src + idx[i] * D, (size_t)D * sizeof(float));
}

/* PAPER.md section 5's re-fitted estimate: a fresh critic trained (no attack) on the perturbed
 * held-out inputs xs (n of them) the attack found, half to fit and half to judge, until the judged
 * value has not improved for `patience` epochs. Its value estimates I(X'; g(X')) for that
 * distribution, which is what the worst-case MI is about, without the attack fighting the critic. */
static int refit_critic(trainer *t, estimate_task *et, const float *xs, int64_t n, wcmi_jsonw *curve, refit_result *r) {
  wcmi_ctx *ctx = t->ctx;
  const int64_t D = wcmi_dataset_sample_size(&t->test);
  memset(r, 0, sizeof *r);
  r->n_fit = n / 2;
  r->n_heldout = n - r->n_fit;
  int64_t bf = t->cfg.batch_size;
  if (bf > r->n_fit) bf = r->n_fit;
  r->batch = (int)bf;
  if (bf < 2) return wcmi_fail(ctx, WCMI_EINVAL, "re-fitted estimate: %lld perturbed samples are too few to split", (long long)n);
  int64_t *perm = wcmi_alloc(ctx, (size_t)n, sizeof *perm), *order = wcmi_alloc(ctx, (size_t)r->n_fit, sizeof *order);
  float *fit = wcmi_alloc(ctx, (size_t)(r->n_fit * D), sizeof(float));
  float *ho = wcmi_alloc(ctx, (size_t)(r->n_heldout * D), sizeof(float));
  wcmi_model rm = t->model; /* shares the frozen encoder and head; only the critic is new */
  rm.local = rm.global = NULL;
  wcmi_dim dim;
  memset(&dim, 0, sizeof dim);
  wcmi_optim *opt = NULL;
  int rc = (perm && order && fit && ho) ? WCMI_OK : ctx->status;
  wcmi_rng rng;
  wcmi_rng_derive(&rng, t->cfg.seed, STREAM_REFIT_SPLIT);
  if (!rc) {
    /* The attacked batches come in test-set order: a random split keeps both halves alike. */
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    wcmi_rng_shuffle(&rng, perm, n);
    gather_rows(xs, perm, r->n_fit, D, fit);
    gather_rows(xs, perm + r->n_fit, r->n_heldout, D, ho);
    rc = fresh_critic(ctx, &t->model, t->cfg.hsize, et->zdim, (int)bf, t->cfg.seed, STREAM_REFIT_INIT, &rm.local,
                      &rm.global);
  }
  if (!rc) rc = wcmi_dim_init(ctx, &dim, &rm, t->cfg.mi, t->cfg.grad_path, (int)bf);
  if (!rc && et->logits) rc = wcmi_dim_set_repr_head(&dim, rm.classifier);
  if (!rc) {
    wcmi_net *nets[2] = {rm.local, rm.global};
    wcmi_adam_cfg a = wcmi_adam_defaults();
    a.lr = (float)t->cfg.lr;
    opt = wcmi_adam_new(ctx, nets, 2, a);
    if (!opt) rc = ctx->status;
  }
  const int64_t nb_fit = r->n_fit / bf, nb_ho = r->n_heldout / bf;
  r->mi = -INFINITY;
  r->best_epoch = -1;
  for (int64_t i = 0; i < r->n_fit; i++) order[i] = i;
  for (int epoch = 0, stale = 0; !rc && epoch < et->opts.refit_max_epochs && stale < et->opts.refit_patience; epoch++) {
    wcmi_rng_shuffle(&rng, order, r->n_fit);
    double train_sum = 0;
    for (int64_t b = 0; b < nb_fit && !rc; b++) {
      gather_rows(fit, order + b * bf, bf, D, t->x);
      float loss;
      wcmi_optim_zero_grad(opt);
      rc = wcmi_dim_step(&dim, t->x, (int)bf, 0, 1, WCMI_DIM_ESTIMATOR_PARAMS, &loss, NULL);
      if (!rc && !isfinite(loss)) rc = wcmi_fail(ctx, WCMI_ENUMERIC, "re-fitted estimate: MI loss is %g", (double)loss);
      if (!rc) wcmi_optim_step(opt);
      train_sum += wcmi_mi_estimate(dim.mi, (int)bf, dim.L, loss);
      if (!rc && ctx->interrupt) rc = wcmi_fail(ctx, WCMI_EINTR, "interrupted during the re-fitted estimate (rerun with --resume %s)", t->run_dir);
    }
    double judged = 0;
    for (int64_t b = 0; b < nb_ho && !rc; b++) {
      float loss;
      rc = wcmi_dim_step(&dim, ho + b * bf * D, (int)bf, 0, 0, 0, &loss, NULL);
      if (!rc && !isfinite(loss)) rc = wcmi_fail(ctx, WCMI_ENUMERIC, "re-fitted estimate: held-out MI loss is %g", (double)loss);
      judged += wcmi_mi_estimate(dim.mi, (int)bf, dim.L, loss);
    }
    if (rc) break;
    judged /= (double)nb_ho;
    r->epochs = epoch + 1;
    wcmi_jsonw_begin_object(curve);
    wcmi_jsonw_kv_int(curve, "epoch", epoch);
    wcmi_jsonw_kv_double(curve, "fit_mi", train_sum / (double)nb_fit);
    wcmi_jsonw_kv_double(curve, "heldout_mi", judged);
    wcmi_jsonw_end_object(curve);
    if (judged > r->mi) {
      r->mi = judged;
      r->best_epoch = epoch;
      stale = 0;
    } else {
      stale++;
    }
    if (t->cfg.progress)
      fprintf(stderr, "[estimate-mi] re-fit epoch %d: fit MI %.4f held-out MI %.4f (best %.4f)\n", epoch + 1,
              train_sum / (double)nb_fit, judged, r->mi);
    if (ctx->interrupt) rc = wcmi_fail(ctx, WCMI_EINTR, "interrupted during the re-fitted estimate (rerun with --resume %s)", t->run_dir);
  }
  wcmi_optim_free(opt);
  wcmi_dim_free(&dim);
  wcmi_net_free(rm.local);
  wcmi_net_free(rm.global);
  wcmi_free(perm);
  wcmi_free(order);
  wcmi_free(fit);
  wcmi_free(ho);
  return rc;
}

/* Algorithm 2's selection: the critic of the epoch with the best training MI estimate, which the
 * trainer saved as best.safetensors. */
static int load_selected_critic(trainer *t) {
  char path[1100];
  snprintf(path, sizeof path, "%s/best.safetensors", t->run_dir);
  wcmi_st *st = NULL;
  int rc = wcmi_st_open(t->ctx, path, &st);
  if (rc) return rc;
  rc = wcmi_net_load(t->ctx, st, t->model.local);
  if (!rc) rc = wcmi_net_load(t->ctx, st, t->model.global);
  wcmi_st_close(st);
  return rc;
}

static int estimate_summarize(trainer *t, wcmi_jsonw *w) {
  estimate_task *et = t->user;
  const wcmi_task_cfg *c = &t->cfg;
  const int B = c->batch_size;
  int64_t nb = t->test.n / B;
  if (c->eval_batches > 0 && nb > c->eval_batches) nb = c->eval_batches;
  if (nb == 0) return wcmi_fail(t->ctx, WCMI_EINVAL, "estimate-mi: the test set has fewer than %d samples (one batch)", B);
  int rc = load_selected_critic(t);
  if (rc) return rc;
  const int64_t D = wcmi_dataset_sample_size(&t->test);
  float *keep = NULL;
  if (c->worst && !(keep = wcmi_alloc(t->ctx, (size_t)(nb * B * D), sizeof(float)))) return t->ctx->status;
  if (c->progress) fprintf(stderr, "[estimate-mi] held-out estimate on %lld batches%s\n", (long long)nb, c->worst ? " under the attack" : "");
  double test_mi = 0;
  rc = heldout_mi(t, &et->dim, c->worst ? et->attack : NULL, t->test.images, nb, B, keep, &test_mi);
  refit_result rr;
  wcmi_jsonw curve;
  wcmi_jsonw_init_buffer(&curve, 0);
  wcmi_jsonw_begin_array(&curve);
  if (!rc && c->worst) rc = refit_critic(t, et, keep, nb * B, &curve, &rr);
  wcmi_jsonw_end_array(&curve);
  if (!rc) rc = wcmi_jsonw_finish(t->ctx, &curve);
  wcmi_free(keep);
  if (rc) {
    wcmi_jsonw_free(&curve);
    return rc;
  }
  wcmi_jsonw_kv_string(w, "case", c->worst ? "worst" : "normal");
  wcmi_jsonw_kv_string(w, "model", c->model);
  wcmi_jsonw_kv_string(w, "representation", et->logits ? "logits" : "z");
  wcmi_jsonw_kv_int(w, "representation_dim", et->zdim);
  wcmi_jsonw_key(w, "estimator");
  write_estimator(w, c);
  wcmi_jsonw_kv_string(w, "selection", "Algorithm 2: critic of the epoch with the best training MI estimate");
  wcmi_jsonw_kv_int(w, "selected_epoch", t->best_epoch);
  wcmi_jsonw_kv_double(w, "train_mi_selected", wcmi_mi_estimate(c->mi, B, et->dim.L, -t->best_score));
  wcmi_jsonw_kv_double(w, "test_mi", test_mi);
  wcmi_jsonw_kv_int(w, "test_samples", nb * B);
  wcmi_jsonw_key(w, "attack");
  if (c->worst) write_attack(w, c);
  else wcmi_jsonw_null(w);
  wcmi_jsonw_key(w, "refit");
  if (c->worst) {
    wcmi_jsonw_begin_object(w);
    wcmi_jsonw_kv_double(w, "mi", rr.mi);
    wcmi_jsonw_kv_int(w, "best_epoch", rr.best_epoch);
    wcmi_jsonw_kv_int(w, "epochs", rr.epochs);
    wcmi_jsonw_kv_int(w, "patience", et->opts.refit_patience);
    wcmi_jsonw_kv_int(w, "max_epochs", et->opts.refit_max_epochs);
    wcmi_jsonw_kv_int(w, "fit_samples", rr.n_fit);
    wcmi_jsonw_kv_int(w, "heldout_samples", rr.n_heldout);
    wcmi_jsonw_kv_int(w, "batch_size", rr.batch);
    wcmi_jsonw_key(w, "curve");
    wcmi_jsonw_raw(w, wcmi_jsonw_text(&curve));
    wcmi_jsonw_end_object(w);
  } else {
    wcmi_jsonw_null(w);
  }
  wcmi_jsonw_free(&curve);
  return WCMI_OK;
}

static const trainer_ops ESTIMATE_OPS = {
    /* No end_epoch: the trainer then scores an epoch by -mean loss, i.e. by the training MI
     * estimate (for every estimator the estimate is a constant minus the loss). */
    "estimate-mi", {"loss", "mi"}, 2, estimate_step, NULL, estimate_summarize,
};

int wcmi_task_estimate_mi_ex(wcmi_ctx *ctx, const wcmi_task_cfg *cfg, const wcmi_estimate_opts *opts, char **summary) {
  estimate_task et;
  memset(&et, 0, sizeof et);
  if (opts) et.opts = *opts;
  else wcmi_estimate_opts_default(&et.opts);
  if (cfg->epochs < 1) return wcmi_fail(ctx, WCMI_EINVAL, "estimate-mi: needs --epochs >= 1 (Algorithm 2 selects among trained epochs)");
  if (et.opts.refit_patience < 1 || et.opts.refit_max_epochs < 1)
    return wcmi_fail(ctx, WCMI_EINVAL, "estimate-mi: re-fit patience and max epochs must be >= 1");
  int rc = cfg->resume_dir ? load_opts(ctx, cfg->resume_dir, &et.opts) : WCMI_OK;
  if (rc) return rc;
  trainer t;
  rc = trainer_init(&t, ctx, cfg, &ESTIMATE_OPS, &et);
  if (!rc && !cfg->resume_dir) rc = save_opts(ctx, t.run_dir, &et.opts);
  if (!rc) rc = load_frozen_model(ctx, cfg, &et, &t.model);
  if (!rc) rc = wcmi_dim_init(ctx, &et.dim, &t.model, cfg->mi, cfg->grad_path, cfg->batch_size);
  if (!rc && et.logits) rc = wcmi_dim_set_repr_head(&et.dim, t.model.classifier);
  if (!rc) {
    wcmi_net *nets[2] = {t.model.local, t.model.global};
    rc = trainer_setup(&t, nets, 2, &et.attack);
  }
  if (!rc) rc = trainer_run(&t, summary);
  wcmi_attack_free(et.attack);
  wcmi_dim_free(&et.dim);
  trainer_free(&t);
  return rc;
}

int wcmi_task_estimate_mi(wcmi_ctx *ctx, const wcmi_task_cfg *cfg, char **summary) {
  return wcmi_task_estimate_mi_ex(ctx, cfg, NULL, summary);
}

/* ---- vulnerability ------------------------------------------------------------------------- */

typedef struct case_result {
  double mi, refit_mi;
  char repr[16];
} case_result;

static int read_case(wcmi_ctx *ctx, const char *what, const char *summary, int worst, case_result *r) {
  wcmi_json *j = NULL;
  int rc = wcmi_json_parse(ctx, what, summary, strlen(summary), &j);
  if (rc) return rc;
  const char *repr = NULL;
  rc = wcmi_json_get_number(ctx, what, j, "test_mi", &r->mi);
  if (!rc) rc = wcmi_json_get_string(ctx, what, j, "representation", &repr);
  if (!rc) snprintf(r->repr, sizeof r->repr, "%s", repr);
  r->refit_mi = NAN;
  if (!rc && worst) rc = wcmi_json_get_number(ctx, what, wcmi_json_get(j, "refit"), "mi", &r->refit_mi);
  wcmi_json_free(j);
  return rc;
}

int wcmi_task_vulnerability_ex(wcmi_ctx *ctx, const wcmi_task_cfg *cfg, const wcmi_estimate_opts *opts, char **summary) {
  const char *dir = cfg->resume_dir ? cfg->resume_dir : cfg->out_dir;
  if (!dir) return wcmi_fail(ctx, WCMI_EINVAL, "vulnerability: no run directory (--out DIR or --resume DIR)");
  wcmi_estimate_opts o;
  if (opts) o = *opts;
  else wcmi_estimate_opts_default(&o);
  char path[1100];
  snprintf(path, sizeof path, "%s/config.json", dir);
  /* As for every run directory: --out does not overwrite an earlier run without --force. */
  if (!cfg->resume_dir && !cfg->force && access(path, F_OK) == 0)
    return wcmi_fail(ctx, WCMI_EINVAL, "%s: the directory holds a run: continue it with --resume %s, or pass --force to "
                     "overwrite it", dir, dir);
  int rc = wcmi_mkdir_p(ctx, dir);
  if (!rc && cfg->resume_dir) rc = load_opts(ctx, dir, &o);
  if (!rc && !cfg->resume_dir) {
    rc = save_opts(ctx, dir, &o);
    char *json = rc ? NULL : wcmi_task_config_json(cfg, "vulnerability");
    if (!rc && !json) rc = wcmi_fail(ctx, WCMI_ENOMEM, "out of memory");
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (!rc) rc = wcmi_atomic_write(ctx, path, json, strlen(json));
    free(json);
  }
  if (rc) return rc;
  /* Each case gets its own fresh critic and run directory; a resumed vulnerability run continues
   * each case from its own latest checkpoint, or starts it when it never saved one. */
  static const char *const CASES[2] = {"normal", "worst"};
  case_result res[2];
  for (int k = 0; k < 2 && !rc; k++) {
    wcmi_task_cfg c = *cfg;
    char sub[1100], latest[1200];
    snprintf(sub, sizeof sub, "%s/%s", dir, CASES[k]);
    snprintf(latest, sizeof latest, "%s/latest.safetensors", sub);
    c.worst = k;
    c.out_dir = sub;
    c.resume_dir = cfg->resume_dir && access(latest, F_OK) == 0 ? sub : NULL;
    /* A case that never saved a checkpoint starts again, over what its killed attempt left. */
    c.force = cfg->force || (cfg->resume_dir && !c.resume_dir);
    if (cfg->progress) fprintf(stderr, "[vulnerability] %s case into %s\n", CASES[k], sub);
    char *s = NULL;
    rc = wcmi_task_estimate_mi_ex(ctx, &c, &o, &s);
    if (!rc) rc = read_case(ctx, sub, s, k, &res[k]);
    free(s);
  }
  if (rc) return rc;
  const double rv = res[0].mi - res[1].mi;
  wcmi_jsonw w;
  wcmi_jsonw_init_buffer(&w, 2);
  wcmi_jsonw_begin_object(&w);
  wcmi_jsonw_kv_string(&w, "task", "vulnerability");
  wcmi_jsonw_kv_string(&w, "run_dir", dir);
  wcmi_jsonw_kv_string(&w, "model", cfg->model ? cfg->model : "");
  wcmi_jsonw_kv_string(&w, "dataset", cfg->data);
  wcmi_jsonw_kv_string(&w, "representation", res[0].repr);
  wcmi_jsonw_kv_double(&w, "normal_mi", res[0].mi);
  wcmi_jsonw_kv_double(&w, "worst_mi", res[1].mi);
  wcmi_jsonw_kv_double(&w, "worst_mi_refit", res[1].refit_mi);
  wcmi_jsonw_kv_double(&w, "rv", rv);
  wcmi_jsonw_kv_double(&w, "rv_refit", res[0].mi - res[1].refit_mi);
  wcmi_jsonw_kv_int(&w, "num_classes", WCMI_NUM_CLASSES);
  wcmi_jsonw_kv_double(&w, "fano_bound", wcmi_fano_bound(res[1].mi, WCMI_NUM_CLASSES));
  wcmi_jsonw_kv_double(&w, "fano_bound_refit", wcmi_fano_bound(res[1].refit_mi, WCMI_NUM_CLASSES));
  wcmi_jsonw_kv_string(&w, "fano_note",
                       "upper bound on any downstream classifier's adversarial accuracy: (max(0, worst_mi) + ln 2) / ln 10, "
                       "capped at 1");
  wcmi_jsonw_kv_string(&w, "units", "nats");
  wcmi_jsonw_key(&w, "attack");
  write_attack(&w, cfg);
  wcmi_jsonw_key(&w, "estimator");
  write_estimator(&w, cfg);
  wcmi_jsonw_kv_string(&w, "selection", "Algorithm 2: critic of the epoch with the best training MI estimate; "
                                        "mean of held-out batch estimates");
  if (res[1].mi < 0)
    wcmi_jsonw_kv_string(&w, "warning", "worst_mi < 0 is no MI: the attack beat the critic; see worst_mi_refit");
  wcmi_jsonw_key(&w, "runs");
  wcmi_jsonw_begin_object(&w);
  for (int k = 0; k < 2; k++) {
    char sub[1100];
    snprintf(sub, sizeof sub, "%s/%s", dir, CASES[k]);
    wcmi_jsonw_kv_string(&w, CASES[k], sub);
  }
  wcmi_jsonw_end_object(&w);
  wcmi_jsonw_end_object(&w);
  rc = wcmi_jsonw_finish(ctx, &w);
  if (!rc) {
    snprintf(path, sizeof path, "%s/summary.json", dir);
    rc = wcmi_atomic_write(ctx, path, wcmi_jsonw_text(&w), strlen(wcmi_jsonw_text(&w)));
  }
  if (!rc && !(*summary = strdup(wcmi_jsonw_text(&w)))) rc = wcmi_fail(ctx, WCMI_ENOMEM, "out of memory");
  wcmi_jsonw_free(&w);
  return rc;
}

int wcmi_task_vulnerability(wcmi_ctx *ctx, const wcmi_task_cfg *cfg, char **summary) {
  return wcmi_task_vulnerability_ex(ctx, cfg, NULL, summary);
}
