/* The shared epoch loop: run directory, metrics.jsonl, atomic checkpoints, bit-identical resume
 * (also from the middle of an epoch after Ctrl-C), NaN/Inf detection and progress. */
#include "train/trainer.h"

#include "dist/dist_train.h"
#include "wcmi/dist.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void run_path(const trainer *t, const char *leaf, char *out, size_t n) {
  snprintf(out, n, "%s/%s", t->run_dir, leaf);
}

int64_t task_num_batches(const wcmi_task_cfg *cfg, int64_t n) {
  int64_t nb = n / cfg->batch_size; /* training drops the last partial batch: BN needs full batches */
  if (cfg->max_batches > 0 && nb > cfg->max_batches) nb = cfg->max_batches;
  return nb;
}

int task_open_data(wcmi_ctx *ctx, const wcmi_task_cfg *cfg, wcmi_dataset *train, wcmi_dataset *test) {
  wcmi_data_options o = {cfg->data, cfg->data_dir, cfg->train_subset, cfg->test_subset, 0, cfg->seed};
  return wcmi_data_open(ctx, &o, train, NULL, test);
}

int task_check_finite(wcmi_ctx *ctx, wcmi_model *m) {
  wcmi_net *nets[4];
  int n = wcmi_model_nets(m, nets);
  for (int k = 0; k < n; k++)
    for (int i = 0; i < wcmi_net_num_params(nets[k]); i++) {
      wcmi_param *p = wcmi_net_param(nets[k], i);
      if (p->kind != WCMI_PARAM_COUNTER && !wcmi_all_finite(p->data, wcmi_shape_numel(&p->shape)))
        return wcmi_fail(ctx, WCMI_ENUMERIC, "parameter %s became NaN/Inf: training diverged (try a lower --lr)", p->name);
    }
  return WCMI_OK;
}

void task_progress(const wcmi_task_cfg *cfg, const char *task, int epoch, int64_t batch, int64_t nb, double loss,
                   const char *extra_name, double extra, double items_per_s, double eta_s) {
  if (!cfg->progress) return;
  /* Plain lines: about ten per epoch. The bar: every batch, rewritten in place. */
  if (cfg->progress == 1 && batch != nb && batch % (nb / 10 > 0 ? nb / 10 : 1) != 0) return;
  fprintf(stderr, "%s[%s] epoch %d/%d batch %lld/%lld loss %.4f %s %.4f %.0f items/s ETA %.0fs%s",
          cfg->progress == 2 ? "\r\033[K" : "", task, epoch + 1, cfg->epochs, (long long)batch, (long long)nb, loss,
          extra_name, extra, items_per_s, eta_s, cfg->progress == 2 ? "" : "\n");
  fflush(stderr);
}

int trainer_init(trainer *t, wcmi_ctx *ctx, const wcmi_task_cfg *cfg, const trainer_ops *ops, void *user) {
  memset(t, 0, sizeof *t);
  t->ctx = ctx;
  t->cfg = *cfg;
  t->ops = ops;
  t->user = user;
  t->best_score = -INFINITY;
  t->best_epoch = -1;
  const char *dir = cfg->resume_dir ? cfg->resume_dir : cfg->out_dir;
  if (!dir) return wcmi_fail(ctx, WCMI_EINVAL, "%s: no run directory (--out DIR or --resume DIR)", ops->task);
  if (snprintf(t->run_dir, sizeof t->run_dir, "%s", dir) >= (int)sizeof t->run_dir)
    return wcmi_fail(ctx, WCMI_EINVAL, "%s: run directory path too long", dir);
  /* Data-parallel: rank 0 alone writes the run directory, and reports progress. */
  const int root = dist_is_root(ctx);
  if (!root) t->cfg.progress = 0;
  int rc = root ? wcmi_mkdir_p(ctx, dir) : WCMI_OK;
  if (rc) return rc;
  if (!cfg->resume_dir && root) {
    char *json = wcmi_task_config_json(cfg, ops->task), path[1100];
    if (!json) return wcmi_fail(ctx, WCMI_ENOMEM, "out of memory");
    run_path(t, "config.json", path, sizeof path);
    rc = wcmi_atomic_write(ctx, path, json, strlen(json));
    free(json);
    if (rc) return rc;
  }
  if ((rc = task_open_data(ctx, cfg, &t->train, &t->test))) return rc;
  if (t->train.n < cfg->batch_size)
    return wcmi_fail(ctx, WCMI_EINVAL, "%s: %lld training samples are fewer than one batch of %d", cfg->data,
                     (long long)t->train.n, cfg->batch_size);
  size_t nd = (size_t)cfg->batch_size * (size_t)wcmi_dataset_sample_size(&t->train);
  t->x = wcmi_alloc(ctx, nd, sizeof(float));
  t->xadv = wcmi_alloc(ctx, nd, sizeof(float));
  t->y = wcmi_alloc(ctx, (size_t)cfg->batch_size, sizeof(int32_t));
  if (!t->x || !t->xadv || !t->y) return ctx->status;
  wcmi_rng_derive(&t->attack_rng, cfg->seed, WCMI_STREAM_ATTACK);
  t->t_start = wcmi_now();
  return WCMI_OK;
}

