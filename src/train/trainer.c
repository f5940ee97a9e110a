/* The shared epoch loop: run directory, metrics.jsonl, atomic checkpoints, bit-identical resume
 * (also from the middle of an epoch after Ctrl-C), NaN/Inf detection and progress. */
#define _DEFAULT_SOURCE /* flock(2) */
#include "train/trainer.h"

#include <dirent.h>
#include "dist/dist_train.h"
#include "wcmi/blas.h"
#include "wcmi/dist.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
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

/* ---- the run directory ---------------------------------------------------------------------- */

/* The files a run writes; --force removes exactly these (and nothing else the directory holds). */
static const char *const RUN_FILES[] = {"config.json", "metrics.jsonl", "latest.safetensors", "best.safetensors",
                                        "summary.json"};
#define RUN_LOCK ".wcmi.lock"

/* One writer per run directory: an exclusive flock on DIR/.wcmi.lock, held until trainer_free (the
 * kernel drops it if the process dies, so a killed run never leaves a stale lock). The file holds
 * the owner's pid for the message a second process prints. */
static int lock_run_dir(trainer *t) {
  char path[1100];
  run_path(t, RUN_LOCK, path, sizeof path);
  int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) return wcmi_fail(t->ctx, WCMI_EIO, "%s: cannot create the lock file: %s", path, strerror(errno));
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    char pid[32] = "?";
    ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
    pid[n > 0 ? n : 1] = '\0';
    pid[strcspn(pid, "\n")] = '\0';
    close(fd);
    return wcmi_fail(t->ctx, WCMI_EIO, "%s: another wcmi process (pid %s) is writing this run directory", t->run_dir, pid);
  }
  char line[32];
  int n = snprintf(line, sizeof line, "%ld\n", (long)getpid());
  if (ftruncate(fd, 0) != 0 || pwrite(fd, line, (size_t)n, 0) != n) {
    close(fd);
    return wcmi_fail(t->ctx, WCMI_EIO, "%s: cannot write the lock file", path);
  }
  t->lock_fd = fd;
  return WCMI_OK;
}

/* 1 if name is "<something>.tmp.<digits>": a temporary of wcmi_atomic_open left by a killed run. */
static int is_stale_temporary(const char *name) {
  const char *tmp = strstr(name, ".tmp.");
  if (!tmp || tmp == name) return 0;
  const char *d = tmp + 5;
  if (!*d) return 0;
  for (; *d; d++)
    if (*d < '0' || *d > '9') return 0;
  return 1;
}

/* --out DIR on a directory that already holds files would mix two runs (or destroy one). */
static int check_run_dir_empty(trainer *t) {
  DIR *d = opendir(t->run_dir);
  if (!d) return wcmi_fail(t->ctx, WCMI_EIO, "%s: cannot list: %s", t->run_dir, strerror(errno));
  const char *found = NULL;
  char first[256];
  struct dirent *e;
  while (!found && (e = readdir(d)) != NULL) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || !strcmp(e->d_name, RUN_LOCK)) continue;
    snprintf(first, sizeof first, "%s", e->d_name);
    found = first;
  }
  closedir(d);
  if (found)
    return wcmi_fail(t->ctx, WCMI_EINVAL, "%s: the directory is not empty (holds %s): continue that run with --resume %s, "
                     "or pass --force to overwrite it", t->run_dir, found, t->run_dir);
  return WCMI_OK;
}

static int clear_run_files(trainer *t) {
  for (size_t i = 0; i < sizeof RUN_FILES / sizeof RUN_FILES[0]; i++) {
    char path[1100];
    run_path(t, RUN_FILES[i], path, sizeof path);
    if (unlink(path) != 0 && errno != ENOENT) return wcmi_fail(t->ctx, WCMI_EIO, "%s: cannot remove: %s", path, strerror(errno));
  }
  return WCMI_OK;
}

/* Under the lock no other process writes here, so every temporary is a leftover of a killed run. */
static int remove_stale_temporaries(trainer *t) {
  DIR *d = opendir(t->run_dir);
  if (!d) return wcmi_fail(t->ctx, WCMI_EIO, "%s: cannot list: %s", t->run_dir, strerror(errno));
  int rc = WCMI_OK;
  struct dirent *e;
  while (!rc && (e = readdir(d)) != NULL) {
    if (!is_stale_temporary(e->d_name)) continue;
    char path[1400];
    snprintf(path, sizeof path, "%s/%s", t->run_dir, e->d_name);
    if (unlink(path) != 0 && errno != ENOENT) rc = wcmi_fail(t->ctx, WCMI_EIO, "%s: cannot remove: %s", path, strerror(errno));
  }
  closedir(d);
  return rc;
}

