/* estimate-mi and vulnerability (PAPER.md section 5): the MI of a frozen representation, in the
 * normal and the worst case, with a fresh critic, the paper's Algorithm 2 selection and a
 * re-fitted worst-case estimate. Method and caveats: docs/estimate-mi.md. */
#include "estimator/mi_step.h"
#include "train/trainer.h"
#include "wcmi/task_config.h"

#include "dist/dist_train.h"
#include "wcmi/dist.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* RNG streams of this task, apart from core.h's well-known ids so none of them shifts another. */
enum { STREAM_ESTIMATOR_INIT = 101, STREAM_REFIT_INIT = 102, STREAM_REFIT_SPLIT = 103, STREAM_CRITIC_SEEDS = 104 };

#define OPTS_FILE "estimate.json"

void wcmi_estimate_opts_default(wcmi_estimate_opts *o) {
  o->repr = WCMI_REPR_AUTO;
  o->refit_patience = 3;
  o->refit_max_epochs = 50;
  o->critics = 0;
}

int wcmi_estimate_critics(const wcmi_task_cfg *cfg, const wcmi_estimate_opts *o) {
  if (o->critics > 0) return o->critics;
  /* The quick and fast profiles' critics are small and short-trained, so one of them is a noisy
   * measurement: average three (docs/estimate-mi.md, EXPERIMENTS.md issue 13). */
  return cfg->profile && (!strcmp(cfg->profile, "quick") || !strcmp(cfg->profile, "fast")) ? 3 : 1;
}

uint64_t wcmi_estimate_critic_seed(uint64_t seed, int k) {
  if (k == 0) return seed; /* critic 0 is the single-critic run of the same seed, bit for bit */
  wcmi_rng r;
  wcmi_rng_derive(&r, seed, STREAM_CRITIC_SEEDS);
  uint64_t v = 0;
  for (int i = 0; i < k; i++) v = wcmi_rng_u64(&r);
  return v;
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
  wcmi_jsonw_kv_int(&w, "critics", o->critics);
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
  /* Runs from before --critics have no key: they were single-critic runs. */
  if (!rc && wcmi_json_get(j, "critics") && !(rc = wcmi_json_get_int(ctx, path, j, "critics", &e))) o->critics = (int)e;
  if (!rc && !wcmi_json_get(j, "critics")) o->critics = 1;
  wcmi_json_free(j);
  return rc;
}

static void write_attack(wcmi_jsonw *w, const wcmi_task_cfg *c) {
  wcmi_jsonw_begin_object(w);
  wcmi_jsonw_kv_string(w, "target", "MI loss of the critic (batch-level; maximizing it minimizes the MI estimate)");
  wcmi_task_attack_json(w, &c->attack);
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
  return wcmi_build_critic(ctx, &m->in, zdim, hsize, max_batch, &rng, local, global);
}

/* ---- the estimate-mi task ------------------------------------------------------------------ */

typedef struct estimate_task {
  wcmi_estimate_opts opts;
  int logits; /* the representation is classifier(encoder(x)) */
  int zdim;
  wcmi_dim dim;
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
  et->zdim = et->logits ? WCMI_NUM_CLASSES : m->zdim;
  wcmi_net_free(m->local);
  wcmi_net_free(m->global);
  m->local = m->global = NULL;
  m->hsize = cfg->hsize;
  return fresh_critic(ctx, m, cfg->hsize, et->zdim, cfg->batch_size, cfg->seed, STREAM_ESTIMATOR_INIT, &m->local,
                      &m->global);
}

/* One estimator step. The objective: the MI loss of the critic on the clean batch (normal) or on
 * the batch the MI attack found against it (worst; BN in eval mode); the parameters: the critic
 * only (the encoder, and head, stay frozen in eval mode). */
static int estimate_step(trainer *t, const float *x, const int32_t *y, int n, double *vals) {
  (void)y;
  estimate_task *et = t->user;
  return mi_train_step(t, &et->dim, x, n, 0, WCMI_DIM_ESTIMATOR_PARAMS, vals);
}