int trainer_setup(trainer *t, wcmi_net **nets, int n_nets, wcmi_attack **attack) {
  wcmi_adam_cfg a = wcmi_adam_defaults();
  a.lr = (float)t->cfg.lr;
  t->opt = wcmi_adam_new(t->ctx, nets, n_nets, a);
  if (!t->opt) return t->ctx->status;
  for (int k = 0; k < n_nets && k < 4; k++) t->opt_nets[k] = nets[k];
  t->n_opt_nets = n_nets < 4 ? n_nets : 4;
  wcmi_shape in = wcmi_net_in_shape(t->model.encoder);
  *attack = wcmi_attack_new(t->ctx, &t->cfg.attack, t->cfg.batch_size, wcmi_shape_numel(&in));
  return *attack ? WCMI_OK : t->ctx->status;
}

int trainer_optim_step(trainer *t) {
  int rc = dist_sum_grads(t);
  if (rc) return rc;
  wcmi_optim_step(t->opt);
  t->steps_run++;
  return WCMI_OK;
}

void trainer_free(trainer *t) {
  wcmi_free(t->dist_grads);
  wcmi_dataset_free(&t->train);
  wcmi_dataset_free(&t->test);
  wcmi_model_free(&t->model);
  wcmi_optim_free(t->opt);
  wcmi_free(t->x);
  wcmi_free(t->xadv);
  wcmi_free(t->y);
  if (t->metrics) fclose(t->metrics);
  memset(t, 0, sizeof *t);
}

/* ---- checkpoints -------------------------------------------------------------------------- */

/* RNG streams saved with a checkpoint: the attack stream and each net's dropout stream. */
static int rng_params(trainer *t, wcmi_param *out) {
  wcmi_net *nets[4];
  int n = wcmi_model_nets(&t->model, nets), k = 0;
  wcmi_rng *rngs[TRAINER_MAX_RNG];
  rngs[k++] = &t->attack_rng;
  for (int i = 0; i < n; i++) rngs[k++] = wcmi_net_rng(nets[i]);
  for (int i = 0; i < k; i++) {
    memset(&out[i], 0, sizeof out[i]);
    snprintf(out[i].name, sizeof out[i].name, "rng.%d", i);
    out[i].kind = WCMI_PARAM_COUNTER;
    out[i].shape = wcmi_shape1(4);
    out[i].i64 = (int64_t *)rngs[i]->s;
  }
  return k;
}