int trainer_init(trainer *t, wcmi_ctx *ctx, const wcmi_task_cfg *cfg, const trainer_ops *ops, void *user) {
  memset(t, 0, sizeof *t);
  t->ctx = ctx;
  t->cfg = *cfg;
  t->ops = ops;
  t->user = user;
  t->best_score = -INFINITY;
  t->best_epoch = -1;
  t->lock_fd = -1;
  const char *dir = cfg->resume_dir ? cfg->resume_dir : cfg->out_dir;
  if (!dir) return wcmi_fail(ctx, WCMI_EINVAL, "%s: no run directory (--out DIR or --resume DIR)", ops->task);
  if (snprintf(t->run_dir, sizeof t->run_dir, "%s", dir) >= (int)sizeof t->run_dir)
    return wcmi_fail(ctx, WCMI_EINVAL, "%s: run directory path too long", dir);
  /* Data-parallel: rank 0 alone writes (and locks) the run directory, and reports progress. */
  const int root = dist_is_root(ctx);
  if (!root) t->cfg.progress = 0;
  int rc = root ? wcmi_mkdir_p(ctx, dir) : WCMI_OK;
  if (!rc && root) rc = lock_run_dir(t);
  if (!rc && root && !cfg->resume_dir) rc = cfg->force ? clear_run_files(t) : check_run_dir_empty(t);
  if (!rc && root) rc = remove_stale_temporaries(t);
  if (rc) return rc;
  /* The data first: a run that cannot start leaves no config.json behind. */
  if ((rc = task_open_data(ctx, cfg, &t->train, &t->test))) return rc;
  if (t->train.n < cfg->batch_size)
    return wcmi_fail(ctx, WCMI_EINVAL, "%s: %lld training samples are fewer than one batch of %d", cfg->data,
                     (long long)t->train.n, cfg->batch_size);
  if (!cfg->resume_dir && root) {
    char *json = wcmi_task_config_json(cfg, ops->task), path[1100];
    if (!json) return wcmi_fail(ctx, WCMI_ENOMEM, "out of memory");
    run_path(t, "config.json", path, sizeof path);
    rc = wcmi_atomic_write(ctx, path, json, strlen(json));
    free(json);
    if (rc) return rc;
  }
  size_t nd = (size_t)cfg->batch_size * (size_t)wcmi_dataset_sample_size(&t->train);
  t->x = wcmi_alloc(ctx, nd, sizeof(float));
  t->xadv = wcmi_alloc(ctx, nd, sizeof(float));
  t->y = wcmi_alloc(ctx, (size_t)cfg->batch_size, sizeof(int32_t));
  if (!t->x || !t->xadv || !t->y) return ctx->status;
  wcmi_rng_derive(&t->attack_rng, cfg->seed, WCMI_STREAM_ATTACK);
  t->t_start = wcmi_now();
  return WCMI_OK;
}

int trainer_setup(trainer *t, wcmi_net **nets, int n_nets) {
  wcmi_adam_cfg a = wcmi_adam_defaults();
  a.lr = (float)t->cfg.lr;
  t->opt = wcmi_adam_new(t->ctx, nets, n_nets, a);
  if (!t->opt) return t->ctx->status;
  for (int k = 0; k < n_nets && k < 4; k++) t->opt_nets[k] = nets[k];
  t->n_opt_nets = n_nets < 4 ? n_nets : 4;
  wcmi_shape in = wcmi_net_in_shape(t->model.encoder);
  t->attack = wcmi_attack_new(t->ctx, &t->cfg.attack, t->cfg.batch_size, wcmi_shape_numel(&in));
  t->attack_eps = t->cfg.attack.eps;
  t->train_eps = wcmi_eps_schedule(t->cfg.attack.eps, 0, t->cfg.eps_fade_epochs);
  return t->attack ? WCMI_OK : t->ctx->status;
}

