/* The run settings on the command line: flags, help and groups from the table of settings
 * (wcmi/task_config.h), defaults from the dataset's profile, --resume reads the run's own
 * config.json so a resumed run continues exactly the run it names. */
#include "cli/task_cli.h"
#include "wcmi/blas.h"
#include "wcmi/dist.h"
#include "wcmi/io.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The one piece of process-wide state: where SIGINT asks the running task to stop. */
static wcmi_ctx *volatile interrupt_target;

static void on_sigint(int sig) {
  (void)sig;
  if (interrupt_target) interrupt_target->interrupt = 1;
  /* A second Ctrl-C kills the process at once. */
  signal(SIGINT, SIG_DFL);
}

/* ---- the run settings on the command line ------------------------------------------------------
 * The flags, their help and the groups they belong to come from the table of settings
 * (wcmi/task_config.h). A command takes the groups it declares: a flag of another group is not
 * listed by --help, and giving it is a usage error naming it (exit 2) rather than a setting silently
 * ignored. */

static const wcmi_cfg_field *field(int id) { return wcmi_cfg_field_at(id); }

/* The parser's kind for a field's flag and where its value goes. */
static wcmi_opt field_opt(const wcmi_cfg_field *f, task_cli_raw *raw) {
  wcmi_opt o = {f->flag, WCMI_OPT_STR, &raw->s, f->metavar, f->help, 0};
  switch (f->type) {
  case WCMI_FIELD_INT: o.kind = WCMI_OPT_INT, o.dest = &raw->i; break;
  case WCMI_FIELD_I64:
  case WCMI_FIELD_U64: o.kind = WCMI_OPT_I64, o.dest = &raw->l; break;
  case WCMI_FIELD_DOUBLE:
  case WCMI_FIELD_FLOAT: o.kind = WCMI_OPT_FLOAT, o.dest = &raw->d; break;
  case WCMI_FIELD_BOOL:
    if (!f->names) o.kind = WCMI_OPT_FLAG, o.dest = &raw->i;
    break;
  default: break;
  }
  return o;
}

wcmi_opt task_cli_opt(int id, void *dest, const char *help) {
  task_cli_raw unused;
  wcmi_opt o = field_opt(field(id), &unused);
  o.dest = dest;
  if (help) o.help = help;
  return o;
}

/* Exit code 2 with a message when argv names a setting of a group the command does not take; 0
 * otherwise (also with --help anywhere: the parser prints the help). */
static int refuse_options_not_taken(const char *cmd, unsigned groups, int argc, char **argv) {
  for (int i = 1; i < argc; i++)
    if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *eq = strchr(a, '=');
    if (a[0] != '-' || a[1] != '-') continue;
    size_t len = eq ? (size_t)(eq - a) : strlen(a);
    const wcmi_cfg_field *f = wcmi_cfg_field_by_flag(a, len, NULL);
    if (f && !(f->group & groups)) {
      fprintf(stderr, "wcmi %s: %.*s does not apply to %s (see wcmi %s --help)\n", cmd, (int)len, a, cmd, cmd);
      return 2;
    }
  }
  return 0;
}

int task_cli_given(const task_cli *tc, int id) {
  const wcmi_cfg_field *f = field(id);
  return (f->group & tc->groups) &&
         (wcmi_cli_given(tc->opts, f->flag) || (f->no_flag && wcmi_cli_given(tc->opts, f->no_flag)));
}