static int save_checkpoint(trainer *t, const char *leaf, int next_epoch, int64_t next_batch, const double *sums,
                           int64_t done_batches) {
  if (!dist_is_root(t->ctx)) return WCMI_OK; /* data-parallel: every rank holds the same state */
  int n_opt = wcmi_optim_num_state(t->opt);
  wcmi_param rng[TRAINER_MAX_RNG];
  int n_rng = rng_params(t, rng);
  wcmi_param **extra = malloc((size_t)(n_opt + n_rng) * sizeof *extra);
  if (!extra) return wcmi_fail(t->ctx, WCMI_ENOMEM, "out of memory");
  for (int i = 0; i < n_opt; i++) extra[i] = wcmi_optim_state(t->opt, i);
  for (int i = 0; i < n_rng; i++) extra[n_opt + i] = &rng[i];
  char epoch[32], batch[32], best[64], partial[512], path[1100];
  snprintf(epoch, sizeof epoch, "%d", next_epoch);
  snprintf(batch, sizeof batch, "%lld", (long long)next_batch);
  snprintf(best, sizeof best, "%.17g %d", t->best_score, t->best_epoch);
  /* Partial-epoch sums (after Ctrl-C) in full precision, so a resumed epoch reports the same means. */
  int w = snprintf(partial, sizeof partial, "%lld", (long long)done_batches);
  for (int i = 0; i < t->ops->n_sums && w > 0 && (size_t)w < sizeof partial; i++)
    w += snprintf(partial + w, sizeof partial - (size_t)w, " %.17g", sums ? sums[i] : 0.0);
  wcmi_st_kv meta[] = {{"task", t->ops->task}, {"epoch", epoch}, {"batch", batch}, {"best", best}, {"partial", partial}};
  run_path(t, leaf, path, sizeof path);
  int rc = wcmi_model_save(t->ctx, &t->model, path, extra, n_opt + n_rng, meta, 5);
  free(extra);
  return rc;
}

typedef struct resume_point {
  int epoch;
  int64_t batch, done;
  double sums[TRAINER_MAX_SUMS];
} resume_point;

static int load_checkpoint(trainer *t, resume_point *rp) {
  char path[1100];
  run_path(t, "latest.safetensors", path, sizeof path);
  wcmi_st *st = NULL;
  int rc = wcmi_st_open(t->ctx, path, &st);
  if (rc) return rc;
  wcmi_net *nets[4];
  int n = wcmi_model_nets(&t->model, nets);
  for (int i = 0; i < n && !rc; i++) rc = wcmi_net_load(t->ctx, st, nets[i]);
  int n_opt = wcmi_optim_num_state(t->opt);
  wcmi_param rng[TRAINER_MAX_RNG];
  int n_rng = rng_params(t, rng);
  wcmi_param **extra = malloc((size_t)(n_opt + n_rng) * sizeof *extra);
  if (!rc && !extra) rc = wcmi_fail(t->ctx, WCMI_ENOMEM, "out of memory");
  for (int i = 0; !rc && i < n_opt; i++) extra[i] = wcmi_optim_state(t->opt, i);
  for (int i = 0; !rc && i < n_rng; i++) extra[n_opt + i] = &rng[i];
  if (!rc) rc = wcmi_st_load_params(t->ctx, st, extra, n_opt + n_rng, 0);
  free(extra);
  const char *e = wcmi_st_meta(st, "epoch"), *b = wcmi_st_meta(st, "batch"), *best = wcmi_st_meta(st, "best"),
             *partial = wcmi_st_meta(st, "partial");
  if (!rc && (!e || !b || !best || !partial))
    rc = wcmi_fail(t->ctx, WCMI_EFORMAT, "%s: not a training checkpoint (metadata lacks epoch/batch)", path);
  if (!rc) {
    char *end;
    rp->epoch = (int)strtol(e, &end, 10);
    rp->batch = strtoll(b, &end, 10);
    t->best_score = strtod(best, &end);
    t->best_epoch = (int)strtol(end, NULL, 10);
    rp->done = strtoll(partial, &end, 10);
    for (int i = 0; i < t->ops->n_sums; i++) rp->sums[i] = strtod(end, &end);
    if (rp->epoch < 0 || rp->batch < 0 || rp->done < 0)
      rc = wcmi_fail(t->ctx, WCMI_EFORMAT, "%s: negative epoch or batch in metadata", path);
  }
  wcmi_st_close(st);
  return rc;
}