/* PGD against obj at eps: the attack's settings change only when eps does (an evaluation at the
 * full eps between two faded-in training epochs). */
static int attack_at(trainer *t, const wcmi_objective *obj, float eps, const float *x, int n, float *out) {
  if (!t->attack) return wcmi_fail(t->ctx, WCMI_EINVAL, "%s: no attack (trainer_setup not called)", t->ops->task);
  if (eps != t->attack_eps) {
    wcmi_pgd_cfg a = t->cfg.attack;
    a.eps = eps;
    int rc = wcmi_attack_set_cfg(t->attack, &a);
    if (rc) return rc;
    t->attack_eps = eps;
  }
  return wcmi_pgd_run(t->attack, obj, x, n, &t->attack_rng, out, NULL);
}

int trainer_attack_batch(trainer *t, const wcmi_objective *obj, const float *x, int n) {
  const double t0 = wcmi_now();
  int rc = attack_at(t, obj, t->train_eps, x, n, t->xadv);
  t->phase_time[0] += wcmi_now() - t0;
  return rc;
}

int trainer_attack_full(trainer *t, const wcmi_objective *obj, const float *x, int n, float *out) {
  return attack_at(t, obj, t->cfg.attack.eps, x, n, out);
}

void trainer_add_attack_time(trainer *t, double seconds) { t->phase_time[0] += seconds; }

int trainer_check_loss(trainer *t, const char *what, double loss) {
  if (isfinite(loss)) return WCMI_OK;
  return wcmi_fail(t->ctx, WCMI_ENUMERIC, "%s: %s is %g at epoch %d: stopping (last good checkpoint kept)", t->ops->task,
                   what, loss, t->epoch + 1);
}

int trainer_optim_step(trainer *t) {
  const double t0 = wcmi_now();
  int rc = dist_sum_grads(t);
  if (rc) return rc;
  wcmi_optim_step(t->opt);
  t->steps_run++;
  t->phase_time[2] += wcmi_now() - t0;
  return WCMI_OK;
}

void trainer_free(trainer *t) {
  wcmi_free(t->dist_grads);
  wcmi_dataset_free(&t->train);
  wcmi_dataset_free(&t->test);
  wcmi_model_free(&t->model);
  wcmi_optim_free(t->opt);
  wcmi_attack_free(t->attack);
  wcmi_free(t->x);
  wcmi_free(t->xadv);
  wcmi_free(t->y);
  if (t->metrics) fclose(t->metrics);
  if (t->lock_fd > 0) close(t->lock_fd); /* releases the run directory */
  memset(t, 0, sizeof *t);
  t->lock_fd = -1;
}

/* ---- checkpoints -------------------------------------------------------------------------- */

/* Seconds of training so far in the whole run (resumes included), probes excluded. */
static double training_seconds(const trainer *t) {
  return t->elapsed_before + (wcmi_now() - t->t_start) - (t->probe ? t->probe->spent : 0.0);
}

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
  const int n_task = t->n_task_state;
  wcmi_param **extra = wcmi_alloc(t->ctx, (size_t)(n_opt + n_rng + n_task + 1), sizeof *extra);
  if (!extra) return t->ctx->status;
  for (int i = 0; i < n_opt; i++) extra[i] = wcmi_optim_state(t->opt, i);
  for (int i = 0; i < n_rng; i++) extra[n_opt + i] = &rng[i];
  for (int i = 0; i < n_task; i++) extra[n_opt + n_rng + i] = &t->task_state[i];
  char epoch[32], batch[32], best[64], partial[512], path[1100], elapsed[64];
  snprintf(epoch, sizeof epoch, "%d", next_epoch);
  snprintf(batch, sizeof batch, "%lld", (long long)next_batch);
  snprintf(best, sizeof best, "%.17g %d", t->best_score, t->best_epoch);
  /* Partial-epoch sums (after Ctrl-C) in full precision, so a resumed epoch reports the same means. */
  int w = snprintf(partial, sizeof partial, "%lld", (long long)done_batches);
  for (int i = 0; i < t->ops->n_sums && w > 0 && (size_t)w < sizeof partial; i++)
    w += snprintf(partial + w, sizeof partial - (size_t)w, " %.17g", sums ? sums[i] : 0.0);
  /* Training seconds of the run so far (probes excluded), so learning curves continue across a
   * resume. */
  snprintf(elapsed, sizeof elapsed, "%.3f", training_seconds(t));
  wcmi_st_kv meta[] = {{"task", t->ops->task}, {"epoch", epoch},     {"batch", batch},
                       {"best", best},         {"partial", partial}, {"elapsed", elapsed}};
  run_path(t, leaf, path, sizeof path);
  int rc = wcmi_model_save(t->ctx, &t->model, path, extra, n_opt + n_rng + n_task, meta, 6);
  wcmi_free(extra);
  return rc;
}