/* Puts the command line's value of setting id into c. Returns 0, or 2 after a message. */
static int put(const task_cli *tc, const char *cmd, int id, wcmi_task_cfg *c) {
  const wcmi_cfg_field *f = field(id);
  const task_cli_raw *raw = &tc->raw[id];
  if (f->type == WCMI_FIELD_BOOL && !f->names) { /* a flag, and maybe its --no- twin */
    if (f->no_flag && wcmi_cli_given(tc->opts, f->flag) && tc->negated[id])
      return fprintf(stderr, "wcmi %s: %s and %s contradict each other\n", cmd, f->flag, f->no_flag), 2;
    wcmi_cfg_set_int(c, f, !tc->negated[id]);
    return 0;
  }
  if (f->type == WCMI_FIELD_BOOL || f->type == WCMI_FIELD_CHOICE) { /* one of the names */
    const int k = wcmi_cfg_field_choice(f, raw->s, 1);
    if (k < 0) {
      char names[160];
      wcmi_cfg_field_names(f, 1, names, sizeof names);
      /* The value itself is not echoed: it may hold newlines. */
      return fprintf(stderr, "wcmi %s: %s must be %s\n", cmd, f->flag, names), 2;
    }
    wcmi_cfg_set_int(c, f, k);
    return 0;
  }
  switch (f->type) {
  case WCMI_FIELD_STR: wcmi_cfg_set_str(c, f, raw->s); break;
  case WCMI_FIELD_INT: wcmi_cfg_set_int(c, f, raw->i); break;
  case WCMI_FIELD_I64:
  case WCMI_FIELD_U64: wcmi_cfg_set_int(c, f, raw->l); break;
  default: wcmi_cfg_set_real(c, f, raw->d); break;
  }
  return 0;
}

/* A setting given with --resume: those the table marks resumable change the run; any other must
 * repeat the run's own value (a different one would silently not apply). */
static int put_resumed(const task_cli *tc, const char *cmd, int id, wcmi_task_cfg *c) {
  const wcmi_cfg_field *f = field(id);
  if (f->resumable) return put(tc, cmd, id, c);
  wcmi_task_cfg given = *c;
  int rc = put(tc, cmd, id, &given);
  if (rc || wcmi_cfg_same(&given, c, f)) return rc;
  if (!f->key)
    return fprintf(stderr, "wcmi %s: %s does not go with --resume (the run's directory and settings are fixed)\n", cmd,
                   f->flag), 2;
  char was[128], now[128];
  wcmi_cfg_value_text(c, f, was, sizeof was);
  wcmi_cfg_value_text(&given, f, now, sizeof now);
  fprintf(stderr, "wcmi %s: %s %s differs from the run being resumed (%s: config.json's \"%s\"); a resumed run keeps "
                  "its settings\n", cmd, f->flag, now, was, f->key);
  return 2;
}

int task_cli_model_dataset(wcmi_ctx *ctx, const char *model, char *buf, size_t n) {
  buf[0] = '\0';
  wcmi_st *st = NULL;
  int rc = wcmi_st_open_header(ctx, model, &st);
  if (rc) return rc;
  const char *ds = wcmi_st_meta(st, "dataset");
  if (ds && strlen(ds) < n) snprintf(buf, n, "%s", ds);
  wcmi_st_close(st);
  return WCMI_OK;
}

/* The dataset of a new run: --data, else the one --model's file names (an unreadable file names
 * none: the task then reports the file's problem itself), else fashion-mnist. */
static const char *run_dataset(task_cli *tc) {
  if (task_cli_given(tc, WCMI_CFG_DATA)) return tc->raw[WCMI_CFG_DATA].s;
  if (task_cli_given(tc, WCMI_CFG_MODEL)) {
    wcmi_ctx quiet;
    wcmi_ctx_init(&quiet);
    if (!task_cli_model_dataset(&quiet, tc->raw[WCMI_CFG_MODEL].s, tc->model_dataset, sizeof tc->model_dataset) &&
        tc->model_dataset[0])
      return tc->model_dataset;
  }
  return "fashion-mnist";
}

/* What a profile sets for the training commands alone, where no flag set it: the heads' epochs and
 * learning rate, fast's monitoring budget, its learning-curve probes and, for the runs that train
 * against an attack, its training attack (wcmi_profile_training_attack). Evaluations and MI measurements keep the whole test split
 * and the threat model's own attack. */
