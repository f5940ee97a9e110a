/* Common task options: one table, defaults from the dataset's profile, --resume reads the run's
 * own config.json so a resumed run continues exactly the run it names. */
#include "cli/task_cli.h"
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

/* ---- which common options a command takes ----------------------------------------------------
 * The common options fall into groups, and a command takes the groups COMMAND_GROUPS declares for it
 * (all of them when it is not listed: the training commands, estimate-mi and vulnerability, which
 * train a critic). An option of a group the command does not take is not listed by --help, and
 * giving it is a usage error naming it (exit 2) rather than a setting silently ignored. */
enum {
  GROUP_DATA = 1u << 0,        /* --data --data-dir --test-subset */
  GROUP_TRAIN_SPLIT = 1u << 1, /* --train-subset */
  GROUP_PROFILE = 1u << 2,     /* --profile --batch-size */
  GROUP_TRAINING = 1u << 3,    /* --epochs --lr --eps-fade --max-batches --timing --resume */
  GROUP_ESTIMATOR = 1u << 4,   /* --hsize --estimator --measure --grad-path */
  GROUP_ATTACK = 1u << 5,      /* --norm --eps --attack-steps --attack-lr --restarts --random-start --[no-]use-best */
  GROUP_EVAL = 1u << 6,        /* --eval-batches */
  GROUP_RUN = 1u << 7,         /* --seed --threads --conv-algo */
  GROUP_PROGRESS = 1u << 8,    /* --progress */
  GROUP_OUT = 1u << 9,         /* --out --force */
};
#define GROUP_ALL (~0u)

static const struct {
  const char *name;
  unsigned group;
} OPTION_GROUPS[] = {
    {"--data", GROUP_DATA},           {"--data-dir", GROUP_DATA},         {"--test-subset", GROUP_DATA},
    {"--train-subset", GROUP_TRAIN_SPLIT}, {"--profile", GROUP_PROFILE},  {"--batch-size", GROUP_PROFILE},
    {"--epochs", GROUP_TRAINING},     {"--lr", GROUP_TRAINING},           {"--eps-fade", GROUP_TRAINING},
    {"--max-batches", GROUP_TRAINING}, {"--timing", GROUP_TRAINING},      {"--resume", GROUP_TRAINING},
    {"--hsize", GROUP_ESTIMATOR},     {"--estimator", GROUP_ESTIMATOR},   {"--measure", GROUP_ESTIMATOR},
    {"--grad-path", GROUP_ESTIMATOR}, {"--norm", GROUP_ATTACK},           {"--eps", GROUP_ATTACK},
    {"--attack-steps", GROUP_ATTACK}, {"--attack-lr", GROUP_ATTACK},      {"--restarts", GROUP_ATTACK},
    {"--random-start", GROUP_ATTACK}, {"--use-best", GROUP_ATTACK},       {"--no-use-best", GROUP_ATTACK},
    {"--eval-batches", GROUP_EVAL},
    {"--seed", GROUP_RUN},            {"--threads", GROUP_RUN},           {"--conv-algo", GROUP_RUN},
    {"--progress", GROUP_PROGRESS},   {"--out", GROUP_OUT},               {"--force", GROUP_OUT},
};

static const struct {
  const char *cmd;
  unsigned groups;
} COMMAND_GROUPS[] = {
    /* a trained classifier under attack: no training, no estimator, no train split */
    {"eval", GROUP_DATA | GROUP_PROFILE | GROUP_ATTACK | GROUP_EVAL | GROUP_RUN | GROUP_PROGRESS | GROUP_OUT},
    /* a forward pass over one split, written to -o */
    {"encode", GROUP_DATA | GROUP_TRAIN_SPLIT | GROUP_PROFILE | GROUP_RUN},
};

/* The group of a common option (GROUP_ALL for names not in the table: every command takes them). */
static unsigned option_group(const char *name, size_t len) {
  for (size_t i = 0; i < sizeof OPTION_GROUPS / sizeof OPTION_GROUPS[0]; i++)
    if (strlen(OPTION_GROUPS[i].name) == len && !strncmp(OPTION_GROUPS[i].name, name, len)) return OPTION_GROUPS[i].group;
  return GROUP_ALL;
}