/* Strict decimal integer in [lo, hi] at *p (leading blanks allowed), advancing *p past it. */
static int parse_int_field(const char **p, long long lo, long long hi, long long *out) {
  char *end = NULL;
  errno = 0;
  long long v = strtoll(*p, &end, 10);
  if (errno || end == *p || v < lo || v > hi) return 0;
  *p = end;
  *out = v;
  return 1;
}

static int parse_double_field(const char **p, double *out) {
  char *end = NULL;
  double v = strtod(*p, &end);
  if (end == *p) return 0;
  *p = end;
  *out = v;
  return 1;
}

int trainer_parse_resume(wcmi_ctx *ctx, const char *path, const char *epoch, const char *batch, const char *best,
                         const char *partial, int n_sums, trainer_resume *rp) {
  memset(rp, 0, sizeof *rp);
  if (!epoch || !batch || !best || !partial)
    return wcmi_fail(ctx, WCMI_EFORMAT, "%s: not a training checkpoint (metadata lacks epoch/batch)", path);
  if (n_sums < 0 || n_sums > TRAINER_MAX_SUMS) return wcmi_fail(ctx, WCMI_EINVAL, "%s: %d sums", path, n_sums);
  long long e, b, be, done;
  const char *p = epoch, *q = batch, *r = best, *s = partial;
  int ok = parse_int_field(&p, 0, WCMI_EPOCHS_MAX, &e) && !*p;
  ok = ok && parse_int_field(&q, 0, INT64_MAX, &b) && !*q;
  ok = ok && parse_double_field(&r, &rp->best_score) && parse_int_field(&r, -1, e - 1 < -1 ? -1 : e - 1, &be) && !*r;
  ok = ok && parse_int_field(&s, 0, b, &done);
  for (int i = 0; ok && i < n_sums; i++) ok = parse_double_field(&s, &rp->sums[i]);
  if (ok) ok = !*s;
  if (!ok || rp->best_score != rp->best_score)
    return wcmi_fail(ctx, WCMI_EFORMAT, "%s: checkpoint metadata epoch/batch/best/partial is malformed or out of range",
                     path);
  rp->epoch = (int)e;
  rp->batch = b;
  rp->best_epoch = (int)be;
  rp->done = done;
  return WCMI_OK;
}

static int load_checkpoint(trainer *t, trainer_resume *rp) {
  char path[1100];
  run_path(t, "latest.safetensors", path, sizeof path);
  if (access(path, F_OK) != 0 && errno == ENOENT)
    return wcmi_fail(t->ctx, WCMI_EINVAL, "%s: no checkpoint yet (the run stopped before its first one); start it again "
                     "with --out %s --force", t->run_dir, t->run_dir);
  wcmi_st *st = NULL;
  int rc = wcmi_st_open(t->ctx, path, &st);
  if (rc) return rc;
  const char *task = wcmi_st_meta(st, "task");
  if (!task || strcmp(task, t->ops->task))
    rc = wcmi_fail(t->ctx, WCMI_EFORMAT, "%s: a checkpoint of '%s', not of %s", path, task ? task : "(no task)", t->ops->task);
  if (!rc)
    rc = trainer_parse_resume(t->ctx, path, wcmi_st_meta(st, "epoch"), wcmi_st_meta(st, "batch"), wcmi_st_meta(st, "best"),
                              wcmi_st_meta(st, "partial"), t->ops->n_sums, rp);
  wcmi_net *nets[4];
  int n = wcmi_model_nets(&t->model, nets);
  for (int i = 0; i < n && !rc; i++) rc = wcmi_net_load(t->ctx, st, nets[i]);
  int n_opt = wcmi_optim_num_state(t->opt);
  wcmi_param rng[TRAINER_MAX_RNG];
  int n_rng = rng_params(t, rng);
  const int n_task = t->n_task_state;
  wcmi_param **extra = rc ? NULL : wcmi_alloc(t->ctx, (size_t)(n_opt + n_rng + n_task + 1), sizeof *extra);
  if (!rc && !extra) rc = t->ctx->status;
  for (int i = 0; !rc && i < n_opt; i++) extra[i] = wcmi_optim_state(t->opt, i);
  for (int i = 0; !rc && i < n_rng; i++) extra[n_opt + i] = &rng[i];
  for (int i = 0; !rc && i < n_task; i++) extra[n_opt + n_rng + i] = &t->task_state[i];
  if (!rc) rc = wcmi_st_load_params(t->ctx, st, extra, n_opt + n_rng + n_task, 0);
  wcmi_free(extra);
  if (!rc) {
    t->best_score = rp->best_score;
    t->best_epoch = rp->best_epoch;
    /* Checkpoints written before "elapsed" existed resume with the clock at 0. */
    const char *el = wcmi_st_meta(st, "elapsed");
    char *end = NULL;
    double v = el ? strtod(el, &end) : 0.0;
    t->elapsed_before = el && end && *end == '\0' && v >= 0 && v < 1e9 ? v : 0.0;
  }
  wcmi_st_close(st);
  return rc;
}