static void apply_training_profile(task_cli *tc, const char *cmd) {
  wcmi_task_cfg *c = &tc->cfg;
  if (strncmp(cmd, "train-", 6)) return;
  const int quick = !strcmp(c->profile, "quick"), fast = !strcmp(c->profile, "fast");
  if (fast && !task_cli_given(tc, WCMI_CFG_EVAL_BATCHES)) c->eval_batches = WCMI_FAST_MONITOR_BATCHES;
  /* A fast encoder run draws its own learning curve (about 5% of its time). */
  if (fast && !strcmp(cmd, "train-encoder") && !task_cli_given(tc, WCMI_CFG_PROBE_EVERY))
    c->probe_every = WCMI_FAST_PROBE_EVERY;
  if (!strcmp(cmd, "train-classifier")) {
    const int epochs_given = task_cli_given(tc, WCMI_CFG_EPOCHS);
    /* The quick and fast profiles' epochs are an encoder budget; a head fitted on cached features
     * costs seconds per 100 epochs and needs them to converge (docs/profiles.md). */
    if ((quick || fast) && !epochs_given && !c->robust && c->head_fit != WCMI_HEAD_FIT_ONLINE &&
        strcmp(c->data, "cifar10"))
      c->epochs = 100;
    /* fast: a robust head gains nothing after its second epoch once the encoder is trained
     * (EXPERIMENTS.md section 4), and heads take reproduce's head learning rate. */
    if (fast && !epochs_given && c->robust) c->epochs = WCMI_FAST_ROBUST_HEAD_EPOCHS;
    if (fast && !task_cli_given(tc, WCMI_CFG_LR)) c->lr = WCMI_FAST_HEAD_LR;
  }
  if (task_cli_given(tc, WCMI_CFG_ATTACK_STEPS) || task_cli_given(tc, WCMI_CFG_ATTACK_LR) ||
      task_cli_given(tc, WCMI_CFG_RANDOM_START))
    return;
  if (!strcmp(cmd, "train-encoder") && c->worst && !c->free_replays)
    wcmi_profile_training_attack(c->profile, WCMI_TRAIN_ATTACK_MI, &c->attack);
  else if ((!strcmp(cmd, "train-classifier") || !strcmp(cmd, "train-model")) && c->robust)
    wcmi_profile_training_attack(c->profile, WCMI_TRAIN_ATTACK_ROBUST, &c->attack);
}

static int apply(task_cli *tc, const char *cmd) {
  wcmi_task_cfg *c = &tc->cfg;
  wcmi_ctx *ctx = &tc->ctx;
  if (task_cli_given(tc, WCMI_CFG_RESUME)) {
    const char *dir = tc->raw[WCMI_CFG_RESUME].s;
    if (wcmi_task_config_load(ctx, dir, c, tc->resumed_task, sizeof tc->resumed_task, &tc->resume_cfg)) {
      fprintf(stderr, "wcmi %s: %s\n", cmd, wcmi_errmsg(ctx));
      return 1;
    }
    if (strcmp(tc->resumed_task, cmd)) {
      fprintf(stderr, "wcmi %s: %s holds a '%s' run, not '%s'\n", cmd, dir, tc->resumed_task, cmd);
      return 2;
    }
    for (int id = 0; id < WCMI_CFG_NFIELDS; id++) {
      if (id == WCMI_CFG_RESUME || field(id)->offset < 0 || !task_cli_given(tc, id)) continue;
      int rc = put_resumed(tc, cmd, id, c);
      if (rc) return rc;
    }
  } else {
    const char *profile = task_cli_given(tc, WCMI_CFG_PROFILE) ? tc->raw[WCMI_CFG_PROFILE].s : "paper";
    if (wcmi_task_defaults(ctx, c, run_dataset(tc), profile)) {
      fprintf(stderr, "wcmi %s: %s\n", cmd, wcmi_errmsg(ctx));
      return 2;
    }
    for (int id = 0; id < WCMI_CFG_NFIELDS; id++) {
      const wcmi_cfg_field *f = field(id);
      if (f->has_cli_default && (f->group & tc->groups)) wcmi_cfg_set_real(c, f, f->cli_default);
    }
    for (int id = 0; id < WCMI_CFG_NFIELDS; id++) {
      if (id == WCMI_CFG_DATA || id == WCMI_CFG_PROFILE || field(id)->offset < 0 || !task_cli_given(tc, id)) continue;
      int rc = put(tc, cmd, id, c);
      if (rc) return rc;
    }
    apply_training_profile(tc, cmd);
  }
  /* The same ranges a resumed run's config.json must satisfy (src/train/config.c). */
  if (wcmi_task_cfg_check(ctx, c)) {
    fprintf(stderr, "wcmi %s: %s\n", cmd, wcmi_errmsg(ctx));
    return 2;
  }
  c->progress = c->progress ? (isatty(2) ? 2 : 1) : 0;
  return 0;
}