static unsigned command_groups(const char *cmd) {
  for (size_t i = 0; i < sizeof COMMAND_GROUPS / sizeof COMMAND_GROUPS[0]; i++)
    if (!strcmp(COMMAND_GROUPS[i].cmd, cmd)) return COMMAND_GROUPS[i].groups;
  return GROUP_ALL;
}

/* Exit code 2 with a message when argv names a common option the command does not take; 0 otherwise
 * (also with --help anywhere: the parser prints the help). */
static int refuse_options_not_taken(const char *cmd, unsigned groups, int argc, char **argv) {
  for (int i = 1; i < argc; i++)
    if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *eq = strchr(a, '=');
    if (a[0] != '-' || a[1] != '-') continue;
    size_t len = eq ? (size_t)(eq - a) : strlen(a);
    if (!(option_group(a, len) & groups)) {
      fprintf(stderr, "wcmi %s: %.*s does not apply to %s (see wcmi %s --help)\n", cmd, (int)len, a, cmd, cmd);
      return 2;
    }
  }
  return 0;
}

/* Appends a common option to tc->opts if the command takes its group. */
static void add(task_cli *tc, int *n, const char *name, wcmi_opt_kind kind, void *dest, const char *metavar,
                const char *help) {
  if (option_group(name, strlen(name)) & tc->groups) tc->opts[(*n)++] = (wcmi_opt){name, kind, dest, metavar, help, 0};
}

static int given(const task_cli *tc, const char *name) { return wcmi_cli_given(tc->opts, name); }