/* Data-parallel: rank 0's model, optimizer and RNG state and resume point to every rank, so all
 * start from the same state however they were initialized or whatever they could read. */
static int bcast_state(trainer *t, trainer_resume *rp) {
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
/* The integer after `key` ("\"epoch\":") within line[0..len), or -1 when the line has none. */
static long long line_int(const char *line, size_t len, const char *key) {
  const size_t k = strlen(key);
  for (size_t i = 0; i + k <= len; i++)
    if (!memcmp(line + i, key, k)) return atoll(line + i + k);
  return -1;
}

size_t trainer_metrics_keep(const char *text, size_t n, int epoch, int64_t batch) {
  size_t keep = 0;
  for (size_t pos = 0; pos < n;) {
    const char *nl = memchr(text + pos, '\n', n - pos);
    if (!nl) break; /* a torn last line (killed mid-write) goes */
    const size_t end = (size_t)(nl - text) + 1, len = end - pos;
    const long long e = line_int(text + pos, len, "\"epoch\":"), b = line_int(text + pos, len, "\"batch\":");
    /* An epoch line before the resumed epoch stays; so does a probe line ("batch") taken in the
     * resumed epoch at or before the checkpoint's batch: its point of the curve is not taken again. */
    const int kept = e >= 0 && (e < epoch || (e == epoch && b >= 0 && b <= batch));
    if (!kept) break;
    keep = end;
    pos = end;
  }
  return keep;
}

static int trim_metrics(trainer *t, int epoch, int64_t batch) {
  char path[1100];
  run_path(t, "metrics.jsonl", path, sizeof path);
  char *text = NULL;
  size_t n = 0;
  if (access(path, F_OK) != 0) return WCMI_OK;
  int rc = wcmi_read_file(t->ctx, path, (size_t)1 << 30, &text, &n);
  if (rc) return rc;
  rc = wcmi_atomic_write(t->ctx, path, text, trainer_metrics_keep(text, n, epoch, batch));
  free(text);
  return rc;
}

/* ---- the loop ----------------------------------------------------------------------------- */
static int open_metrics(trainer *t);

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
  t->metrics = wcmi_fopen_regular(t->ctx, path, 1, NULL);
  return t->metrics ? WCMI_OK : t->ctx->status;
}

/* A probe when one is due: one metrics.jsonl line {"epoch", "batch", "batches_per_epoch",
 * "train_seconds", "probe": {...}} ("epoch" first, so a resume trims probe lines with the epochs they
 * belong to; "batches_per_epoch" puts the probe on an epochs axis). */
