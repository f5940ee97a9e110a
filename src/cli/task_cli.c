/* Common task options: one table, defaults from the dataset's profile, --resume reads the run's
 * own config.json so a resumed run continues exactly the run it names. */
#include "cli/task_cli.h"
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

static void add(task_cli *tc, int *n, const char *name, wcmi_opt_kind kind, void *dest, const char *metavar,
                const char *help) {
  tc->opts[(*n)++] = (wcmi_opt){name, kind, dest, metavar, help, 0};
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
  } else {
    if (wcmi_task_defaults(ctx, c, tc->data, tc->profile)) {
      fprintf(stderr, "wcmi %s: %s\n", cmd, wcmi_errmsg(ctx));
      return 2;
    }
    c->data_dir = tc->data_dir;
    c->out_dir = tc->out;
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
    if (given(tc, "--use-best")) c->attack.use_best = 1;
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
    if (c->epochs < 0 || c->batch_size < 2 || c->batch_size > 65536 || !(c->lr > 0) || c->hsize < 1 ||
        c->train_subset < 0 || c->test_subset < 0) {
      fprintf(stderr, "wcmi %s: need --epochs >= 0, --batch-size in [2, 65536], --lr > 0, --hsize >= 1, subsets >= 0\n", cmd);
      return 2;
    }
    if (wcmi_pgd_cfg_check(ctx, &c->attack)) {
      fprintf(stderr, "wcmi %s: %s\n", cmd, wcmi_errmsg(ctx));
      return 2;
    }
  }
  c->timing = tc->timing;
  c->progress = tc->progress ? (isatty(2) ? 2 : 1) : 0;
  return 0;
}

int task_cli_parse(task_cli *tc, const char *cmd, const char *synopsis, const char *desc, const wcmi_opt *extra,
                   int argc, char **argv) {
  memset(tc, 0, sizeof *tc);
  wcmi_ctx_init(&tc->ctx);
  tc->data = "fashion-mnist";
  tc->profile = "paper";
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
  add(tc, &n, "--use-best", WCMI_OPT_FLAG, &tc->use_best, NULL, "keep the PGD iterate with the highest loss");
  add(tc, &n, "--eps-fade", WCMI_OPT_INT, &tc->eps_fade, "E", "grow eps linearly over the first E epochs");
  add(tc, &n, "--seed", WCMI_OPT_I64, &tc->seed, "S", "random seed (default 0)");
  add(tc, &n, "--threads", WCMI_OPT_INT, &tc->threads, "T", "threads (default: WCMI_NUM_THREADS or all cores)");
  add(tc, &n, "--conv-algo", WCMI_OPT_STR, &tc->conv_algo, "A",
      "convolutions: auto (default: Winograd where it saves work) or gemm (im2col + GEMM, as PyTorch's CPU path)");
  add(tc, &n, "--out", WCMI_OPT_STR, &tc->out, "DIR", "run directory to create");
  add(tc, &n, "--resume", WCMI_OPT_STR, &tc->resume, "DIR", "continue the run in DIR from its latest checkpoint");
  add(tc, &n, "--progress", WCMI_OPT_FLAG, &tc->progress, NULL, "progress on stderr (a bar on a TTY, lines otherwise)");
  add(tc, &n, "--timing", WCMI_OPT_FLAG, &tc->timing, NULL, "print where the time goes (attack, fwd+bwd, optimizer)");
  add(tc, &n, "--max-batches", WCMI_OPT_INT, &tc->max_batches, "N", "cap batches per epoch (smoke tests)");
  add(tc, &n, "--eval-batches", WCMI_OPT_INT, &tc->eval_batches, "N", "cap evaluation batches");
  tc->opts[n] = (wcmi_opt){0};
  int rc = wcmi_cli_parse(cmd, synopsis, desc, tc->opts, argc, argv, NULL);
  if (rc) return rc < 0 ? -1 : rc;
  if (tc->threads < 0) return fprintf(stderr, "wcmi %s: --threads must be >= 1\n", cmd), 2;
  if (tc->threads) wcmi_set_threads(&tc->ctx, tc->threads);
  if ((rc = task_cli_conv_algo(&tc->ctx, cmd, tc->conv_algo))) return rc;
  if ((rc = apply(tc, cmd))) return rc;
  interrupt_target = &tc->ctx;
  signal(SIGINT, on_sigint);
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
  if (rc) fprintf(stderr, "wcmi %s: %s\n", cmd, wcmi_errmsg(&tc->ctx));
  else if (summary) printf("%s\n", summary);
  free(summary);
  wcmi_json_free(tc->resume_cfg);
  return task_cli_exit_code(rc);
}