/* Data-parallel: the perturbed slices [lo, hi) of batch b of every rank, all-gathered in rank order
 * into keep's batch b, so every rank holds the whole perturbed held-out set for the re-fit. */
static int gather_batch(wcmi_ctx *ctx, float *keep_b, int B, int64_t D, int lo, int hi, float *scratch) {
  wcmi_dist *d = ctx->dist;
  if (!d) return WCMI_OK; /* one process attacked the whole batch in place */
  int *counts = wcmi_alloc(ctx, (size_t)wcmi_dist_size(d), sizeof(int));
  if (!counts) return ctx->status;
  for (int r = 0; r < wcmi_dist_size(d); r++) {
    int a = 0, z = 0;
    wcmi_dist_shard(B, r, wcmi_dist_size(d), &a, &z);
    counts[r] = z - a;
  }
  memcpy(scratch, keep_b + (int64_t)lo * D, (size_t)(hi - lo) * (size_t)D * sizeof(float));
  int rc = wcmi_dist_allgather_f32(d, WCMI_DIST_OTHER, scratch, counts, D, keep_b);
  wcmi_free(counts);
  return rc;
}

/* Mean MI estimate over nb batches of B samples at x, everything in eval mode, and its standard
 * error over the batches (sd / sqrt(nb); 0 for one batch). With attacked set each batch is first
 * moved by the MI attack (the run's, at the full eps) and the perturbed batch is kept in keep (nb*B).
 * Data-parallel: each rank takes its slice of every batch; the MI objective gathers the features,
 * so every batch's estimate is the global batch's (the DV / InfoNCE score over all B samples),
 * identical on every rank. */
static int heldout_mi(trainer *t, wcmi_dim *dim, int attacked, const float *x, int64_t nb, int B, float *keep,
                      double *mean, double *sem) {
  const int64_t D = wcmi_dataset_sample_size(&t->test);
  int lo = 0, hi = B;
  wcmi_dist_shard(B, wcmi_dist_rank(t->ctx->dist), wcmi_dist_size(t->ctx->dist), &lo, &hi);
  float *scratch = attacked && t->ctx->dist ? wcmi_alloc(t->ctx, (size_t)(hi - lo) * (size_t)D, sizeof(float)) : NULL;
  if (attacked && t->ctx->dist && !scratch) return t->ctx->status;
  double s = 0, ss = 0;
  int rc = WCMI_OK;
  for (int64_t b = 0; b < nb && !rc; b++) {
    const float *xb = x + (b * B + lo) * D;
    if (attacked) {
      float *dst = keep + (b * B + lo) * D;
      const wcmi_objective obj = wcmi_dim_objective(dim);
      if ((rc = trainer_attack_full(t, &obj, xb, hi - lo, dst))) break;
      if ((rc = gather_batch(t->ctx, keep + b * B * D, B, D, lo, hi, scratch))) break;
      xb = dst;
    }
    float loss;
    if ((rc = wcmi_dim_step(dim, xb, hi - lo, 0, 0, 0, &loss, NULL))) break;
    if (!isfinite(loss)) {
      rc = wcmi_fail(t->ctx, WCMI_ENUMERIC, "estimate-mi: held-out MI loss is %g", (double)loss);
      break;
    }
    const double v = wcmi_mi_estimate(dim->mi, B, dim->L, loss);
    s += v;
    ss += v * v;
    if (dist_interrupted(t->ctx))
      rc = wcmi_fail(t->ctx, WCMI_EINTR, "interrupted during the held-out estimate (rerun with --resume %s)", t->run_dir);
  }
  wcmi_free(scratch);
  if (rc) return rc;
  *mean = s / (double)nb;
  const double var = nb > 1 ? (ss - s * s / (double)nb) / (double)(nb - 1) : 0.0;
  *sem = var > 0 ? sqrt(var / (double)nb) : 0.0;
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
  const int ranks = wcmi_dist_size(ctx->dist);
  if (bf < ranks)
    return wcmi_fail(ctx, WCMI_EINVAL, "re-fitted estimate: its batch of %lld samples is smaller than the %d ranks",
                     (long long)bf, ranks);
  /* Data-parallel: every rank holds all of xs and takes its slice [lo, hi) of every re-fit batch;
   * the critic's gradients are summed over the ranks before each Adam step. */
  int lo = 0, hi = (int)bf;
  wcmi_dist_shard((int)bf, wcmi_dist_rank(ctx->dist), ranks, &lo, &hi);
  float *grads = NULL;
  size_t grads_n = 0;
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
      gather_rows(fit, order + b * bf + lo, hi - lo, D, t->x);
      float loss;
      wcmi_optim_zero_grad(opt);
      rc = wcmi_dim_step(&dim, t->x, hi - lo, 0, 1, WCMI_DIM_ESTIMATOR_PARAMS, &loss, NULL);
      if (!rc && !isfinite(loss)) rc = wcmi_fail(ctx, WCMI_ENUMERIC, "re-fitted estimate: MI loss is %g", (double)loss);
      wcmi_net *nets[2] = {rm.local, rm.global};
      if (!rc) rc = dist_sum_net_grads(ctx, nets, 2, &grads, &grads_n);
      if (!rc) wcmi_optim_step(opt);
      train_sum += wcmi_mi_estimate(dim.mi, (int)bf, dim.L, loss);
      if (!rc && dist_interrupted(ctx)) rc = wcmi_fail(ctx, WCMI_EINTR, "interrupted during the re-fitted estimate (rerun with --resume %s)", t->run_dir);
    }
    double judged = 0;
    for (int64_t b = 0; b < nb_ho && !rc; b++) {
      float loss;
      rc = wcmi_dim_step(&dim, ho + (b * bf + lo) * D, hi - lo, 0, 0, 0, &loss, NULL);
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
    if (dist_interrupted(ctx)) rc = wcmi_fail(ctx, WCMI_EINTR, "interrupted during the re-fitted estimate (rerun with --resume %s)", t->run_dir);
  }
  wcmi_free(grads);
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
 * trainer saved as best.safetensors. Data-parallel: rank 0 wrote the file, so rank 0 reads it and
 * sends the critic to every rank (the others may not see the file yet, or at all). */