/* Data-parallel: rank 0's model, optimizer and RNG state and resume point to every rank, so all
 * start from the same state however they were initialized or whatever they could read. */
static int bcast_state(trainer *t, resume_point *rp) {
  if (!t->ctx->dist) return WCMI_OK;
  wcmi_net *nets[4];
  int n = wcmi_model_nets(&t->model, nets), n_opt = wcmi_optim_num_state(t->opt), total = n_opt;
  for (int k = 0; k < n; k++) total += wcmi_net_num_params(nets[k]);
  wcmi_param rng[TRAINER_MAX_RNG];
  int n_rng = rng_params(t, rng);
  wcmi_param **all = malloc((size_t)(total + n_rng) * sizeof *all);
  if (!all) return wcmi_fail(t->ctx, WCMI_ENOMEM, "out of memory");
  int m = 0;
  for (int k = 0; k < n; k++)
    for (int i = 0; i < wcmi_net_num_params(nets[k]); i++) all[m++] = wcmi_net_param(nets[k], i);
  for (int i = 0; i < n_opt; i++) all[m++] = wcmi_optim_state(t->opt, i);
  for (int i = 0; i < n_rng; i++) all[m++] = &rng[i];
  int rc = dist_bcast_params(t->ctx, all, m);
  free(all);
  double best[2] = {t->best_score, (double)t->best_epoch};
  if (!rc) rc = wcmi_dist_bcast(t->ctx->dist, rp, sizeof *rp);
  if (!rc) rc = wcmi_dist_bcast(t->ctx->dist, best, sizeof best);
  t->best_score = best[0];
  t->best_epoch = (int)best[1];
  return rc;
}

/* Keeps the metrics lines of epochs before `epoch` (a resumed run rewrites the rest). */
static int trim_metrics(trainer *t, int epoch) {
  char path[1100];
  run_path(t, "metrics.jsonl", path, sizeof path);
  char *text = NULL;
  size_t n = 0;
  if (access(path, F_OK) != 0) return WCMI_OK;
  int rc = wcmi_read_file(t->ctx, path, (size_t)1 << 30, &text, &n);
  if (rc) return rc;
  size_t keep = 0;
  for (size_t pos = 0; pos < n;) {
    char *nl = memchr(text + pos, '\n', n - pos);
    size_t end = nl ? (size_t)(nl - text) + 1 : n;
    const char *ep = strstr(text + pos, "\"epoch\":");
    if (!nl || !ep || ep > text + end || atoi(ep + 8) >= epoch) break;
    keep = end;
    pos = end;
  }
  rc = wcmi_atomic_write(t->ctx, path, text, keep);
  free(text);
  return rc;
}

/* ---- the loop ----------------------------------------------------------------------------- */

static int write_metrics_line(trainer *t, int epoch, const double *means, double seconds, wcmi_jsonw *evalw) {
  if (!t->metrics) return WCMI_OK; /* data-parallel ranks other than 0 */
  wcmi_jsonw w;
  wcmi_jsonw_init_buffer(&w, 0);
  wcmi_jsonw_begin_object(&w);
  wcmi_jsonw_kv_int(&w, "epoch", epoch);
  for (int i = 0; i < t->ops->n_sums; i++) wcmi_jsonw_kv_double(&w, t->ops->sum_names[i], means[i]);
  wcmi_jsonw_kv_double(&w, "lr", wcmi_optim_lr(t->opt));
  wcmi_jsonw_kv_double(&w, "seconds", seconds);
  /* Evaluation results (possibly none) nest under "eval". */
  wcmi_jsonw_key(&w, "eval");
  wcmi_jsonw_raw(&w, wcmi_jsonw_text(evalw));
  wcmi_jsonw_end_object(&w);
  int rc = wcmi_jsonw_finish(t->ctx, &w);
  if (!rc) {
    fprintf(t->metrics, "%s\n", wcmi_jsonw_text(&w));
    if (fflush(t->metrics) || fsync(fileno(t->metrics)))
      rc = wcmi_fail(t->ctx, WCMI_EIO, "%s/metrics.jsonl: write failed", t->run_dir);
  }
  wcmi_jsonw_free(&w);
  return rc;
}

