/* wcmi reproduce: every row of one dataset's table of PAPER.md section 7 as a list of stages, each
 * an ordinary task (train-encoder, train-classifier, train-model, eval, vulnerability) with its own
 * run directory under out_dir, then one table beside the published numbers (docs/reproduce.md).
 *
 * Resuming: each stage's identity (its task configuration, with upstream models named by stage,
 * plus the identity of those upstream stages) is written to out_dir/.stages/NAME.key before the
 * stage starts. On a rerun a stage whose key matches and whose result file exists is skipped; one
 * whose key matches but that did not finish continues through the task's own --resume from its
 * latest checkpoint (bit-identical to an uninterrupted run), or restarts when it saved none. A
 * stage directory with another key is refused unless `force`, which redoes it (and so every stage
 * downstream of it, whose keys change with it). Measured seconds per batch of each stage kind,
 * kept in out_dir/.stages/NAME.time, give the whole table's ETA. */
#include "wcmi/blas.h"
#include "wcmi/dist.h"
#include "wcmi/io.h"
#include "wcmi/reproduce.h"
#include "wcmi/run_record.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_STAGES 48
#define MAX_ROWS 24
#define PATH_N 1200

typedef enum { ST_ENCODER, ST_HEAD, ST_MODEL, ST_EVAL, ST_VULN } stage_kind;

typedef struct stage {
  char name[64];         /* directory under out_dir */
  stage_kind kind;
  char rate[24];         /* stages of one rate class cost about the same per batch */
  wcmi_task_cfg cfg;
  int upstream;          /* the stage whose model file this one reads, or -1 */
  const char *leaf;      /* which file of this stage's directory downstream stages read */
  char dir[PATH_N], model_in[PATH_N];
  double units;          /* batches this stage runs (the ETA's unit) */
  uint64_t key_hash;
  char *key;
  double seconds, timed_units; /* measured (0 when not yet) */
  int finished;
  int critics; /* a vulnerability stage: critics per case (part of its key) */
} stage;

/* One line of the table: a head (or Baseline-H) on an encoder, with its evaluation. */
typedef struct table_row {
  const char *encoder, *training, *head; /* encoder: pixels | dim | worst-mi | supervised */
  int eval_stage;
  double nat, adv, strong;       /* fractions: natural, the paper's PGD, worst case of the strong attack */
  double paper_nat, paper_adv;   /* percent, NaN where the paper has no number */
} table_row;

typedef struct mi_row {
  const char *encoder;
  int stage;
  wcmi_run_record rec; /* the vulnerability stage's results (MI, RV, their spread over critics, Fano) */
} mi_row;

typedef struct plan {
  wcmi_reproduce_cfg c; /* budgets resolved from the profile */
  wcmi_task_cfg base;
  stage st[MAX_STAGES];
  int n;
  table_row rows[MAX_ROWS];
  int n_rows;
  mi_row mi[2];
  wcmi_paper_results paper;
} plan;

/* ---- budgets ------------------------------------------------------------------------------- */

void wcmi_reproduce_defaults(wcmi_reproduce_cfg *c) {
  memset(c, 0, sizeof *c);
  c->dataset = "fashion-mnist";
  c->profile = "quick";
  c->out_dir = "runs/reproduce";
  c->train_subset = c->test_subset = -1;
  c->encoder_epochs = c->head_epochs = c->robust_head_epochs = c->model_epochs = c->mi_epochs = -1;
  c->dim_epochs = c->critics = -1;
  c->hsize = c->batch_size = c->robust_train_steps = -1;
  c->lr = c->head_lr = -1;
  c->monitor_batches = c->eval_batches = -1;
  c->progress = 1;
}

/* The stage budgets. quick: the whole Fashion-MNIST table in <= 30 minutes on 2 cores
 * (docs/reproduce.md has the measured costs behind these numbers). fast: the full splits and the
 * paper's evaluation, with the encoder recipe of the fast profile (wcmi_task_defaults) and heads,
 * Baseline-H and critics on budgets the learning curves showed enough (EXPERIMENTS.md section 4).
 * paper: the paper's 300 epochs everywhere. */
static int resolve_budget(wcmi_ctx *ctx, const wcmi_reproduce_cfg *in, plan *p) {
  wcmi_reproduce_cfg *c = &p->c;
  *c = *in;
  if (!c->dataset || !c->out_dir) return wcmi_fail(ctx, WCMI_EINVAL, "reproduce: no dataset or output directory");
  if (!c->profile) c->profile = "quick";
  int rc = wcmi_task_defaults(ctx, &p->base, c->dataset, c->profile);
  if (rc) return rc;
  const int quick = !strcmp(c->profile, "quick"), fast = !strcmp(c->profile, "fast");
  const int paper_epochs = p->base.epochs; /* fast: its own encoder epochs */
#define DEFAULT(field, q, f, paper) \
  if (c->field < 0) c->field = quick ? (q) : fast ? (f) : (paper);
  DEFAULT(train_subset, p->base.train_subset, p->base.train_subset, p->base.train_subset);
  DEFAULT(test_subset, p->base.test_subset, p->base.test_subset, p->base.test_subset);
  DEFAULT(encoder_epochs, 4, paper_epochs, paper_epochs);
  DEFAULT(head_epochs, 10, 10, paper_epochs);
  DEFAULT(robust_head_epochs, 2, WCMI_FAST_ROBUST_HEAD_EPOCHS, paper_epochs);
  DEFAULT(model_epochs, 3, 10, paper_epochs);
  DEFAULT(dim_epochs, 3 * c->encoder_epochs, c->encoder_epochs, c->encoder_epochs);
  DEFAULT(mi_epochs, 2, WCMI_QUICK_ESTIMATE_EPOCHS, paper_epochs);
  DEFAULT(critics, 2, 2, 1);
  /* Robust heads and Baseline-H dominate the quick table's training time, nearly all of it in their
   * training attack: 5 steps of twice the paper's step cover the same distance at half the cost. */
  DEFAULT(robust_train_steps, p->base.attack.steps < 5 ? p->base.attack.steps : 5,
          p->base.attack.steps < WCMI_FAST_ROBUST_STEPS ? p->base.attack.steps : WCMI_FAST_ROBUST_STEPS,
          p->base.attack.steps);
  DEFAULT(hsize, p->base.hsize, p->base.hsize, p->base.hsize);
  DEFAULT(batch_size, p->base.batch_size, p->base.batch_size, p->base.batch_size);
  DEFAULT(monitor_batches, 2, WCMI_FAST_MONITOR_BATCHES, 0);
  DEFAULT(eval_batches, 0, 0, 0);
#undef DEFAULT
  if (!(c->lr > 0)) c->lr = p->base.lr;
  if (!(c->head_lr > 0)) c->head_lr = quick || fast ? WCMI_FAST_HEAD_LR : p->base.lr;
  if (c->encoder_epochs < 1 || c->head_epochs < 1 || c->robust_head_epochs < 1 || c->model_epochs < 1 ||
      c->mi_epochs < 1 || c->dim_epochs < 1 || c->critics < 1 || c->critics > 100 || c->hsize < 1 || c->batch_size < 2 || c->batch_size > 65536 || c->robust_train_steps < 1 ||
      c->robust_train_steps > 1000)
    return wcmi_fail(ctx, WCMI_EINVAL, "every stage needs >= 1 epoch, an MI critic width >= 1, 1 to 100 critics, a "
                                       "batch size in [2, 65536] and robust training steps in [1, 1000]");
  p->base.data_dir = c->data_dir;
  p->base.train_subset = c->train_subset;
  p->base.test_subset = c->test_subset;
  p->base.hsize = c->hsize;
  p->base.batch_size = c->batch_size;
  p->base.seed = c->seed;
  p->base.precision = c->precision;
  p->base.progress = c->task_progress;
  p->base.max_batches = c->max_batches;
  return WCMI_OK;
}