/* Data-parallel runs (docs/distributed.md): under mpirun with K > 1 ranks, the commands below split
 * every global batch over the ranks; the others refuse rather than repeat the work K times. */
static int task_cli_dist(task_cli *tc, const char *cmd) {
  static const char *const parallel[] = {"train-encoder", "train-classifier", "train-model", "eval",
                                         "estimate-mi",   "vulnerability",    "encode",      NULL};
  if (wcmi_dist_init(&tc->ctx)) return fprintf(stderr, "wcmi %s: %s\n", cmd, wcmi_errmsg(&tc->ctx)), 1;
  const int K = wcmi_dist_size(tc->ctx.dist);
  if (K == 1) return 0;
  int ok = 0;
  for (int i = 0; parallel[i]; i++) ok |= !strcmp(cmd, parallel[i]);
  const char *why = !ok ? "does not run data-parallel yet: run it as one process"
                    : tc->cfg.batch_size < K ? "--batch-size is smaller than the number of ranks" : NULL;
  if (!why) return 0;
  if (wcmi_dist_rank(tc->ctx.dist) == 0) fprintf(stderr, "wcmi %s: %s (launched with %d ranks)\n", cmd, why, K);
  wcmi_dist_finalize(&tc->ctx, 0); /* every rank reached the same verdict */
  return 2;
}

/* Every setting (and --no-use-best) fits beside the command's own options. */
_Static_assert(WCMI_CFG_NFIELDS + 1 + 16 < TASK_CLI_MAX_OPTS, "TASK_CLI_MAX_OPTS is too small for the table");

typedef struct help_args {
  const task_cli *tc;
  const char *cmd, *synopsis, *desc;
} help_args;

/* --help: the command's own options, then the settings it takes, group by group. */
static void print_help(FILE *out, void *arg) {
  const help_args *h = arg;
  const task_cli *tc = h->tc;
  wcmi_opt own[TASK_CLI_MAX_OPTS];
  memcpy(own, tc->opts, (size_t)tc->n_extra * sizeof own[0]);
  own[tc->n_extra] = (wcmi_opt){0};
  wcmi_cli_print_help(out, h->cmd, h->synopsis, h->desc, own);
  for (unsigned g = 1; g; g <<= 1) {
    if (!(g & tc->groups)) continue;
    int header = 0;
    for (const wcmi_opt *o = tc->opts + tc->n_extra; o->name; o++) {
      const wcmi_cfg_field *f = wcmi_cfg_field_by_flag(o->name, strlen(o->name), NULL);
      if (!f || f->group != g) continue;
      if (!header++) fprintf(out, "\n%s options:\n", wcmi_cfg_group_name(g));
      wcmi_cli_print_option(out, o);
    }
  }
}

int task_cli_parse(task_cli *tc, const char *cmd, unsigned groups, const char *synopsis, const char *desc,
                   const wcmi_opt *extra, int argc, char **argv) {
  memset(tc, 0, sizeof *tc);
  wcmi_ctx_init(&tc->ctx);
  tc->groups = groups;
  int rc = refuse_options_not_taken(cmd, tc->groups, argc, argv);
  if (rc) return rc;
  int n = 0;
  for (const wcmi_opt *e = extra; e && e->name && n < TASK_CLI_MAX_OPTS - 1; e++) tc->opts[n++] = *e;
  tc->n_extra = n;
  for (int id = 0; id < WCMI_CFG_NFIELDS && n < TASK_CLI_MAX_OPTS - 2; id++) {
    const wcmi_cfg_field *f = field(id);
    if (!(f->group & groups)) continue;
    tc->opts[n++] = field_opt(f, &tc->raw[id]);
    if (f->no_flag) tc->opts[n++] = (wcmi_opt){f->no_flag, WCMI_OPT_FLAG, &tc->negated[id], NULL, f->no_help, 0};
  }
  tc->opts[n] = (wcmi_opt){0};
  help_args help = {tc, cmd, synopsis, desc};
  rc = wcmi_cli_parse_with_help(cmd, synopsis, desc, tc->opts, argc, argv, NULL, print_help, &help);
  if (rc) return rc < 0 ? -1 : rc;
  const int threads = tc->raw[WCMI_CFG_THREADS].i;
  if (task_cli_given(tc, WCMI_CFG_THREADS) && (rc = task_cli_check_threads(cmd, threads))) return rc;
  if ((rc = task_cli_conv_algo(&tc->ctx, cmd, tc->raw[WCMI_CFG_CONV_ALGO].s))) return rc;
  if ((rc = apply(tc, cmd))) {
    /* The caller returns at once without task_cli_finish: release a loaded config.json here. */
    wcmi_json_free(tc->resume_cfg);
    tc->resume_cfg = NULL;
    return rc;
  }
  /* After apply: the context it may create to read --model's header (wcmi_ctx_init) resets the
   * process's OpenMP and BLAS thread counts to the default. */
  if (threads) wcmi_set_threads(&tc->ctx, threads);
  if ((rc = task_cli_precision(&tc->ctx, cmd, tc->cfg.precision))) return rc;
  if ((rc = task_cli_dist(tc, cmd))) return rc;
  interrupt_target = &tc->ctx;
  signal(SIGINT, on_sigint);
  return 0;
}