static int load_selected_critic(trainer *t) {
  int rc = WCMI_OK;
  if (dist_is_root(t->ctx)) {
    char path[1100];
    snprintf(path, sizeof path, "%s/best.safetensors", t->run_dir);
    wcmi_st *st = NULL;
    if ((rc = wcmi_st_open(t->ctx, path, &st))) return rc;
    rc = wcmi_net_load(t->ctx, st, t->model.local);
    if (!rc) rc = wcmi_net_load(t->ctx, st, t->model.global);
    wcmi_st_close(st);
  }
  wcmi_net *critic[2] = {t->model.local, t->model.global};
  for (int k = 0; k < 2 && !rc && t->ctx->dist; k++)
    for (int i = 0; i < wcmi_net_num_params(critic[k]) && !rc; i++) {
      wcmi_param *p = wcmi_net_param(critic[k], i);
      rc = dist_bcast_params(t->ctx, &p, 1);
    }
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
  double test_mi = 0, test_sem = 0, clean_mi = NAN, clean_sem = NAN;
  rc = heldout_mi(t, &et->dim, c->worst, t->test.images, nb, B, keep, &test_mi, &test_sem);
  /* The same critic on the same held-out batches without the attack (after the attacked pass, so
   * the attack's random stream is the one it always had): the paired difference clean - attacked
   * measures what the attack takes away with the critic's own errors largely cancelled. */
  if (!rc && c->worst) rc = heldout_mi(t, &et->dim, 0, t->test.images, nb, B, NULL, &clean_mi, &clean_sem);
  refit_result rr;
  memset(&rr, 0, sizeof rr);
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
  wcmi_jsonw_kv_int(w, "test_batches", nb);
  wcmi_jsonw_kv_int(w, "seed", (int64_t)c->seed);
  wcmi_run_record *r = &t->record;
  r->test_mi.mean = test_mi;
  r->test_mi.sem = test_sem;
  r->test_samples = nb * B;
  if (c->worst) {
    r->test_mi_clean.mean = clean_mi;
    r->test_mi_clean.sem = clean_sem;
    r->refit_mi.mean = rr.mi;
  }
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
    "estimate-mi", {"loss", "mi"}, 2, estimate_step, NULL, estimate_summarize, WCMI_REC_ESTIMATE,
};