/* ---- the plan ------------------------------------------------------------------------------ */

static const char *task_name(const stage *s) {
  switch (s->kind) {
  case ST_ENCODER: return "train-encoder";
  case ST_HEAD: return "train-classifier";
  case ST_MODEL: return "train-model";
  case ST_EVAL: return "eval";
  default: return "vulnerability";
  }
}

/* Published split sizes, for the ETA only (a subset caps them). */
static int64_t split_size(const char *dataset, int train) {
  if (!strcmp(dataset, "cifar10")) return train ? 50000 : 10000;
  if (!strcmp(dataset, "svhn")) return train ? 73257 : 26032;
  return train ? 60000 : 10000;
}

static double stage_units(const stage *s) {
  const wcmi_task_cfg *c = &s->cfg;
  if (s->kind == ST_EVAL) {
    int64_t n = split_size(c->data, 0);
    if (c->test_subset > 0 && c->test_subset < n) n = c->test_subset;
    int64_t nb = (n + c->batch_size - 1) / c->batch_size;
    if (c->eval_batches > 0 && nb > c->eval_batches) nb = c->eval_batches;
    return (double)nb;
  }
  int64_t n = split_size(c->data, 1);
  if (c->train_subset > 0 && c->train_subset < n) n = c->train_subset;
  int64_t nb = n / c->batch_size;
  if (c->max_batches > 0 && nb > c->max_batches) nb = c->max_batches;
  return (double)nb * c->epochs;
}

static stage *add_stage(wcmi_ctx *ctx, plan *p, const char *name, stage_kind kind, const char *rate, int upstream) {
  if (p->n >= MAX_STAGES) {
    wcmi_fail(ctx, WCMI_EINVAL, "reproduce: too many stages");
    return NULL;
  }
  stage *s = &p->st[p->n++];
  memset(s, 0, sizeof *s);
  snprintf(s->name, sizeof s->name, "%.63s", name);
  snprintf(s->rate, sizeof s->rate, "%.23s", rate);
  s->kind = kind;
  s->cfg = p->base;
  s->upstream = upstream;
  s->leaf = "latest.safetensors";
  if (snprintf(s->dir, sizeof s->dir, "%s/%s", p->c.out_dir, name) >= (int)sizeof s->dir) {
    wcmi_fail(ctx, WCMI_EINVAL, "%s: output path too long", p->c.out_dir);
    return NULL;
  }
  s->cfg.out_dir = s->dir;
  if (upstream >= 0) {
    const stage *u = &p->st[upstream];
    size_t a = strlen(u->dir), b = strlen(u->leaf);
    if (a + b + 2 > sizeof s->model_in) {
      wcmi_fail(ctx, WCMI_EINVAL, "%s: output path too long", p->c.out_dir);
      return NULL;
    }
    memcpy(s->model_in, u->dir, a); /* dir/leaf (both members of p: snprintf may not read them) */
    s->model_in[a] = '/';
    memcpy(s->model_in + a + 1, u->leaf, b + 1);
    s->cfg.model = s->model_in;
  }
  return s;
}

/* The final evaluation of a model stage: the paper's PGD and the strong attack in one pass (the
 * strong set starts with the configured PGD, which is the paper's protocol). */
static int add_eval(wcmi_ctx *ctx, plan *p, int model_stage, const char *enc, const char *training,
                    const char *head) {
  char name[80];
  snprintf(name, sizeof name, "eval-%.58s", p->st[model_stage].name);
  stage *e = add_stage(ctx, p, name, ST_EVAL, !strcmp(enc, "pixels") ? "eval-pixels" : "eval", model_stage);
  if (!e) return ctx->status;
  e->cfg.eval_attack = WCMI_EVAL_STRONG;
  e->cfg.eval_batches = p->c.eval_batches;
  if (p->n_rows >= MAX_ROWS) return wcmi_fail(ctx, WCMI_EINVAL, "reproduce: too many rows");
  table_row *r = &p->rows[p->n_rows++];
  memset(r, 0, sizeof *r);
  r->encoder = enc;
  r->training = training;
  r->head = head;
  r->eval_stage = p->n - 1;
  r->nat = r->adv = r->strong = NAN;
  r->paper_nat = wcmi_paper_results_get(&p->paper, p->c.dataset, enc, head, training, "nat");
  r->paper_adv = wcmi_paper_results_get(&p->paper, p->c.dataset, enc, head, training, "adv");
  return WCMI_OK;
}

static const wcmi_head_kind HEADS[2] = {WCMI_HEAD_LINEAR, WCMI_HEAD_MLP};

/* The step of the robust training attack: robust_train_steps steps travel as far as the paper's
 * attack (steps x step). */
static float robust_train_step(const plan *p) {
  const wcmi_pgd_cfg *a = &p->base.attack;
  return a->step * (float)a->steps / (float)p->c.robust_train_steps;
}

/* The training attack of a robust head or Baseline-H. Evaluations use p->base's attack. */
static void robust_training_attack(const plan *p, wcmi_task_cfg *c) {
  if (p->c.robust_train_steps == p->base.attack.steps) return;
  c->attack.steps = p->c.robust_train_steps;
  c->attack.step = robust_train_step(p);
}