static int open_metrics(trainer *t) {
  char path[1100];
  run_path(t, "metrics.jsonl", path, sizeof path);
  t->metrics = fopen(path, "a");
  return t->metrics ? WCMI_OK : wcmi_fail(t->ctx, WCMI_EIO, "%s: cannot open for append", path);
}

static int finish(trainer *t, char **summary) {
  wcmi_jsonw w;
  wcmi_jsonw_init_buffer(&w, 2);
  wcmi_jsonw_begin_object(&w);
  wcmi_jsonw_kv_string(&w, "task", t->ops->task);
  wcmi_jsonw_kv_string(&w, "run_dir", t->run_dir);
  wcmi_jsonw_kv_string(&w, "dataset", t->cfg.data);
  wcmi_jsonw_kv_int(&w, "epochs", t->cfg.epochs);
  wcmi_jsonw_kv_int(&w, "best_epoch", t->best_epoch);
  wcmi_jsonw_kv_double(&w, "best_score", t->best_score);
  wcmi_jsonw_kv_double(&w, "seconds", wcmi_now() - t->t_start);
  int rc = t->ops->summarize ? t->ops->summarize(t, &w) : WCMI_OK;
  wcmi_jsonw_end_object(&w);
  if (!rc) rc = wcmi_jsonw_finish(t->ctx, &w);
  if (!rc) {
    char path[1100];
    run_path(t, "summary.json", path, sizeof path);
    const char *text = wcmi_jsonw_text(&w);
    rc = dist_is_root(t->ctx) ? wcmi_atomic_write(t->ctx, path, text, strlen(text)) : WCMI_OK;
    if (!rc) *summary = strdup(text);
    if (!rc && !*summary) rc = wcmi_fail(t->ctx, WCMI_ENOMEM, "out of memory");
  }
  wcmi_jsonw_free(&w);
  return rc;
}