/* What one critic's run hands on: its results, typed, and the representation it measured. */
typedef struct critic_out {
  wcmi_run_record rec;
  char repr[16];
} critic_out;

/* One critic: the estimate-mi run of cfg in its run directory; its results into *out (may be NULL). */
static int estimate_one(wcmi_ctx *ctx, const wcmi_task_cfg *cfg, const wcmi_estimate_opts *opts, char **summary,
                        critic_out *out) {
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
  if (!rc && !cfg->resume_dir && dist_is_root(ctx)) rc = save_opts(ctx, t.run_dir, &et.opts);
  if (!rc) rc = load_frozen_model(ctx, cfg, &et, &t.model);
  if (!rc) rc = wcmi_dim_init(ctx, &et.dim, &t.model, cfg->mi, cfg->grad_path, cfg->batch_size);
  if (!rc && et.logits) rc = wcmi_dim_set_repr_head(&et.dim, t.model.classifier);
  if (!rc) {
    wcmi_net *nets[2] = {t.model.local, t.model.global};
    rc = trainer_setup(&t, nets, 2);
  }
  if (!rc) rc = trainer_run(&t, summary);
  if (!rc && out) {
    out->rec = t.record;
    snprintf(out->repr, sizeof out->repr, "%s", et.logits ? "logits" : "z");
  }
  wcmi_dim_free(&et.dim);
  trainer_free(&t);
  return rc;
}

/* ---- several critics: mean, spread, per-critic values ----------------------------------------- */

#define MAX_CRITICS 100

/* Standard error of a mean of K critics' held-out values from the held-out batches alone. */
static double pooled_sem(const critic_out *r, int K) {
  double ss = 0;
  for (int k = 0; k < K; k++) ss += r[k].rec.test_mi.sem * r[k].rec.test_mi.sem;
  return sqrt(ss) / (double)K;
}

/* The run directory of critic k inside dir: critic 0 is dir itself (the single-critic layout). */
static void critic_dir(const char *dir, int k, const char *leaf, char *out, size_t n) {
  if (k == 0) snprintf(out, n, "%s%s%s", dir, leaf ? "/" : "", leaf ? leaf : "");
  else snprintf(out, n, "%s/critic-%d%s%s", dir, k, leaf ? "/" : "", leaf ? leaf : "");
}

/* Runs critic k of cfg (its own seed) in sub, resuming it when the parent run is resumed and the
 * critic saved a checkpoint; its results go to *out and its summary text to *summary (may be NULL). */
static int run_critic(wcmi_ctx *ctx, const wcmi_task_cfg *cfg, const wcmi_estimate_opts *o, int k, const char *sub,
                      int worst, critic_out *out, char **summary) {
  wcmi_task_cfg c = *cfg;
  char latest[1200];
  snprintf(latest, sizeof latest, "%s/latest.safetensors", sub);
  c.seed = wcmi_estimate_critic_seed(cfg->seed, k);
  c.worst = worst;
  c.out_dir = sub;
  /* Data-parallel: rank 0 sees the run directory it writes; every rank follows its verdict. */
  int saved = cfg->resume_dir && dist_is_root(ctx) && access(latest, F_OK) == 0;
  int rc = wcmi_dist_bcast(ctx->dist, &saved, sizeof saved);
  if (rc) return rc;
  c.resume_dir = saved ? sub : NULL;
  /* A critic that never saved a checkpoint starts again, over what its killed attempt left. */
  c.force = cfg->force || (cfg->resume_dir && !c.resume_dir);
  char *s = NULL;
  rc = estimate_one(ctx, &c, o, &s, out);
  if (!rc && summary) *summary = s;
  else free(s);
  return rc;
}