static int apply(task_cli *tc, const char *cmd) {
  wcmi_task_cfg *c = &tc->cfg;
  wcmi_ctx *ctx = &tc->ctx;
  if (tc->resume) {
    /* The run's own configuration; options given now may only change what does not alter results. */
    if (wcmi_task_config_load(ctx, tc->resume, c, tc->resumed_task, sizeof tc->resumed_task, &tc->resume_cfg)) {
      fprintf(stderr, "wcmi %s: %s\n", cmd, wcmi_errmsg(ctx));
      return 1;
    }
    if (strcmp(tc->resumed_task, cmd)) {
      fprintf(stderr, "wcmi %s: %s holds a '%s' run, not '%s'\n", cmd, tc->resume, tc->resumed_task, cmd);
      return 2;
    }
    if (given(tc, "--epochs")) c->epochs = tc->epochs;
    if (given(tc, "--data-dir")) c->data_dir = tc->data_dir;
    /* How much of the test split the end-of-epoch evaluation covers: it reports, never trains. */
    if (given(tc, "--eval-batches")) c->eval_batches = tc->eval_batches;
  } else {
    if (wcmi_task_defaults(ctx, c, tc->data, tc->profile)) {
      fprintf(stderr, "wcmi %s: %s\n", cmd, wcmi_errmsg(ctx));
      return 2;
    }
    c->data_dir = tc->data_dir;
    c->out_dir = tc->out;
    c->force = tc->force;
    c->model = tc->model;
    if (given(tc, "--train-subset")) c->train_subset = tc->train_subset;
    if (given(tc, "--test-subset")) c->test_subset = tc->test_subset;
    if (given(tc, "--seed")) c->seed = (uint64_t)tc->seed;
    if (given(tc, "--epochs")) c->epochs = tc->epochs;
    if (given(tc, "--batch-size")) c->batch_size = tc->batch_size;
    if (given(tc, "--lr")) c->lr = tc->lr;
    if (given(tc, "--hsize")) c->hsize = tc->hsize;
    if (given(tc, "--eps")) c->attack.eps = (float)tc->eps;
    if (given(tc, "--attack-steps")) c->attack.steps = tc->attack_steps;
    if (given(tc, "--attack-lr")) c->attack.step = (float)tc->attack_lr;
    if (given(tc, "--restarts")) c->attack.restarts = tc->restarts;
    if (given(tc, "--random-start")) c->attack.random_start = 1;
    if (given(tc, "--use-best") && given(tc, "--no-use-best"))
      return fprintf(stderr, "wcmi %s: --use-best and --no-use-best contradict each other\n", cmd), 2;
    if (given(tc, "--use-best")) c->attack.use_best = 1;
    if (given(tc, "--no-use-best")) c->attack.use_best = 0;
    if (given(tc, "--eps-fade")) c->eps_fade_epochs = tc->eps_fade;
    if (given(tc, "--max-batches")) c->max_batches = tc->max_batches;
    if (given(tc, "--eval-batches")) c->eval_batches = tc->eval_batches;
    if (tc->norm) {
      if (!strcmp(tc->norm, "linf")) c->attack.norm = WCMI_NORM_LINF;
      else if (!strcmp(tc->norm, "l2")) c->attack.norm = WCMI_NORM_L2;
      else return fprintf(stderr, "wcmi %s: --norm must be linf or l2\n", cmd), 2;
    }
    if (tc->grad_path) {
      if (!strcmp(tc->grad_path, "encoder")) c->grad_path = WCMI_PATH_ENCODER;
      else if (!strcmp(tc->grad_path, "both")) c->grad_path = WCMI_PATH_BOTH;
      else return fprintf(stderr, "wcmi %s: --grad-path must be encoder or both\n", cmd), 2;
    }
    if ((tc->estimator && wcmi_mi_parse_estimator(ctx, tc->estimator, &c->mi.estimator)) ||
        (tc->measure && wcmi_mi_parse_measure(ctx, tc->measure, &c->mi.measure))) {
      fprintf(stderr, "wcmi %s: %s\n", cmd, wcmi_errmsg(ctx));
      return 2;
    }
  }
  /* The same ranges a resumed run's config.json must satisfy (src/train/config.c). */
  if (wcmi_task_cfg_check(ctx, c)) {
    fprintf(stderr, "wcmi %s: %s\n", cmd, wcmi_errmsg(ctx));
    return 2;
  }
  c->timing = tc->timing;
  c->progress = tc->progress ? (isatty(2) ? 2 : 1) : 0;
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

int task_cli_parse(task_cli *tc, const char *cmd, const char *synopsis, const char *desc, const wcmi_opt *extra,
                   int argc, char **argv) {
  memset(tc, 0, sizeof *tc);
  wcmi_ctx_init(&tc->ctx);
  tc->data = "fashion-mnist";
  tc->profile = "paper";
  tc->groups = command_groups(cmd);
  int rc = refuse_options_not_taken(cmd, tc->groups, argc, argv);
  if (rc) return rc;
  int n = 0;
  for (const wcmi_opt *e = extra; e && e->name; e++) tc->opts[n++] = *e;
  add(tc, &n, "--data", WCMI_OPT_STR, &tc->data, "NAME", "dataset: mnist, fashion-mnist (default), svhn, cifar10");
  add(tc, &n, "--data-dir", WCMI_OPT_STR, &tc->data_dir, "DIR", "where the dataset files are (default: per dataset)");
  add(tc, &n, "--train-subset", WCMI_OPT_I64, &tc->train_subset, "N", "class-balanced subset of the training split");
  add(tc, &n, "--test-subset", WCMI_OPT_I64, &tc->test_subset, "N", "class-balanced subset of the test split");
  add(tc, &n, "--profile", WCMI_OPT_STR, &tc->profile, "P", "paper (default: the paper's budget) or quick (minutes)");
  add(tc, &n, "--epochs", WCMI_OPT_INT, &tc->epochs, "N", "training epochs");
  add(tc, &n, "--lr", WCMI_OPT_FLOAT, &tc->lr, "LR", "Adam learning rate (paper: 1e-4)");
  add(tc, &n, "--batch-size", WCMI_OPT_INT, &tc->batch_size, "B", "batch size (paper: 128)");
  add(tc, &n, "--hsize", WCMI_OPT_INT, &tc->hsize, "H", "MI estimator width (paper: 2048)");
  add(tc, &n, "--estimator", WCMI_OPT_STR, &tc->estimator, "E", "MI estimator: dv (default), fd, nce");
  add(tc, &n, "--measure", WCMI_OPT_STR, &tc->measure, "M", "fd measure: jsd (default), gan, x2, kl, rkl, h2, w1");
  add(tc, &n, "--grad-path", WCMI_OPT_STR, &tc->grad_path, "P", "MI attack gradient: encoder (default) or both");
  add(tc, &n, "--norm", WCMI_OPT_STR, &tc->norm, "N", "perturbation norm: linf (default) or l2");
  add(tc, &n, "--eps", WCMI_OPT_FLOAT, &tc->eps, "EPS", "perturbation budget (accepts fractions like 8/255)");
  add(tc, &n, "--attack-steps", WCMI_OPT_INT, &tc->attack_steps, "K", "PGD steps");
  add(tc, &n, "--attack-lr", WCMI_OPT_FLOAT, &tc->attack_lr, "A", "PGD step size");
  add(tc, &n, "--restarts", WCMI_OPT_INT, &tc->restarts, "R", "extra PGD runs from random starts (worst kept)");
  add(tc, &n, "--random-start", WCMI_OPT_FLAG, &tc->random_start, NULL, "start PGD uniformly inside the ball");
  add(tc, &n, "--use-best", WCMI_OPT_FLAG, &tc->use_best, NULL,
      "keep the PGD iterate with the highest loss, clean start included (default: on, as the paper)");
  add(tc, &n, "--no-use-best", WCMI_OPT_FLAG, &tc->no_use_best, NULL, "return the last PGD iterate instead");
  add(tc, &n, "--eps-fade", WCMI_OPT_INT, &tc->eps_fade, "E", "grow eps linearly over the first E epochs");
  add(tc, &n, "--seed", WCMI_OPT_I64, &tc->seed, "S", "random seed (default 0)");
  add(tc, &n, "--threads", WCMI_OPT_INT, &tc->threads, "T", "threads (default: WCMI_NUM_THREADS or all cores)");
  add(tc, &n, "--conv-algo", WCMI_OPT_STR, &tc->conv_algo, "A",
      "convolutions: auto (default: Winograd where it saves work) or gemm (im2col + GEMM, as PyTorch's CPU path)");
  add(tc, &n, "--out", WCMI_OPT_STR, &tc->out, "DIR", "run directory to create");
  add(tc, &n, "--force", WCMI_OPT_FLAG, &tc->force, NULL, "let --out replace the run already in DIR");
  add(tc, &n, "--resume", WCMI_OPT_STR, &tc->resume, "DIR", "continue the run in DIR from its latest checkpoint");
  add(tc, &n, "--progress", WCMI_OPT_FLAG, &tc->progress, NULL, "progress on stderr (a bar on a TTY, lines otherwise)");
  add(tc, &n, "--timing", WCMI_OPT_FLAG, &tc->timing, NULL, "print where the time goes (attack, fwd+bwd, optimizer)");
  add(tc, &n, "--max-batches", WCMI_OPT_INT, &tc->max_batches, "N", "cap batches per epoch (smoke tests)");
  add(tc, &n, "--eval-batches", WCMI_OPT_INT, &tc->eval_batches, "N", "cap evaluation batches");
  tc->opts[n] = (wcmi_opt){0};
  rc = wcmi_cli_parse(cmd, synopsis, desc, tc->opts, argc, argv, NULL);
  if (rc) return rc < 0 ? -1 : rc;
  if (given(tc, "--threads") && (rc = task_cli_check_threads(cmd, tc->threads))) return rc;
  if (tc->threads) wcmi_set_threads(&tc->ctx, tc->threads);
  if ((rc = task_cli_conv_algo(&tc->ctx, cmd, tc->conv_algo))) return rc;
  if ((rc = apply(tc, cmd))) {
    /* The caller returns at once without task_cli_finish: release a loaded config.json here. */
    wcmi_json_free(tc->resume_cfg);
    tc->resume_cfg = NULL;
    return rc;
  }
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
  if (!strcmp(value, "auto")) ctx->conv_algo = WCMI_CONV_AUTO;
  else if (!strcmp(value, "gemm")) ctx->conv_algo = WCMI_CONV_GEMM;
  else return fprintf(stderr, "wcmi %s: --conv-algo must be auto or gemm\n", cmd), 2; /* the value may hold newlines */
  return 0;
}

int task_cli_select(wcmi_ctx *ctx, const char *value, wcmi_select_kind *out) {
  if (!strcmp(value, "auto")) *out = WCMI_SELECT_AUTO;
  else if (!strcmp(value, "nat")) *out = WCMI_SELECT_NAT;
  else if (!strcmp(value, "adv")) *out = WCMI_SELECT_ADV;
  else return wcmi_fail(ctx, WCMI_EINVAL, "--select must be auto, nat or adv");
  return WCMI_OK;
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