static int maybe_probe(trainer *t, int epoch, int64_t batch, int64_t nb) {
  if (!t->probe) return WCMI_OK;
  const double now = training_seconds(t);
  if (now < t->probe->next_at) return WCMI_OK;
  wcmi_jsonw w;
  wcmi_jsonw_init_buffer(&w, 0);
  wcmi_jsonw_begin_object(&w);
  wcmi_jsonw_kv_int(&w, "epoch", epoch);
  wcmi_jsonw_kv_int(&w, "batch", batch);
  wcmi_jsonw_kv_int(&w, "batches_per_epoch", nb);
  wcmi_jsonw_kv_double(&w, "train_seconds", now);
  wcmi_jsonw_key(&w, "probe");
  wcmi_jsonw_begin_object(&w);
  int rc = probe_run(t->ctx, t->probe, &t->model, &t->cfg, &w);
  /* Skip the probes that fell due while this one ran (a long probe must not run back to back). */
  probe_skip_to(t->probe, now);
  wcmi_jsonw_end_object(&w);
  wcmi_jsonw_end_object(&w);
  if (!rc) rc = wcmi_jsonw_finish(t->ctx, &w);
  if (!rc) {
    fprintf(t->metrics, "%s\n", wcmi_jsonw_text(&w));
    if (fflush(t->metrics) || fsync(fileno(t->metrics)))
      rc = wcmi_fail(t->ctx, WCMI_EIO, "%s/metrics.jsonl: write failed", t->run_dir);
    if (t->cfg.progress) fprintf(stderr, "[%s] probe at %.0fs: %s\n", t->ops->task, now, wcmi_jsonw_text(&w));
  }
  wcmi_jsonw_free(&w);
  return rc;
}

/* No surprise budgets: once the second batch of this process is measured (the first pays for
 * warm-up), say how long the rest of the run's training will take. Printed with --progress or
 * when stderr is a terminal. */