static int write_summary(wcmi_ctx *ctx, const char *dir, wcmi_jsonw *w, char **summary) {
  char path[1100];
  int rc = wcmi_jsonw_finish(ctx, w);
  if (!rc && dist_is_root(ctx)) { /* data-parallel: rank 0 writes */
    snprintf(path, sizeof path, "%s/summary.json", dir);
    rc = wcmi_atomic_write(ctx, path, wcmi_jsonw_text(w), strlen(wcmi_jsonw_text(w)));
  }
  if (!rc && !(*summary = strdup(wcmi_jsonw_text(w)))) rc = wcmi_fail(ctx, WCMI_ENOMEM, "out of memory");
  return rc;
}

/* Whether key is a run-record field of estimate-mi or one of a measure's companions (key_std,
 * key_sem, key_per_critic): the multi-critic summary writes those from its own record. */
static int is_record_key(const char *key) {
  static const char *const SUFFIX[] = {"", "_std", "_sem", "_per_critic"};
  for (int i = 0; i < wcmi_record_num_fields(); i++) {
    const wcmi_record_field *f = wcmi_record_field_at(i);
    const size_t n = strlen(f->key);
    if (!(f->files & WCMI_REC_ESTIMATE) || strncmp(key, f->key, n)) continue;
    for (int k = 0; k < 4; k++)
      if (!strcmp(key + n, SUFFIX[k])) return 1;
  }
  return 0;
}

/* estimate-mi with K > 1 critics: critic 0 runs in dir, critic k in dir/critic-k; the summary is
 * critic 0's description (case, estimator, attack, its re-fit's details) with the record's figures
 * as the mean over the critics, their spread and per-critic values. */
static int estimate_critics(wcmi_ctx *ctx, const wcmi_task_cfg *cfg, const wcmi_estimate_opts *o, int K,
                            char **summary) {
  const char *dir = cfg->resume_dir ? cfg->resume_dir : cfg->out_dir;
  if (!dir) return wcmi_fail(ctx, WCMI_EINVAL, "estimate-mi: no run directory (--out DIR or --resume DIR)");
  critic_out *r = wcmi_alloc(ctx, (size_t)K, sizeof *r);
  if (!r) return ctx->status;
  char *first_text = NULL;
  int rc = WCMI_OK;
  for (int k = 0; k < K && !rc; k++) {
    char sub[1100];
    critic_dir(dir, k, NULL, sub, sizeof sub);
    if (cfg->progress && dist_is_root(ctx)) fprintf(stderr, "[estimate-mi] critic %d/%d into %s\n", k + 1, K, sub);
    rc = run_critic(ctx, cfg, o, k, sub, cfg->worst, &r[k], k == 0 ? &first_text : NULL);
  }
  wcmi_json *first = NULL;
  if (!rc) rc = wcmi_json_parse(ctx, dir, first_text, strlen(first_text), &first);
  free(first_text);
  if (rc) {
    wcmi_free(r);
    return rc;
  }
  double mi[MAX_CRITICS], clean[MAX_CRITICS], refit[MAX_CRITICS], paired[MAX_CRITICS];
  for (int k = 0; k < K; k++) {
    mi[k] = r[k].rec.test_mi.mean;
    clean[k] = r[k].rec.test_mi_clean.mean;
    refit[k] = r[k].rec.refit_mi.mean;
    paired[k] = clean[k] - mi[k];
  }
  wcmi_run_record rec;
  wcmi_record_clear(&rec);
  rec.critics = K;
  rec.test_samples = r[0].rec.test_samples;
  wcmi_measure_set(&rec.test_mi, mi, K);
  rec.test_mi.sem = pooled_sem(r, K);
  if (cfg->worst) {
    wcmi_measure_set(&rec.test_mi_clean, clean, K);
    wcmi_measure_set(&rec.refit_mi, refit, K);
    wcmi_measure_set(&rec.attack_drop, paired, K);
  }
  wcmi_jsonw w;
  wcmi_jsonw_init_buffer(&w, 2);
  wcmi_jsonw_begin_object(&w);
  for (size_t i = 0; i < first->n; i++) {
    if (is_record_key(first->keys[i])) continue;
    wcmi_jsonw_key(&w, first->keys[i]);
    wcmi_jsonw_value(&w, &first->items[i]);
  }
  wcmi_record_write(&w, &rec, WCMI_REC_ESTIMATE);
  wcmi_jsonw_key(&w, "critic_runs");
  wcmi_jsonw_begin_array(&w);
  for (int k = 0; k < K; k++) {
    char sub[1100];
    critic_dir(dir, k, NULL, sub, sizeof sub);
    wcmi_jsonw_string(&w, sub);
  }
  wcmi_jsonw_end_array(&w);
  wcmi_jsonw_end_object(&w);
  wcmi_json_free(first);
  wcmi_free(r);
  rc = write_summary(ctx, dir, &w, summary);
  wcmi_jsonw_free(&w);
  return rc;
}