/* Heads on a frozen encoder (train-classifier): standard and robust, linear and MLP. */
static int add_heads(wcmi_ctx *ctx, plan *p, const char *enc, int enc_stage, const char *training) {
  const int robust = !strcmp(training, "robust"), early = !strcmp(training, "early-stopped");
  for (int h = 0; h < 2; h++) {
    char name[64];
    snprintf(name, sizeof name, "%s-%s-%s", enc, wcmi_head_name(HEADS[h]), training);
    stage *s = add_stage(ctx, p, name, ST_HEAD, robust ? "head-robust" : "head-standard", enc_stage);
    if (!s) return ctx->status;
    s->cfg.head = HEADS[h];
    s->cfg.robust = robust;
    if (robust) robust_training_attack(p, &s->cfg);
    s->cfg.epochs = robust ? p->c.robust_head_epochs : p->c.head_epochs;
    s->cfg.lr = p->c.head_lr;
    s->cfg.eval_batches = p->c.monitor_batches;
    /* A standard head on a frozen encoder is fitted on cached representations (docs/head-fit.md):
     * 100 epochs cost seconds, so the quick and fast profiles give it the epochs it needs to converge. */
    if (!robust && !early && strcmp(p->c.profile, "paper") && s->cfg.epochs < 100) s->cfg.epochs = 100;
    /* The paper's early-stopped row: a standard head kept at the epoch of its best PGD accuracy,
     * which needs PGD after every epoch: the online fit. */
    if (early) s->cfg.select = WCMI_SELECT_ADV, s->leaf = "best.safetensors", s->cfg.head_fit = WCMI_HEAD_FIT_ONLINE;
    int rc = add_eval(ctx, p, p->n - 1, enc, training, wcmi_head_name(HEADS[h]));
    if (rc) return rc;
  }
  return WCMI_OK;
}

/* Models trained end to end (train-model): Baseline-H, or heads on raw pixels (encoder "pixels"). */
static int add_models(wcmi_ctx *ctx, plan *p, const char *enc, const char *training) {
  const int robust = !strcmp(training, "robust"), pixels = !strcmp(enc, "pixels");
  for (int h = 0; h < 2; h++) {
    char name[64], rate[24];
    snprintf(name, sizeof name, "%s-%s-%s", enc, wcmi_head_name(HEADS[h]), training);
    snprintf(rate, sizeof rate, "%s-%s", pixels ? "pixels" : "model", training);
    stage *s = add_stage(ctx, p, name, ST_MODEL, rate, -1);
    if (!s) return ctx->status;
    s->cfg.head = HEADS[h];
    s->cfg.robust = robust;
    if (robust) robust_training_attack(p, &s->cfg);
    s->cfg.encoder = pixels ? WCMI_ENCODER_PIXELS : WCMI_ENCODER_BASIC;
    s->cfg.hsize = 0;
    /* A head on pixels is a head: the heads' budget. Baseline-H trains the encoder too. */
    s->cfg.epochs = pixels ? (robust ? p->c.robust_head_epochs : p->c.head_epochs) : p->c.model_epochs;
    s->cfg.lr = pixels ? p->c.head_lr : p->c.lr;
    s->cfg.eval_batches = p->c.monitor_batches;
    int rc = add_eval(ctx, p, p->n - 1, enc, training, wcmi_head_name(HEADS[h]));
    if (rc) return rc;
  }
  return WCMI_OK;
}

static int add_encoder(wcmi_ctx *ctx, plan *p, int worst) {
  stage *s = add_stage(ctx, p, worst ? "encoder-worst-mi" : "encoder-dim", ST_ENCODER,
                       worst ? "encoder-worst" : "encoder-normal", -1);
  if (!s) return ctx->status;
  s->cfg.worst = worst;
  if (worst) wcmi_profile_training_attack(p->c.profile, WCMI_TRAIN_ATTACK_MI, &s->cfg.attack);
  s->cfg.epochs = worst ? p->c.encoder_epochs : p->c.dim_epochs;
  s->cfg.lr = p->c.lr;
  s->cfg.eval_batches = p->c.monitor_batches;
  return WCMI_OK;
}

static int add_vulnerability(wcmi_ctx *ctx, plan *p, int k, const char *enc, int enc_stage) {
  char name[64];
  snprintf(name, sizeof name, "vulnerability-%s", enc);
  stage *s = add_stage(ctx, p, name, ST_VULN, "vulnerability", enc_stage);
  if (!s) return ctx->status;
  s->cfg.epochs = p->c.mi_epochs;
  s->cfg.lr = p->c.lr;
  s->critics = p->c.critics;
  /* The quick estimation budget measured for RV's stability (EXPERIMENTS.md, issue 13): critics 64
   * wide, 3 of them (estimate-mi's quick default), 2 epochs; a 256-wide critic is undertrained in
   * that many steps and its estimate moves by up to 0.7 nats with the seed. */
  if (strcmp(p->c.profile, "paper") && s->cfg.hsize > WCMI_QUICK_ESTIMATE_HSIZE)
    s->cfg.hsize = WCMI_QUICK_ESTIMATE_HSIZE;
  p->mi[k].encoder = enc;
  p->mi[k].stage = p->n - 1;
  wcmi_record_clear(&p->mi[k].rec);
  return WCMI_OK;
}

/* Stage order: the encoders, then every model with its evaluation right after it (so each kind of
 * stage is timed early for the ETA), the early-stopped row where the paper has one, Baseline-H, and
 * the encoders' MI last. Rows follow the paper's table. */
static int build_plan(wcmi_ctx *ctx, plan *p) {
  int rc = add_encoder(ctx, p, 0);
  if (!rc) rc = add_encoder(ctx, p, 1);
  const int dim = 0, worst = 1;
  if (!rc) rc = add_models(ctx, p, "pixels", "standard");
  if (!rc) rc = add_models(ctx, p, "pixels", "robust");
  if (!rc) rc = add_heads(ctx, p, "dim", dim, "standard");
  if (!rc) rc = add_heads(ctx, p, "dim", dim, "robust");
  if (!rc) rc = add_heads(ctx, p, "worst-mi", worst, "standard");
  if (!rc && wcmi_paper_results_has_row(&p->paper, p->c.dataset, "worst-mi", "early-stopped"))
    rc = add_heads(ctx, p, "worst-mi", worst, "early-stopped");
  if (!rc) rc = add_heads(ctx, p, "worst-mi", worst, "robust");
  if (!rc) rc = add_models(ctx, p, "supervised", "standard");
  if (!rc) rc = add_models(ctx, p, "supervised", "robust");
  if (!rc) rc = add_vulnerability(ctx, p, 0, "dim", dim);
  if (!rc) rc = add_vulnerability(ctx, p, 1, "worst-mi", worst);
  for (int i = 0; i < p->n; i++) p->st[i].units = stage_units(&p->st[i]);
  return rc;
}

/* ---- stage identity, files ----------------------------------------------------------------- */