static void announce_estimate(trainer *t, int epoch, int64_t b, int64_t b0, int64_t nb, double batch_s) {
  const wcmi_task_cfg *c = &t->cfg;
  if (t->announced || epoch != t->first_epoch || b != b0 + 1) return;
  t->announced = 1;
  if (!c->progress && !isatty(2)) return;
  const double left = (double)(nb - b - 1) + (double)(c->epochs - epoch - 1) * (double)nb;
  const double s = left * batch_s;
  fprintf(stderr, "[%s] estimated training time: %.0f s (%.1f h) for %.0f more batches at %.3f s per batch, measured; "
                  "end-of-epoch evaluation not included\n", t->ops->task, s, s / 3600.0, left, batch_s);
  const char *better = wcmi_blas_better_coretype();
  if (better) {
    const char *set = getenv("OPENBLAS_CORETYPE");
    fprintf(stderr, "[%s] note: OpenBLAS runs its AVX2 kernels (%s%s) on this AVX-512 CPU; OPENBLAS_CORETYPE=%s, or "
                    "unset, makes its GEMMs up to twice as fast\n", t->ops->task, set ? "OPENBLAS_CORETYPE=" : "its choice: ",
            set ? set : "an older OpenBLAS", better);
  }
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
  if (t->probe) {
    wcmi_jsonw_kv_int(&w, "probes", t->probe->count);
    wcmi_jsonw_kv_double(&w, "probe_seconds", t->probe->spent);
  }
  wcmi_record_clear(&t->record);
  int rc = t->ops->summarize ? t->ops->summarize(t, &w) : WCMI_OK;
  if (!rc) wcmi_record_write(&w, &t->record, t->ops->record_files);
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

/* Entry points for tasks that run their own loop (the cached head fit) but keep the run-directory
 * format: the same checkpoints, metrics lines and summary as trainer_run writes. */
int trainer_save_checkpoint(trainer *t, const char *leaf, int next_epoch) {
  return save_checkpoint(t, leaf, next_epoch, 0, NULL, 0);
}

int trainer_write_epoch(trainer *t, int epoch, const double *means, double seconds, wcmi_jsonw *evalw) {
  if (!dist_is_root(t->ctx)) return WCMI_OK; /* data-parallel: rank 0 writes the run directory */
  int rc = t->metrics ? WCMI_OK : open_metrics(t);
  return rc ? rc : write_metrics_line(t, epoch, means, seconds, evalw);
}

int trainer_finish(trainer *t, char **summary) { return finish(t, summary); }

int trainer_run(trainer *t, char **summary) {
  const wcmi_task_cfg *c = &t->cfg;
  trainer_resume rp;
  memset(&rp, 0, sizeof rp);
  int rc;
  const int root = dist_is_root(t->ctx);
  if (c->resume_dir && root) {
    if ((rc = load_checkpoint(t, &rp))) return rc;
    if ((rc = trim_metrics(t, rp.epoch, rp.batch))) return rc;
  }
  if ((rc = bcast_state(t, &rp))) return rc;
  if (root && (rc = open_metrics(t))) return rc;
  /* Probes fall due on a grid of every_s seconds of training, continued across a resume. */
  if (t->probe && t->elapsed_before > 0) probe_skip_to(t->probe, t->elapsed_before);
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
  if (rp.batch > nb) {
    wcmi_loader_free(&loader);
    return wcmi_fail(t->ctx, WCMI_EFORMAT, "%s/latest.safetensors: batch %lld is beyond the %lld batches of an epoch",
                     t->run_dir, (long long)rp.batch, (long long)nb);
  }
  double sums[TRAINER_MAX_SUMS];
  t->first_epoch = rp.epoch;
  for (int epoch = rp.epoch; epoch < c->epochs && !rc; epoch++) {
    t->epoch = epoch;
    t->train_eps = wcmi_eps_schedule(c->attack.eps, epoch, c->eps_fade_epochs); /* the fade, once per epoch */
    if ((rc = wcmi_loader_start_epoch(t->ctx, &loader, epoch))) break;
    int64_t b0 = epoch == rp.epoch ? rp.batch : 0, done = epoch == rp.epoch ? rp.done : 0;
    for (int i = 0; i < TRAINER_MAX_SUMS; i++) sums[i] = epoch == rp.epoch ? rp.sums[i] : 0.0;
    double t0 = wcmi_now();
    for (int64_t b = b0; b < nb && !rc; b++) {
      if ((rc = maybe_probe(t, epoch, b, nb))) {
        if (rc != WCMI_EINTR) break;
        /* Ctrl-C during a probe: nothing of batch b has run yet, so the checkpoint resumes at b. */
        wcmi_loader_free(&loader);
        int src = save_checkpoint(t, "latest.safetensors", epoch, b, sums, done);
        return src ? src : wcmi_fail(t->ctx, WCMI_EINTR, "interrupted during a probe at epoch %d batch %lld: saved "
                                     "%s/latest.safetensors", epoch + 1, (long long)b, t->run_dir);
      }
      if (c->lr_schedule != WCMI_LR_CONSTANT) /* per step: a pure function of (epoch, batch), so resume is exact */
        wcmi_optim_set_lr(t->opt, wcmi_lr_at((wcmi_lr_schedule)c->lr_schedule, (float)c->lr, (int64_t)epoch * nb + b,
                                             (int64_t)llround(c->warmup_epochs * (double)nb), (int64_t)c->epochs * nb));
      const double tb = wcmi_now();
      int count = 0;
      rc = wcmi_loader_batch(t->ctx, &loader, b, t->x, t->y, &count);
      if (rc) break;
      double vals[TRAINER_MAX_SUMS] = {0};
      dist_count_step(t, 1);
      /* The step's time less what the trainer timed inside it (attack, optimizer) is its forward
       * and backward. */
      const double ts = wcmi_now(), attack_before = t->phase_time[0], optim_before = t->phase_time[2];
      rc = t->ops->step(t, t->x, t->y, count, vals);
      t->phase_time[1] += (wcmi_now() - ts) - (t->phase_time[0] - attack_before) - (t->phase_time[2] - optim_before);
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
      announce_estimate(t, epoch, b, b0, nb, wcmi_now() - tb);
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
    /* Ctrl-C during the evaluation: the epoch's training is kept in a checkpoint that resumes at
     * its end (batch nb), with the attack stream as it was before the evaluation drew from it. */
    const wcmi_rng attack_rng_before = t->attack_rng;
    if (t->ops->end_epoch) rc = t->ops->end_epoch(t, epoch, &ev, &score);
    t->phase_time[3] += wcmi_now() - te;
    if (rc == WCMI_EINTR) {
      wcmi_jsonw_free(&ev);
      t->attack_rng = attack_rng_before;
      wcmi_loader_free(&loader);
      int src = save_checkpoint(t, "latest.safetensors", epoch, nb, sums, done);
      return src ? src : wcmi_fail(t->ctx, WCMI_EINTR, "interrupted during the evaluation of epoch %d: saved %s/latest.safetensors",
                                   epoch + 1, t->run_dir);
    }
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