int wcmi_task_estimate_mi_ex(wcmi_ctx *ctx, const wcmi_task_cfg *cfg, const wcmi_estimate_opts *opts, char **summary) {
  wcmi_estimate_opts o;
  if (opts) o = *opts;
  else wcmi_estimate_opts_default(&o);
  int rc = cfg->resume_dir ? load_opts(ctx, cfg->resume_dir, &o) : WCMI_OK;
  if (rc) return rc;
  const int K = wcmi_estimate_critics(cfg, &o);
  if (K > MAX_CRITICS) return wcmi_fail(ctx, WCMI_EINVAL, "estimate-mi: --critics %d is more than %d", K, MAX_CRITICS);
  o.critics = K;
  return K == 1 ? estimate_one(ctx, cfg, &o, summary, NULL) : estimate_critics(ctx, cfg, &o, K, summary);
}

int wcmi_task_estimate_mi(wcmi_ctx *ctx, const wcmi_task_cfg *cfg, char **summary) {
  return wcmi_task_estimate_mi_ex(ctx, cfg, NULL, summary);
}

/* ---- vulnerability ------------------------------------------------------------------------- */

static const char *const CASES[2] = {"normal", "worst"};

/* mean ± spread for the human table: the spread over critics, or the held-out standard error when
 * there is one critic. */
static void print_row(const char *what, const wcmi_measure *m, int K, double sem) {
  double sd = K > 1 ? m->std : sem;
  if (isfinite(sd)) fprintf(stderr, "  %-28s %8.4f ± %.4f\n", what, m->mean, sd);
  else fprintf(stderr, "  %-28s %8.4f\n", what, m->mean);
}

static void print_table(const wcmi_task_cfg *cfg, int K, const char *repr, const wcmi_run_record *v,
                        const critic_out *res, const char *fano_why) {
  fprintf(stderr, "\nvulnerability of %s (%s, %s; nats; ± = %s)\n", cfg->model ? cfg->model : "?", repr,
          wcmi_mi_estimator_name(cfg->mi.estimator),
          K > 1 ? "std over the critics" : "standard error over held-out batches");
  static const char *const names[6] = {"normal MI",          "worst-case MI (Algorithm 2)", "worst-case MI re-fitted",
                                       "RV = normal - worst", "RV re-fitted",                "attack drop (same critic)"};
  const double n_sem = res[0].rec.test_mi.sem, w_sem = res[K].rec.test_mi.sem;
  const wcmi_measure *rows[6] = {&v->normal_mi, &v->worst_mi, &v->worst_mi_refit, &v->rv, &v->rv_refit, &v->attack_drop};
  const double sems[6] = {n_sem, w_sem, NAN, sqrt(n_sem * n_sem + w_sem * w_sem), NAN, NAN};
  for (int i = 0; i < 6; i++) print_row(names[i], rows[i], K, sems[i]);
  if (fano_why) fprintf(stderr, "  Fano bound                       n/a (%s)\n\n", wcmi_mi_estimator_name(cfg->mi.estimator));
  else fprintf(stderr, "  Fano bound (mean I_worst >= 0)  %7.1f %%\n\n", 100 * v->fano_bound);
}