int trainer_run(trainer *t, char **summary) {
  const wcmi_task_cfg *c = &t->cfg;
  resume_point rp = {0, 0, 0, {0}};
  int rc;
  const int root = dist_is_root(t->ctx);
  if (c->resume_dir && root) {
    if ((rc = load_checkpoint(t, &rp))) return rc;
    if ((rc = trim_metrics(t, rp.epoch))) return rc;
  }
  if ((rc = bcast_state(t, &rp))) return rc;
  if (root && (rc = open_metrics(t))) return rc;
  wcmi_loader_config lc;
  wcmi_loader_config_default(&lc);
  lc.batch_size = c->batch_size;
  lc.drop_last = 1;
  lc.seed = c->seed;
  lc.augment = !strcmp(c->data, "cifar10") ? WCMI_AUG_CIFAR : 0;
  lc.shard = wcmi_dist_rank(t->ctx->dist); /* data-parallel: this rank's slice of every batch */
  lc.num_shards = wcmi_dist_size(t->ctx->dist);
  wcmi_loader loader;
  if ((rc = wcmi_loader_init(t->ctx, &loader, &t->train, &lc))) return rc;
  const int64_t nb = task_num_batches(c, t->train.n);
  double sums[TRAINER_MAX_SUMS];
  for (int epoch = rp.epoch; epoch < c->epochs && !rc; epoch++) {
    t->epoch = epoch;
    if ((rc = wcmi_loader_start_epoch(t->ctx, &loader, epoch))) break;
    int64_t b0 = epoch == rp.epoch ? rp.batch : 0, done = epoch == rp.epoch ? rp.done : 0;
    for (int i = 0; i < TRAINER_MAX_SUMS; i++) sums[i] = epoch == rp.epoch ? rp.sums[i] : 0.0;
    double t0 = wcmi_now();
    for (int64_t b = b0; b < nb && !rc; b++) {
      int count = 0;
      rc = wcmi_loader_batch(t->ctx, &loader, b, t->x, t->y, &count);
      if (rc) break;
      double vals[TRAINER_MAX_SUMS] = {0};
      dist_count_step(t, 1);
      rc = t->ops->step(t, t->x, t->y, count, vals);
      dist_count_step(t, 0);
      if (rc) {
        if (rc == WCMI_ENUMERIC) {
          char msg[sizeof t->ctx->msg];
          snprintf(msg, sizeof msg, "%s", t->ctx->msg);
          wcmi_fail(t->ctx, rc, "epoch %d batch %lld: %s; stopped, last good checkpoint (if any) kept in %s", epoch + 1,
                    (long long)(b + 1), msg, t->run_dir);
        }
        break;
      }
      if ((rc = dist_mean_vals(t, vals, count))) break;
      for (int i = 0; i < t->ops->n_sums; i++) sums[i] += vals[i];
      done++;
      double el = wcmi_now() - t0, ips = (double)(b + 1 - b0) * c->batch_size / (el > 0 ? el : 1e-9);
      double eta = ((double)(nb - b - 1) + (double)(c->epochs - epoch - 1) * nb) * c->batch_size / (ips > 0 ? ips : 1);
      task_progress(c, t->ops->task, epoch, b + 1, nb, vals[0], t->ops->n_sums > 1 ? t->ops->sum_names[1] : "",
                    t->ops->n_sums > 1 ? vals[1] : 0, ips, eta);
      /* Data-parallel: a Ctrl-C seen by any rank stops every rank after the same batch. */
      if (t->ctx->dist) t->ctx->interrupt = wcmi_dist_any(t->ctx->dist, t->ctx->interrupt);
      if (t->ctx->interrupt) {
        if (c->progress == 2) fputc('\n', stderr);
        int src = save_checkpoint(t, "latest.safetensors", epoch, b + 1, sums, done);
        wcmi_loader_free(&loader);
        return src ? src : wcmi_fail(t->ctx, WCMI_EINTR, "interrupted at epoch %d batch %lld: saved %s/latest.safetensors",
                                     epoch + 1, (long long)(b + 1), t->run_dir);
      }
    }
    if (rc) break;
    if (c->progress == 2) fputc('\n', stderr);
    /* A NaN/Inf anywhere stops the run before it can overwrite the last good checkpoint. */
    if ((rc = task_check_finite(t->ctx, &t->model))) break;
    double means[TRAINER_MAX_SUMS];
    for (int i = 0; i < t->ops->n_sums; i++) means[i] = done ? sums[i] / (double)done : 0.0;
    wcmi_jsonw ev;
    wcmi_jsonw_init_buffer(&ev, 0);
    wcmi_jsonw_begin_object(&ev);
    double score = means[0] == means[0] ? -means[0] : -INFINITY;
    double te = wcmi_now();
    if (t->ops->end_epoch) rc = t->ops->end_epoch(t, epoch, &ev, &score);
    t->phase_time[3] += wcmi_now() - te;
    wcmi_jsonw_end_object(&ev);
    if (!rc) rc = wcmi_jsonw_finish(t->ctx, &ev);
    if (!rc) rc = write_metrics_line(t, epoch, means, wcmi_now() - t0, &ev);
    wcmi_jsonw_free(&ev);
    if (rc) break;
    if (score > t->best_score) {
      t->best_score = score;
      t->best_epoch = epoch;
      if ((rc = save_checkpoint(t, "best.safetensors", epoch + 1, 0, NULL, 0))) break;
    }
    rc = save_checkpoint(t, "latest.safetensors", epoch + 1, 0, NULL, 0);
  }
  wcmi_loader_free(&loader);
  if (rc) return rc;
  if (c->timing && root)
    fprintf(stderr, "[%s] time: attack %.2fs, forward+backward %.2fs, optimizer %.2fs, evaluation %.2fs\n",
            t->ops->task, t->phase_time[0], t->phase_time[1], t->phase_time[2], t->phase_time[3]);
  if (c->timing && root && t->ctx->dist) dist_timing_line(t);
  return finish(t, summary);
}