static uint64_t fnv1a(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

/* Everything that decides a stage's numbers, with upstream models named by stage (so moving out_dir
 * keeps the keys) and the upstream stage's own key folded in. */
static int make_key(wcmi_ctx *ctx, plan *p, stage *s) {
  wcmi_task_cfg c = s->cfg;
  c.out_dir = c.resume_dir = NULL;
  c.model = s->upstream >= 0 ? p->st[s->upstream].name : NULL;
  char *cfg = wcmi_task_config_json(&c, task_name(s));
  if (!cfg) return wcmi_fail(ctx, WCMI_ENOMEM, "out of memory");
  size_t n = strlen(cfg) + 512;
  s->key = malloc(n);
  if (!s->key) {
    free(cfg);
    return wcmi_fail(ctx, WCMI_ENOMEM, "out of memory");
  }
  char critics[32] = "";
  if (s->kind == ST_VULN) snprintf(critics, sizeof critics, "critics %d\n", s->critics);
  snprintf(s->key, n, "stage %s\ntask %s\neval_attack %d\n%sreads %s/%s\nupstream %016llx\n%s\n", s->name, task_name(s),
           (int)c.eval_attack, critics, s->upstream >= 0 ? p->st[s->upstream].name : "-",
           s->upstream >= 0 ? p->st[s->upstream].leaf : "-",
           s->upstream >= 0 ? (unsigned long long)p->st[s->upstream].key_hash : 0ull, cfg);
  free(cfg);
  s->key_hash = fnv1a(s->key);
  return WCMI_OK;
}

static int exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

static void side_path(const plan *p, const stage *s, const char *ext, char *out, size_t n) {
  snprintf(out, n, "%s/.stages/%s.%s", p->c.out_dir, s->name, ext);
}

static const char *result_leaf(const stage *s) { return s->kind == ST_EVAL ? "eval.json" : "summary.json"; }

static int stage_done(const stage *s) {
  char path[PATH_N + 32];
  snprintf(path, sizeof path, "%s/%s", s->dir, result_leaf(s));
  return exists(path);
}

/* 1: the key file matches, 0: there is none, -1: it holds another configuration. */
static int key_state(wcmi_ctx *ctx, const plan *p, const stage *s) {
  char path[PATH_N];
  side_path(p, s, "key", path, sizeof path);
  if (!exists(path)) return 0;
  char *text = NULL;
  size_t n = 0;
  if (wcmi_read_file(ctx, path, 1 << 20, &text, &n)) return -1;
  int same = n == strlen(s->key) && !memcmp(text, s->key, n);
  free(text);
  return same ? 1 : -1;
}

/* Removes a stage directory that must start over. Only ever called on out_dir/<stage name>; walks
 * at most a few levels (a vulnerability stage has normal/ and worst/ inside) and never follows
 * symbolic links. */
static int remove_tree(wcmi_ctx *ctx, const char *path, int depth) {
  struct stat st;
  if (lstat(path, &st)) return errno == ENOENT ? WCMI_OK : wcmi_fail(ctx, WCMI_EIO, "%s: %s", path, strerror(errno));
  if (S_ISDIR(st.st_mode)) {
    if (depth > 4) return wcmi_fail(ctx, WCMI_EIO, "%s: nested too deep to be a stage directory", path);
    DIR *d = opendir(path);
    if (!d) return wcmi_fail(ctx, WCMI_EIO, "%s: cannot read: %s", path, strerror(errno));
    int rc = WCMI_OK;
    struct dirent *e;
    while (!rc && (e = readdir(d))) {
      if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
      char sub[PATH_N + 256];
      snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
      rc = remove_tree(ctx, sub, depth + 1);
    }
    closedir(d);
    if (!rc && rmdir(path)) rc = wcmi_fail(ctx, WCMI_EIO, "%s: cannot remove: %s", path, strerror(errno));
    return rc;
  }
  return unlink(path) ? wcmi_fail(ctx, WCMI_EIO, "%s: cannot remove: %s", path, strerror(errno)) : WCMI_OK;
}

static void load_time(const plan *p, stage *s) {
  char path[PATH_N];
  side_path(p, s, "time", path, sizeof path);
  FILE *f = fopen(path, "r");
  if (!f) return;
  double sec = 0, units = 0;
  if (fscanf(f, "%lf %lf", &sec, &units) == 2 && sec >= 0 && units > 0) s->seconds = sec, s->timed_units = units;
  fclose(f);
}

static int save_time(wcmi_ctx *ctx, const plan *p, stage *s, double seconds) {
  char path[PATH_N], text[96];
  side_path(p, s, "time", path, sizeof path);
  s->seconds = seconds;
  s->timed_units = s->units;
  int n = snprintf(text, sizeof text, "%.3f %.0f\n", seconds, s->units);
  return wcmi_atomic_write(ctx, path, text, (size_t)n);
}

/* ---- ETA --------------------------------------------------------------------------------- */

static void format_duration(double s, char *out, size_t n) {
  if (s < 60) snprintf(out, n, "%.0fs", s);
  else if (s < 3600) snprintf(out, n, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
  else snprintf(out, n, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
}

/* Seconds per batch of each rate class from the stages timed so far (this run or an earlier one
 * into the same directory), times the batches left. */
static void print_eta(const plan *p, int next) {
  if (!p->c.progress) return;
  double eta = 0;
  int untimed = 0, left = 0;
  for (int i = next; i < p->n; i++) {
    const stage *s = &p->st[i];
    if (s->finished) continue;
    left++;
    double sec = 0, units = 0;
    for (int j = 0; j < p->n; j++)
      if (p->st[j].timed_units > 0 && !strcmp(p->st[j].rate, s->rate))
        sec += p->st[j].seconds, units += p->st[j].timed_units;
    if (units > 0) eta += s->units * sec / units;
    else untimed++;
  }
  char d[32];
  format_duration(eta, d, sizeof d);
  const stage *s = &p->st[next];
  fprintf(stderr, "[reproduce] stage %d/%d %s (%s): %d stage%s left, ETA %s%s", next + 1, p->n, s->name, task_name(s),
          left, left == 1 ? "" : "s", untimed ? ">= " : "", d);
  if (untimed) fprintf(stderr, " (+%d not yet timed)", untimed);
  fputc('\n', stderr);
}

/* ---- running a stage ----------------------------------------------------------------------- */

static int call_task(wcmi_ctx *ctx, const stage *s, const wcmi_task_cfg *c) {
  char *summary = NULL;
  int rc;
  switch (s->kind) {
  case ST_ENCODER: rc = wcmi_task_train_encoder(ctx, c, &summary); break;
  case ST_HEAD: rc = wcmi_task_train_classifier(ctx, c, &summary); break;
  case ST_MODEL: rc = wcmi_task_train_model(ctx, c, &summary); break;
  case ST_EVAL: rc = wcmi_task_eval(ctx, c, &summary); break;
  default: {
    wcmi_estimate_opts o;
    wcmi_estimate_opts_default(&o);
    o.critics = s->critics;
    rc = wcmi_task_vulnerability_ex(ctx, c, &o, &summary);
    break;
  }
  }
  free(summary);
  return rc;
}

/* Whether an unfinished stage left something its task can --resume from. */
static int resumable(const stage *s) {
  char path[PATH_N + 32];
  if (s->kind == ST_EVAL) return 0; /* an evaluation is short and deterministic: it reruns */
  snprintf(path, sizeof path, "%s/%s", s->dir, s->kind == ST_VULN ? "config.json" : "latest.safetensors");
  return exists(path);
}

/* What every rank does with a stage. */
enum { STAGE_SKIP = 0, STAGE_FRESH = 1, STAGE_RESUME = 2 };

/* Rank 0's verdict on stage s from the files under out_dir, which it alone writes: skip it
 * (finished), start it (after clearing what a killed attempt left) or resume it. */
static int decide_stage(wcmi_ctx *ctx, plan *p, stage *s, int *action) {
  char keypath[PATH_N];
  side_path(p, s, "key", keypath, sizeof keypath);
  int ks = key_state(ctx, p, s);
  *action = STAGE_SKIP;
  if (ks == 1 && stage_done(s)) return WCMI_OK;
  if (ks == -1 || (ks == 0 && exists(s->dir))) {
    if (!p->c.force)
      return wcmi_fail(ctx, WCMI_EINVAL, "%s holds a run of another configuration (budget, seed or data changed?): use "
                       "another --out, or --force to redo it and what depends on it", s->dir);
    int rc = remove_tree(ctx, s->dir, 0);
    if (rc) return rc;
    ks = 0;
  }
  *action = STAGE_FRESH;
  if (ks == 1 && resumable(s)) {
    *action = STAGE_RESUME;
    return WCMI_OK;
  }
  if (ks == 1) return remove_tree(ctx, s->dir, 0); /* started, but nothing to continue from */
  return wcmi_atomic_write(ctx, keypath, s->key, strlen(s->key));
}

/* Data-parallel: rank 0 decides and every rank follows (the others may not see rank 0's files, or
 * not yet); the broadcast also keeps them from reading an upstream model before rank 0 wrote it.
 * Then every rank runs the stage's task, which splits its batches over the ranks. */
static int run_stage(wcmi_ctx *ctx, plan *p, int i) {
  stage *s = &p->st[i];
  const int root = wcmi_dist_rank(ctx->dist) == 0;
  int action = STAGE_SKIP;
  int rc = root ? decide_stage(ctx, p, s, &action) : WCMI_OK;
  if (!rc) rc = wcmi_dist_bcast(ctx->dist, &action, sizeof action);
  if (rc) return rc;
  if (action == STAGE_SKIP) {
    s->finished = 1;
    return WCMI_OK;
  }
  wcmi_task_cfg c = s->cfg;
  const int resumed = action == STAGE_RESUME;
  if (resumed) c.resume_dir = s->dir;
  print_eta(p, i);
  if (resumed && p->c.progress) fprintf(stderr, "[reproduce] continuing %s from its checkpoint\n", s->dir);
  double t0 = wcmi_now();
  rc = call_task(ctx, s, &c);
  if (rc) return rc;
  s->finished = 1;
  /* Only a stage run in one go measures its kind's cost. */
  return resumed || !root ? WCMI_OK : save_time(ctx, p, s, wcmi_now() - t0);
}

/* ---- results ------------------------------------------------------------------------------- */

/* Fails naming path when the record lacks the field `key`. */
static int require(wcmi_ctx *ctx, const char *path, const wcmi_run_record *r, const char *key) {
  const wcmi_record_field *f = wcmi_record_field_by_key(key);
  if (f && !isnan(wcmi_record_value(r, f))) return WCMI_OK;
  return wcmi_fail(ctx, WCMI_EFORMAT, "%s: '%s' missing (the stage did not finish: remove its directory to rerun it)",
                   path, key);
}

/* Reads a finished stage's results (eval.json or summary.json, through the run-record schema) into
 * its row: a classifier's natural accuracy, the paper's PGD and the strong attack's worst case; an
 * encoder's MI, RV and Fano bound (null for estimators that are no MI lower bound). */
static int read_result(wcmi_ctx *ctx, const stage *s, table_row *row, mi_row *m) {
  char path[PATH_N + 32];
  snprintf(path, sizeof path, "%s/%s", s->dir, result_leaf(s));
  wcmi_run_record r;
  int rc = wcmi_record_load(ctx, s->dir, &r, NULL);
  if (!rc && row) {
    if (!(rc = require(ctx, path, &r, "nat_acc")) && !(rc = require(ctx, path, &r, "pgd_adv_acc")))
      rc = require(ctx, path, &r, "worst_case_adv_acc");
    row->nat = r.nat_acc;
    row->adv = r.pgd_adv_acc;
    row->strong = r.worst_case_adv_acc;
  }
  if (!rc && m) {
    if (!(rc = require(ctx, path, &r, "normal_mi"))) rc = require(ctx, path, &r, "worst_mi");
    m->rec = r;
  }
  return rc;
}

/* ---- the table ----------------------------------------------------------------------------- */

typedef struct text {
  char *s;
  size_t n, cap;
  int oom;
} text;

#if defined(__GNUC__)
static void put(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#endif
static void put(text *t, const char *fmt, ...) {
  if (t->oom) return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(t->s ? t->s + t->n : NULL, t->s ? t->cap - t->n : 0, fmt, ap);
    va_end(ap);
    if (w < 0) {
      t->oom = 1;
      return;
    }
    if (t->s && t->n + (size_t)w < t->cap) {
      t->n += (size_t)w;
      return;
    }
    size_t cap = t->cap ? t->cap * 2 : 4096;
    while (cap < t->n + (size_t)w + 1) cap *= 2;
    char *s = realloc(t->s, cap);
    if (!s) {
      t->oom = 1;
      return;
    }
    t->s = s;
    t->cap = cap;
  }
}

static void pct(char *out, size_t n, double fraction_or_pct, int is_fraction) {
  double v = is_fraction ? 100 * fraction_or_pct : fraction_or_pct;
  if (isfinite(v)) snprintf(out, n, "%.2f", v);
  else snprintf(out, n, "-");
}

/* An MI figure in nats, "mean ± std" when it comes with a spread over several critics. */
static void nats(char *out, size_t n, double v, double sd) {
  if (!isfinite(v)) snprintf(out, n, "-");
  else if (isfinite(sd)) snprintf(out, n, "%.3f ± %.3f", v, sd);
  else snprintf(out, n, "%.3f", v);
}

static void diff(char *out, size_t n, double wcmi_fraction, double paper_pct) {
  double d = 100 * wcmi_fraction - paper_pct;
  if (isfinite(d)) snprintf(out, n, "%+.2f", d);
  else snprintf(out, n, "-");
}

static void header_lines(text *t, const plan *p, const char *prefix, double seconds) {
  const wcmi_reproduce_cfg *c = &p->c;
  const wcmi_pgd_cfg *a = &p->base.attack;
  char tr[48], te[48];
  if (c->train_subset > 0) snprintf(tr, sizeof tr, "%lld class-balanced", c->train_subset);
  else snprintf(tr, sizeof tr, "all");
  if (c->test_subset > 0) snprintf(te, sizeof te, "%lld class-balanced", c->test_subset);
  else snprintf(te, sizeof te, "all");
  put(t, "%swcmi reproduce: %s, profile %s: %s training / %s test images, batch %d, H = %d, seed %llu%s",
      prefix, c->dataset, c->profile, tr, te, c->batch_size, c->hsize, (unsigned long long)c->seed,
      c->precision == WCMI_GEMM_BF16 ? ", bf16 GEMMs" : "");
  if (seconds > 0) put(t, " (%.0f s of stages)", seconds);
  put(t, "\n");
  put(t, "%sepochs: encoders %d (DIM %d), standard heads %d, robust heads %d, Baseline-H %d, MI critics %d (%d per "
         "case); Adam lr %g (heads %g)%s\n",
      prefix, c->encoder_epochs, c->dim_epochs, c->head_epochs, c->robust_head_epochs, c->model_epochs, c->mi_epochs,
      c->critics, c->lr, c->head_lr, c->max_batches > 0 ? "; batches capped (smoke test)" : "");
  put(t, "%sattack: l-inf eps %g, %d steps of %g (the paper's PGD); strong: worst case per sample of PGD, PGD with "
         "random start and 5 restarts, APGD-CE\n",
      prefix, a->eps, a->steps, a->step);
  wcmi_pgd_cfg mi = *a;
  wcmi_profile_training_attack(c->profile, WCMI_TRAIN_ATTACK_MI, &mi);
  const int mi_own = mi.steps != a->steps || mi.step != a->step || mi.random_start != a->random_start;
  if (c->robust_train_steps != a->steps)
    put(t, "%straining attack of robust heads and robust Baseline-H: %d steps of %g%s\n", prefix,
        c->robust_train_steps, robust_train_step(p),
        mi_own ? "" : " (the worst-case MI encoder and every evaluation: the paper's PGD)");
  if (mi_own)
    put(t, "%straining attack of the worst-case MI encoder: %d steps of %g from a random start (every evaluation and "
           "MI measurement: the paper's PGD)\n",
        prefix, mi.steps, mi.step);
  put(t, "%saccuracies in %%: paper = published (mean of 4 trials, %s); diff = wcmi - paper\n", prefix, p->paper.path);
}

/* The printed cells of a row: paper, wcmi and diff for natural and PGD accuracy, then strong. */
typedef struct row_text {
  char label[64], c[7][16];
} row_text;

static void row_cells(const table_row *r, row_text *x) {
  snprintf(x->label, sizeof x->label, "%s / %s", r->encoder, r->training);
  pct(x->c[0], 16, r->paper_nat, 0), pct(x->c[1], 16, r->nat, 1), diff(x->c[2], 16, r->nat, r->paper_nat);
  pct(x->c[3], 16, r->paper_adv, 0), pct(x->c[4], 16, r->adv, 1), diff(x->c[5], 16, r->adv, r->paper_adv);
  pct(x->c[6], 16, r->strong, 1);
}

/* I, I_worst, I_worst re-fitted, RV, Fano bound ("none" when the estimator gives none). */
typedef struct mi_text {
  char c[5][24];
} mi_text;

static void mi_cells(const mi_row *m, mi_text *x) {
  const wcmi_run_record *v = &m->rec;
  nats(x->c[0], 24, v->normal_mi.mean, v->normal_mi.std), nats(x->c[1], 24, v->worst_mi.mean, v->worst_mi.std);
  nats(x->c[2], 24, v->worst_mi_refit.mean, v->worst_mi_refit.std), nats(x->c[3], 24, v->rv.mean, v->rv.std);
  if (isfinite(v->fano_bound)) snprintf(x->c[4], 24, "%.1f%%", 100 * v->fano_bound);
  else snprintf(x->c[4], 24, "none");
}

/* The rows and the MI table, as aligned text or as Markdown (after the accuracy table's header). */
static void put_body(text *t, const plan *p, int md) {
  const char *row = md ? "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n"
                       : "%-26s %-6s | %6s %6s %7s | %6s %6s %7s | %7s\n";
  /* "0.123 ± 0.045" is 13 columns and 14 bytes (± takes two in UTF-8): widths in bytes. */
  const char *mi = md ? "| %s | %s | %s | %s | %s | %s |\n" : "%-10s %16s %16s %16s %16s %11s\n";
  for (int i = 0; i < p->n_rows; i++) {
    row_text x;
    row_cells(&p->rows[i], &x);
    put(t, row, x.label, p->rows[i].head, x.c[0], x.c[1], x.c[2], x.c[3], x.c[4], x.c[5], x.c[6]);
  }
  if (md) put(t, "\n| encoder | I (nats) | I_worst | I_worst refit | RV | Fano bound |\n|---|---:|---:|---:|---:|---:|\n");
  else put(t, "\n%-10s %15s %15s %15s %15s %11s\n", "encoder", "I (nats)", "I_worst", "I_worst refit", "RV", "Fano bound");
  for (int k = 0; k < 2; k++) {
    mi_text x;
    mi_cells(&p->mi[k], &x);
    put(t, mi, p->mi[k].encoder, x.c[0], x.c[1], x.c[2], x.c[3], x.c[4]);
  }
}

static char *format_text(const plan *p, double seconds) {
  text t = {0};
  header_lines(&t, p, "", seconds);
  put(&t, "\n%-33s | %-22s | %-22s | %7s\n", "", "natural accuracy", "PGD (paper's protocol)", "strong");
  put(&t, "%-26s %-6s | %6s %6s %7s | %6s %6s %7s | %7s\n", "encoder / training", "head", "paper", "wcmi", "diff",
      "paper", "wcmi", "diff", "wcmi");
  put_body(&t, p, 0);
  int early = 0;
  for (int i = 0; i < p->n_rows; i++) early |= !strcmp(p->rows[i].training, "early-stopped");
  put(&t, "\npixels: the same heads on the raw (normalized) image, no encoder.");
  if (early)
    put(&t, " early-stopped: a standard head kept at the epoch of its best PGD accuracy on %s.",
        p->c.monitor_batches > 0 ? "the monitoring test batches" : "the test split");
  put(&t, " Fano bound: (max(0, I_worst) + ln 2) / ln 10 caps any "
          "classifier's adversarial accuracy on the encoder (none: the estimate is no MI lower bound).\n"
          "Runs and charts: %s/report.html; JSON: %s/reproduce.json\n",
      p->c.out_dir, p->c.out_dir);
  if (t.oom) {
    free(t.s);
    return NULL;
  }
  return t.s;
}

static char *format_markdown(const plan *p, double seconds) {
  text t = {0};
  put(&t, "# wcmi reproduce: %s (%s profile)\n\n", p->c.dataset, p->c.profile);
  header_lines(&t, p, "- ", seconds);
  put(&t, "\n| encoder / training | head | nat paper | nat wcmi | nat diff | PGD paper | PGD wcmi | PGD diff | strong "
          "wcmi |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
  put_body(&t, p, 1);
  if (t.oom) {
    free(t.s);
    return NULL;
  }
  return t.s;
}

static void json_percent_or_null(wcmi_jsonw *w, const char *key, double v) {
  wcmi_jsonw_key(w, key);
  if (isfinite(v)) wcmi_jsonw_double(w, v / 100.0);
  else wcmi_jsonw_null(w);
}

static char *format_json(const plan *p, double seconds, double stage_seconds) {
  const wcmi_reproduce_cfg *c = &p->c;
  wcmi_jsonw w;
  wcmi_jsonw_init_buffer(&w, 2);
  wcmi_jsonw_begin_object(&w);
  wcmi_jsonw_kv_string(&w, "task", "reproduce");
  wcmi_jsonw_kv_string(&w, "dataset", c->dataset);
  wcmi_jsonw_kv_string(&w, "profile", c->profile);
  wcmi_jsonw_kv_string(&w, "paper_results", p->paper.path);
  wcmi_jsonw_kv_string(&w, "units", "accuracies as fractions in [0, 1]; MI in nats; null: no number");
  wcmi_jsonw_key(&w, "budget");
  wcmi_jsonw_begin_object(&w);
  wcmi_jsonw_kv_int(&w, "train_subset", c->train_subset);
  wcmi_jsonw_kv_int(&w, "test_subset", c->test_subset);
  wcmi_jsonw_kv_int(&w, "encoder_epochs", c->encoder_epochs);
  wcmi_jsonw_kv_int(&w, "head_epochs", c->head_epochs);
  wcmi_jsonw_kv_int(&w, "robust_head_epochs", c->robust_head_epochs);
  wcmi_jsonw_kv_int(&w, "model_epochs", c->model_epochs);
  wcmi_jsonw_kv_int(&w, "dim_epochs", c->dim_epochs);
  wcmi_jsonw_kv_int(&w, "mi_epochs", c->mi_epochs);
  wcmi_jsonw_kv_int(&w, "critics", c->critics);
  wcmi_jsonw_kv_int(&w, "robust_train_steps", c->robust_train_steps);
  wcmi_jsonw_kv_int(&w, "hsize", c->hsize);
  wcmi_jsonw_kv_int(&w, "batch_size", c->batch_size);
  wcmi_jsonw_kv_double(&w, "lr", c->lr);
  wcmi_jsonw_kv_double(&w, "head_lr", c->head_lr);
  wcmi_jsonw_kv_int(&w, "monitor_batches", c->monitor_batches);
  wcmi_jsonw_kv_int(&w, "eval_batches", c->eval_batches);
  wcmi_jsonw_kv_int(&w, "max_batches", c->max_batches);
  wcmi_jsonw_kv_int(&w, "seed", (int64_t)c->seed);
  wcmi_jsonw_kv_string(&w, "precision", wcmi_gemm_precision_name((wcmi_gemm_precision)c->precision));
  wcmi_jsonw_end_object(&w);
  wcmi_jsonw_key(&w, "attack");
  wcmi_jsonw_begin_object(&w);
  wcmi_jsonw_kv_double(&w, "eps", p->base.attack.eps);
  wcmi_jsonw_kv_int(&w, "steps", p->base.attack.steps);
  wcmi_jsonw_kv_double(&w, "step", p->base.attack.step);
  wcmi_jsonw_kv_string(&w, "pgd_adv_acc", "the paper's PGD (eval.json attacks[0])");
  wcmi_jsonw_kv_string(&w, "worst_case_adv_acc", "eval --attack strong: worst case per sample over every attack");
  wcmi_jsonw_end_object(&w);
  wcmi_jsonw_key(&w, "rows");
  wcmi_jsonw_begin_array(&w);
  for (int i = 0; i < p->n_rows; i++) {
    const table_row *r = &p->rows[i];
    const stage *e = &p->st[r->eval_stage];
    wcmi_jsonw_begin_object(&w);
    wcmi_jsonw_kv_string(&w, "encoder", r->encoder);
    wcmi_jsonw_kv_string(&w, "training", r->training);
    wcmi_jsonw_kv_string(&w, "head", r->head);
    wcmi_jsonw_kv_string(&w, "model", e->model_in);
    wcmi_jsonw_kv_string(&w, "eval", e->dir);
    wcmi_run_record rec; /* the row's figures under the run-record schema's keys (docs/formats.md) */
    wcmi_record_clear(&rec);
    rec.nat_acc = r->nat;
    rec.pgd_adv_acc = r->adv;
    rec.worst_case_adv_acc = r->strong;
    wcmi_record_write(&w, &rec, WCMI_REC_EVAL);
    json_percent_or_null(&w, "paper_nat_acc", r->paper_nat);
    json_percent_or_null(&w, "paper_adv_acc", r->paper_adv);
    wcmi_jsonw_kv_double(&w, "diff_nat_acc", r->nat - r->paper_nat / 100.0);
    wcmi_jsonw_kv_double(&w, "diff_adv_acc", r->adv - r->paper_adv / 100.0);
    wcmi_jsonw_end_object(&w);
  }
  wcmi_jsonw_end_array(&w);
  wcmi_jsonw_key(&w, "vulnerability");
  wcmi_jsonw_begin_array(&w);
  for (int k = 0; k < 2; k++) {
    const mi_row *m = &p->mi[k];
    wcmi_jsonw_begin_object(&w);
    wcmi_jsonw_kv_string(&w, "encoder", m->encoder);
    wcmi_jsonw_kv_string(&w, "run", p->st[m->stage].dir);
    wcmi_record_write(&w, &m->rec, WCMI_REC_VULNERABILITY); /* the vulnerability run's record as it wrote it */
    wcmi_jsonw_end_object(&w);
  }
  wcmi_jsonw_end_array(&w);
  wcmi_jsonw_key(&w, "stages");
  wcmi_jsonw_begin_array(&w);
  for (int i = 0; i < p->n; i++) {
    const stage *s = &p->st[i];
    wcmi_jsonw_begin_object(&w);
    wcmi_jsonw_kv_string(&w, "name", s->name);
    wcmi_jsonw_kv_string(&w, "task", task_name(s));
    wcmi_jsonw_kv_string(&w, "dir", s->dir);
    wcmi_jsonw_kv_double(&w, "batches", s->units);
    wcmi_jsonw_key(&w, "seconds");
    if (s->timed_units > 0) wcmi_jsonw_double(&w, s->seconds);
    else wcmi_jsonw_null(&w);
    wcmi_jsonw_end_object(&w);
  }
  wcmi_jsonw_end_array(&w);
  wcmi_jsonw_kv_double(&w, "stage_seconds", stage_seconds);
  wcmi_jsonw_kv_double(&w, "seconds_this_call", seconds);
  wcmi_jsonw_end_object(&w);
  char *out = wcmi_jsonw_finish(NULL, &w) ? NULL : strdup(wcmi_jsonw_text(&w));
  wcmi_jsonw_free(&w);
  return out;
}

/* The plan of a dry run: every stage with its task and budget, then the table with the paper's
 * column only. */
static char *format_plan(const plan *p) {
  text t = {0};
  put(&t, "%-34s %-16s %6s %8s  %s\n", "stage (directory under --out)", "task", "epochs", "batches", "reads");
  for (int i = 0; i < p->n; i++) {
    const stage *s = &p->st[i];
    char epochs[16];
    if (s->kind == ST_EVAL) snprintf(epochs, sizeof epochs, "-");
    else snprintf(epochs, sizeof epochs, "%d", s->cfg.epochs);
    put(&t, "%-34s %-16s %6s %8.0f  %s\n", s->name, task_name(s), epochs, s->units,
        s->upstream >= 0 ? s->model_in : "-");
  }
  char *table = format_text(p, 0);
  if (table) put(&t, "\n%s", table);
  free(table);
  if (t.oom || !table) {
    free(t.s);
    return NULL;
  }
  return t.s;
}

static int write_text(wcmi_ctx *ctx, const char *dir, const char *leaf, const char *s) {
  char path[PATH_N];
  snprintf(path, sizeof path, "%s/%s", dir, leaf);
  return wcmi_atomic_write(ctx, path, s, strlen(s));
}

/* ---- the task ------------------------------------------------------------------------------ */

static int collect_results(wcmi_ctx *ctx, plan *p) {
  int rc = WCMI_OK;
  for (int i = 0; i < p->n_rows && !rc; i++) rc = read_result(ctx, &p->st[p->rows[i].eval_stage], &p->rows[i], NULL);
  for (int k = 0; k < 2 && !rc; k++) rc = read_result(ctx, &p->st[p->mi[k].stage], NULL, &p->mi[k]);
  return rc;
}

static int run_all(wcmi_ctx *ctx, plan *p) {
  char dir[PATH_N];
  snprintf(dir, sizeof dir, "%s/.stages", p->c.out_dir);
  const int root = wcmi_dist_rank(ctx->dist) == 0; /* data-parallel: rank 0 keeps the stage files */
  int rc = root ? wcmi_mkdir_p(ctx, dir) : WCMI_OK;
  for (int i = 0; i < p->n && !rc; i++) rc = make_key(ctx, p, &p->st[i]);
  for (int i = 0; i < p->n && !rc && root; i++) load_time(p, &p->st[i]);
  for (int i = 0; i < p->n && !rc; i++) {
    if (ctx->dist) ctx->interrupt = wcmi_dist_any(ctx->dist, ctx->interrupt); /* every rank stops together */
    if (ctx->interrupt)
      return wcmi_fail(ctx, WCMI_EINTR, "interrupted before stage %s: rerun the same command to continue", p->st[i].name);
    rc = run_stage(ctx, p, i);
    if (rc == WCMI_EINTR) {
      char msg[sizeof ctx->msg];
      snprintf(msg, sizeof msg, "%s", ctx->msg);
      wcmi_fail(ctx, rc, "%s; rerun the same command to continue", msg);
    }
  }
  return rc;
}

int wcmi_task_reproduce(wcmi_ctx *ctx, const wcmi_reproduce_cfg *cfg, char **table, char **json) {
  const double t0 = wcmi_now();
  *table = *json = NULL;
  plan *p = calloc(1, sizeof *p);
  if (!p) return wcmi_fail(ctx, WCMI_ENOMEM, "out of memory");
  int rc = resolve_budget(ctx, cfg, p);
  /* Data-parallel: every rank runs every stage's task on its slice of the batches; rank 0 alone
   * writes out_dir, reports progress and makes the table (docs/distributed.md). */
  const int root = wcmi_dist_rank(ctx->dist) == 0, ranks = wcmi_dist_size(ctx->dist);
  if (!root) p->c.progress = 0;
  if (!rc && p->c.batch_size < ranks)
    rc = wcmi_fail(ctx, WCMI_EINVAL, "reproduce: --batch-size %d is smaller than the %d ranks", p->c.batch_size, ranks);
  char paper_path[1024];
  wcmi_paper_results_find(p->c.paper_results, paper_path, sizeof paper_path);
  if (!rc) rc = wcmi_paper_results_load(ctx, paper_path, &p->paper);
  if (!rc) rc = build_plan(ctx, p);
  if (!rc && p->c.dry_run) {
    if (!(*table = format_plan(p))) rc = wcmi_fail(ctx, WCMI_ENOMEM, "out of memory");
    for (int i = 0; i < p->n; i++) free(p->st[i].key);
    wcmi_paper_results_free(&p->paper);
    free(p);
    return rc;
  }
  if (!rc && root) rc = wcmi_mkdir_p(ctx, p->c.out_dir);
  if (!rc) rc = run_all(ctx, p);
  if (!rc && root) rc = collect_results(ctx, p);
  if (!rc && root) {
    double stage_seconds = 0;
    for (int i = 0; i < p->n; i++) stage_seconds += p->st[i].seconds;
    double secs = wcmi_now() - t0;
    char *md = format_markdown(p, stage_seconds);
    *table = format_text(p, stage_seconds);
    *json = format_json(p, secs, stage_seconds);
    if (!*table || !*json || !md) rc = wcmi_fail(ctx, WCMI_ENOMEM, "out of memory");
    if (!rc) rc = write_text(ctx, p->c.out_dir, "reproduce.json", *json);
    if (!rc) rc = write_text(ctx, p->c.out_dir, "table.md", md);
    if (!rc) rc = write_text(ctx, p->c.out_dir, "table.txt", *table);
    free(md);
  }
  for (int i = 0; i < p->n; i++) free(p->st[i].key);
  wcmi_paper_results_free(&p->paper);
  free(p);
  if (rc) {
    free(*table);
    free(*json);
    *table = *json = NULL;
  }
  return rc;
}