/* The vulnerability record from each critic's two estimates: res[k] normal, res[K + k] worst. */
static void vulnerability_record(const wcmi_task_cfg *cfg, const critic_out *res, int K, wcmi_run_record *v) {
  double normal[MAX_CRITICS], worst[MAX_CRITICS], refit[MAX_CRITICS], rv[MAX_CRITICS], rv_refit[MAX_CRITICS],
      drop[MAX_CRITICS], clean[MAX_CRITICS];
  for (int k = 0; k < K; k++) {
    normal[k] = res[k].rec.test_mi.mean;
    worst[k] = res[K + k].rec.test_mi.mean;
    refit[k] = res[K + k].rec.refit_mi.mean;
    clean[k] = res[K + k].rec.test_mi_clean.mean;
    rv[k] = normal[k] - worst[k];
    rv_refit[k] = normal[k] - refit[k];
    drop[k] = clean[k] - worst[k];
  }
  wcmi_record_clear(v);
  v->critics = K;
  wcmi_measure_set(&v->normal_mi, normal, K);
  v->normal_mi.sem = pooled_sem(res, K);
  wcmi_measure_set(&v->worst_mi, worst, K);
  v->worst_mi.sem = pooled_sem(res + K, K);
  wcmi_measure_set(&v->worst_mi_refit, refit, K);
  wcmi_measure_set(&v->rv, rv, K);
  wcmi_measure_set(&v->rv_refit, rv_refit, K);
  wcmi_measure_set(&v->worst_critic_clean_mi, clean, K);
  wcmi_measure_set(&v->attack_drop, drop, K);
  const char *why = NULL;
  if (wcmi_fano_applies(cfg->mi, &why)) { /* else NaN: written as null, with the reason in fano_note */
    v->fano_bound = wcmi_fano_bound(v->worst_mi.mean, WCMI_NUM_CLASSES);
    v->fano_bound_refit = wcmi_fano_bound(v->worst_mi_refit.mean, WCMI_NUM_CLASSES);
  }
}

static int vulnerability_config(wcmi_ctx *ctx, const wcmi_task_cfg *cfg, const char *dir, wcmi_estimate_opts *o) {
  char path[1100];
  snprintf(path, sizeof path, "%s/config.json", dir);
  /* As for every run directory: --out does not overwrite an earlier run without --force. */
  if (!cfg->resume_dir && !cfg->force && access(path, F_OK) == 0)
    return wcmi_fail(ctx, WCMI_EINVAL, "%s: the directory holds a run: continue it with --resume %s, or pass --force to "
                     "overwrite it", dir, dir);
  int rc = wcmi_mkdir_p(ctx, dir);
  if (!rc && cfg->resume_dir) rc = load_opts(ctx, dir, o);
  if (!rc && !cfg->resume_dir) {
    rc = save_opts(ctx, dir, o);
    char *json = rc ? NULL : wcmi_task_config_json(cfg, "vulnerability");
    if (!rc && !json) rc = wcmi_fail(ctx, WCMI_ENOMEM, "out of memory");
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (!rc) rc = wcmi_atomic_write(ctx, path, json, strlen(json));
    free(json);
  }
  return rc;
}