int task_cli_check_threads(const char *cmd, int threads) {
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  if (cores < 1) cores = 1;
  const long most = TASK_CLI_THREADS_PER_CORE * cores;
  if (threads < 1 || threads > most) {
    fprintf(stderr, "wcmi %s: --threads must be in [1, %ld] (%d x the %ld online cores)\n", cmd, most,
            TASK_CLI_THREADS_PER_CORE, cores);
    return 2;
  }
  return 0;
}

void task_cli_catch_sigint(wcmi_ctx *ctx) {
  interrupt_target = ctx;
  signal(SIGINT, ctx ? on_sigint : SIG_DFL);
}

int task_cli_conv_algo(wcmi_ctx *ctx, const char *cmd, const char *value) {
  if (!value) return 0;
  const wcmi_cfg_field *f = field(WCMI_CFG_CONV_ALGO);
  const int k = wcmi_cfg_field_choice(f, value, 1); /* the index is WCMI_CONV_AUTO or WCMI_CONV_GEMM */
  if (k < 0) return fprintf(stderr, "wcmi %s: %s must be auto or gemm\n", cmd, f->flag), 2; /* the value may hold newlines */
  ctx->conv_algo = k;
  return 0;
}

int task_cli_precision(wcmi_ctx *ctx, const char *cmd, int precision) {
  if (!wcmi_blas_set_precision(ctx, (wcmi_gemm_precision)precision)) return 0;
  fprintf(stderr, "wcmi %s: --precision %s: %s\n", cmd, wcmi_gemm_precision_name((wcmi_gemm_precision)precision), ctx->msg);
  return 2;
}

int task_cli_exit_code(int status) {
  switch (status) {
  case WCMI_OK:
    return 0;
  case WCMI_EINTR:
    return 130;
  default:
    return 1;
  }
}

int task_cli_finish(task_cli *tc, const char *cmd, int rc, char *summary) {
  interrupt_target = NULL;
  /* Data-parallel: rank 0 prints the result. An interruption or a diverged loss is seen by every
   * rank at the same batch (they agree on it), so rank 0 reports it and all finish cleanly; any
   * other error may be one rank's alone: that rank names itself and every rank is stopped. */
  wcmi_dist *dist = tc->ctx.dist;
  const int root = wcmi_dist_rank(dist) == 0, global = rc == WCMI_EINTR || rc == WCMI_ENUMERIC;
  if (rc && dist && !global)
    fprintf(stderr, "wcmi %s: rank %d of %d: %s\n", cmd, wcmi_dist_rank(dist), wcmi_dist_size(dist),
            wcmi_errmsg(&tc->ctx));
  else if (rc && root) fprintf(stderr, "wcmi %s: %s\n", cmd, wcmi_errmsg(&tc->ctx));
  else if (!rc && summary && root) printf("%s\n", summary);
  free(summary);
  wcmi_json_free(tc->resume_cfg);
  fflush(stdout);
  wcmi_dist_finalize(&tc->ctx, rc && !global ? task_cli_exit_code(rc) : 0);
  return task_cli_exit_code(rc);
}