int wcmi_task_vulnerability_ex(wcmi_ctx *ctx, const wcmi_task_cfg *cfg, const wcmi_estimate_opts *opts, char **summary) {
  const char *dir = cfg->resume_dir ? cfg->resume_dir : cfg->out_dir;
  if (!dir) return wcmi_fail(ctx, WCMI_EINVAL, "vulnerability: no run directory (--out DIR or --resume DIR)");
  wcmi_estimate_opts o;
  if (opts) o = *opts;
  else wcmi_estimate_opts_default(&o);
  if (!cfg->resume_dir) o.critics = wcmi_estimate_critics(cfg, &o);
  /* Data-parallel: rank 0 writes the run directory (or reads a resumed run's options) and sends the
   * options every rank then runs with. */
  const int root = dist_is_root(ctx);
  int rc = root ? vulnerability_config(ctx, cfg, dir, &o) : WCMI_OK;
  if (!rc) rc = wcmi_dist_bcast(ctx->dist, &o, sizeof o);
  if (rc) return rc;
  const int K = wcmi_estimate_critics(cfg, &o);
  if (K > MAX_CRITICS) return wcmi_fail(ctx, WCMI_EINVAL, "vulnerability: --critics %d is more than %d", K, MAX_CRITICS);
  /* Each critic k (its own seed) estimates both cases, each with its own fresh critic network and
   * run directory: DIR/normal and DIR/worst for critic 0, DIR/critic-k/{normal,worst} for the
   * others. A resumed run continues each from its own checkpoint, or starts it. */
  critic_out *res = wcmi_alloc(ctx, (size_t)(2 * K), sizeof *res); /* res[k] normal, res[K + k] worst */
  if (!res) return ctx->status;
  for (int k = 0; k < K && !rc; k++)
    for (int w = 0; w < 2 && !rc; w++) {
      char sub[1100];
      critic_dir(dir, k, CASES[w], sub, sizeof sub);
      if (cfg->progress && root) fprintf(stderr, "[vulnerability] critic %d/%d, %s case into %s\n", k + 1, K, CASES[w], sub);
      rc = run_critic(ctx, cfg, &o, k, sub, w, &res[w * K + k], NULL);
    }
  if (rc) {
    wcmi_free(res);
    return rc;
  }
  wcmi_run_record v;
  vulnerability_record(cfg, res, K, &v);
  const char *fano_why = NULL;
  const int fano_ok = wcmi_fano_applies(cfg->mi, &fano_why);
  wcmi_jsonw w;
  wcmi_jsonw_init_buffer(&w, 2);
  wcmi_jsonw_begin_object(&w);
  wcmi_jsonw_kv_string(&w, "task", "vulnerability");
  wcmi_jsonw_kv_string(&w, "run_dir", dir);
  wcmi_jsonw_kv_string(&w, "model", cfg->model ? cfg->model : "");
  wcmi_jsonw_kv_string(&w, "dataset", cfg->data);
  wcmi_jsonw_kv_string(&w, "representation", res[0].repr);
  wcmi_jsonw_kv_string(&w, "uncertainty",
                       "X = mean over the critics, X_std = their sample standard deviation (null for one critic), "
                       "X_per_critic = each critic's value; X_sem = standard error of the mean from the held-out "
                       "batches alone");
  wcmi_record_write(&w, &v, WCMI_REC_VULNERABILITY);
  wcmi_jsonw_kv_int(&w, "num_classes", WCMI_NUM_CLASSES);
  if (fano_ok) {
    wcmi_jsonw_kv_string(&w, "fano_estimate", "worst_mi (the mean over the critics), clipped at 0; fano_bound_refit "
                                              "uses worst_mi_refit the same way");
    wcmi_jsonw_kv_string(&w, "fano_note",
                         "upper bound on any downstream classifier's adversarial accuracy: (max(0, worst_mi) + ln 2) / "
                         "ln 10, capped at 1");
  } else {
    wcmi_jsonw_kv_string(&w, "fano_note", fano_why);
  }
  wcmi_jsonw_kv_string(&w, "units", "nats");
  wcmi_jsonw_key(&w, "attack");
  write_attack(&w, cfg);
  wcmi_jsonw_key(&w, "estimator");
  write_estimator(&w, cfg);
  wcmi_jsonw_kv_string(&w, "selection", "Algorithm 2: critic of the epoch with the best training MI estimate; "
                                        "mean of held-out batch estimates");
  if (v.worst_mi.mean < 0)
    wcmi_jsonw_kv_string(&w, "warning", "worst_mi < 0 is no MI: the attack beat the critic; see worst_mi_refit");
  wcmi_jsonw_key(&w, "runs");
  wcmi_jsonw_begin_object(&w);
  for (int c = 0; c < 2; c++) {
    char sub[1100];
    critic_dir(dir, 0, CASES[c], sub, sizeof sub);
    wcmi_jsonw_kv_string(&w, CASES[c], sub);
  }
  wcmi_jsonw_end_object(&w);
  wcmi_jsonw_end_object(&w);
  rc = write_summary(ctx, dir, &w, summary);
  wcmi_jsonw_free(&w);
  if (!rc && root) print_table(cfg, K, res[0].repr, &v, res, fano_ok ? NULL : fano_why);
  wcmi_free(res);
  return rc;
}

int wcmi_task_vulnerability(wcmi_ctx *ctx, const wcmi_task_cfg *cfg, char **summary) {
  return wcmi_task_vulnerability_ex(ctx, cfg, NULL, summary);
}
