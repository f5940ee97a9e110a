/* wcmi reproduce: one paper table in one resumable command; wcmi demo is its quick Fashion-MNIST
 * table (cmd_demo.c calls reproduce_main with the demo's defaults). */
#include "cli/cli.h"
#include "cli/task_cli.h"
#include "wcmi/demo.h"
#include "wcmi/dist.h"
#include "wcmi/report.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *DESCRIPTION =
    "Runs every row of the dataset's table in the paper (PAPER.md section 7): a DIM and a worst-case-MI encoder; "
    "standard and robust linear and MLP heads on each; the early-stopped row where the paper has one; supervised "
    "standard and robust Baseline-H; and the same heads on raw pixels. Every model is evaluated with the paper's PGD "
    "and with eval --attack strong; each encoder gets I, I_worst, RV and the Fano bound. Prints one table with the "
    "published number beside each of wcmi's and the difference (also OUT/table.md, OUT/reproduce.json, "
    "OUT/report.html). Every stage is a run directory under OUT; rerunning the same command continues where it "
    "stopped (finished stages are skipped, an interrupted one resumes bit-exactly from its checkpoint), so Ctrl-C is "
    "safe at any point (exit 130). Budgets: --profile quick (default; the Fashion-MNIST table in about 30 minutes "
    "on 2 cores), fast (the full splits and the paper's evaluation in hours) or paper (the published budget: "
    "days); every budget flag overrides its profile value. The "
    "published numbers come from data/paper_results.tsv (installed to share/wcmi; --paper-results or "
    "$WCMI_PAPER_RESULTS override). See docs/reproduce.md.";

static const char *DEMO_DESCRIPTION =
    "The main job: `wcmi reproduce --data fashion-mnist --profile quick --out runs/demo` (the same stages and "
    "options; see wcmi reproduce --help and docs/reproduce.md). DIM and worst-case-MI encoders, standard and robust "
    "heads, the early-stopped row, Baseline-H and heads on pixels, evaluated with the paper's PGD and a strong "
    "attack, with each encoder's MI, RV and Fano bound, printed as one table beside the published numbers.";

int reproduce_main(const char *cmd, int argc, char **argv);

/* OUT/report.html over the table's directory: the reproduce task writes the stages and the table,
 * and the report (a layer above it) renders them. */
static int write_report(wcmi_ctx *ctx, const wcmi_reproduce_cfg *c) {
  const char *runs[1] = {c->out_dir};
  char title[128], path[4200];
  snprintf(title, sizeof title, "wcmi reproduce: %s (%s profile)", c->dataset, c->profile);
  if (snprintf(path, sizeof path, "%s/report.html", c->out_dir) >= (int)sizeof path)
    return wcmi_fail(ctx, WCMI_EINVAL, "%s: path too long", c->out_dir);
  wcmi_report_cfg rcfg = {runs, 1, NULL, 0, title};
  if (c->progress) fprintf(stderr, "[reproduce] writing %s\n", path);
  return wcmi_report_write(ctx, &rcfg, path);
}

int reproduce_main(const char *cmd, int argc, char **argv) {
  const int demo = !strcmp(cmd, "demo");
  wcmi_reproduce_cfg c;
  if (demo) wcmi_demo_defaults(&c);
  else wcmi_reproduce_defaults(&c);
  long long seed = 0;
  int threads = 0, task_progress = 0, json = 0, quiet = 0;
  const char *conv_algo = NULL, *precision = NULL;
  wcmi_opt opts[] = {
      task_cli_opt(WCMI_CFG_DATA, &c.dataset, "mnist, fashion-mnist (default), svhn or cifar10"),
      task_cli_opt(WCMI_CFG_OUT, &c.out_dir,
                   demo ? "where the runs go (default runs/demo)" : "where the runs go (default runs/reproduce)"),
      task_cli_opt(WCMI_CFG_PROFILE, &c.profile, "quick (default), fast (hours) or paper (the published budget)"),
      task_cli_opt(WCMI_CFG_DATA_DIR, &c.data_dir, NULL),
      {"--paper-results", WCMI_OPT_STR, &c.paper_results, "FILE", "the published numbers (default: see docs/reproduce.md)", 0},
      task_cli_opt(WCMI_CFG_TRAIN_SUBSET, &c.train_subset, "class-balanced training images (0: all; quick: 10000)"),
      task_cli_opt(WCMI_CFG_TEST_SUBSET, &c.test_subset, "class-balanced test images (0: all; quick: 1000)"),
      {"--encoder-epochs", WCMI_OPT_INT, &c.encoder_epochs, "E", "epochs of each encoder (quick: 4)", 0},
      {"--head-epochs", WCMI_OPT_INT, &c.head_epochs, "E", "epochs of each standard head, early-stopped too (quick: 10)", 0},
      {"--robust-head-epochs", WCMI_OPT_INT, &c.robust_head_epochs, "E", "epochs of each robust head (quick: 2)", 0},
      {"--model-epochs", WCMI_OPT_INT, &c.model_epochs, "E", "epochs of each Baseline-H (quick: 3)", 0},
      {"--dim-epochs", WCMI_OPT_INT, &c.dim_epochs, "E",
       "epochs of the DIM encoder (quick: 3 x --encoder-epochs, its batches cost a tenth; paper: --encoder-epochs)", 0},
      {"--mi-epochs", WCMI_OPT_INT, &c.mi_epochs, "E", "epochs of each fresh MI critic (quick: 2)", 0},
      {"--critics", WCMI_OPT_INT, &c.critics, "K", "MI critics per vulnerability case, independent seeds (quick: 2, paper: 1)",
       0},
      {"--robust-train-steps", WCMI_OPT_INT, &c.robust_train_steps, "K",
       "PGD steps of robust heads' and robust Baseline-H's training attack, same travel as the paper's (quick: 5, "
       "paper: the dataset's); evaluations always use the paper's attack",
       0},
      task_cli_opt(WCMI_CFG_HSIZE, &c.hsize, "MI critic width (quick: 256, paper: 2048)"),
      task_cli_opt(WCMI_CFG_BATCH_SIZE, &c.batch_size, "batch size of every stage (paper: 128)"),
      task_cli_opt(WCMI_CFG_LR, &c.lr, "Adam lr of encoders, Baseline-H and critics (quick: 5e-4, paper: 1e-4)"),
      {"--head-lr", WCMI_OPT_FLOAT, &c.head_lr, "LR", "Adam lr of the heads (quick: 2e-3, paper: 1e-4)", 0},
      {"--monitor-batches", WCMI_OPT_INT, &c.monitor_batches, "N",
       "test batches checked after each epoch of head and model training, which pick the early-stopped epoch "
       "(quick: 2; 0: all)",
       0},
      task_cli_opt(WCMI_CFG_EVAL_BATCHES, &c.eval_batches, "cap the final evaluation's batches (default: all)"),
      task_cli_opt(WCMI_CFG_MAX_BATCHES, &c.max_batches, "cap training batches per epoch (smoke tests)"),
      task_cli_opt(WCMI_CFG_SEED, &seed, NULL),
      task_cli_opt(WCMI_CFG_THREADS, &threads, NULL),
      task_cli_opt(WCMI_CFG_CONV_ALGO, &conv_algo, NULL),
      task_cli_opt(WCMI_CFG_PRECISION, &precision, NULL),
      {"--dry-run", WCMI_OPT_FLAG, &c.dry_run, NULL,
       "print the stages, their budgets and the published numbers; run nothing", 0},
      task_cli_opt(WCMI_CFG_FORCE, &c.force, "redo stages whose directory holds another configuration"),
      task_cli_opt(WCMI_CFG_PROGRESS, &task_progress, "also every task's own progress (a bar on a TTY)"),
      {"--quiet", WCMI_OPT_FLAG, &quiet, NULL, "no stage lines on stderr", 0},
      {"--json", WCMI_OPT_FLAG, &json, NULL, "print reproduce.json instead of the table", 0},
      {0}};
  char synopsis[96];
  snprintf(synopsis, sizeof synopsis, "%s[--out DIR] [--profile quick|fast|paper] [budget options]",
           demo ? "" : "--data NAME ");
  WCMI_CLI_PARSE(cmd, synopsis, demo ? DEMO_DESCRIPTION : DESCRIPTION, opts, argc, argv, NULL);
  if (threads < 0 || c.monitor_batches < -1 || c.eval_batches < -1 || c.max_batches < 0) {
    fprintf(stderr, "wcmi %s: --threads, --monitor-batches, --eval-batches and --max-batches must be >= 0\n", cmd);
    return 2;
  }
  const char *const AT_LEAST_ONE[] = {"--encoder-epochs", "--head-epochs", "--robust-head-epochs", "--model-epochs",
                                      "--mi-epochs", wcmi_cfg_field_at(WCMI_CFG_HSIZE)->flag, "--robust-train-steps",
                                      "--dim-epochs", "--critics", NULL};
  const int *values[] = {&c.encoder_epochs, &c.head_epochs, &c.robust_head_epochs, &c.model_epochs, &c.mi_epochs,
                         &c.hsize,          &c.robust_train_steps, &c.dim_epochs, &c.critics};
  for (int i = 0; AT_LEAST_ONE[i]; i++)
    if (wcmi_cli_given(opts, AT_LEAST_ONE[i]) && *values[i] < 1) {
      fprintf(stderr, "wcmi %s: %s must be >= 1\n", cmd, AT_LEAST_ONE[i]);
      return 2;
    }
  if (c.robust_train_steps > 1000 || c.critics > 100) {
    fprintf(stderr, "wcmi %s: --robust-train-steps must be at most 1000 and --critics at most 100\n", cmd);
    return 2;
  }
  if (wcmi_cli_given(opts, wcmi_cfg_field_at(WCMI_CFG_BATCH_SIZE)->flag) && (c.batch_size < 2 || c.batch_size > WCMI_BATCH_MAX)) {
    fprintf(stderr, "wcmi %s: --batch-size must be in [2, %d]\n", cmd, WCMI_BATCH_MAX);
    return 2;
  }
  if ((wcmi_cli_given(opts, wcmi_cfg_field_at(WCMI_CFG_TRAIN_SUBSET)->flag) && c.train_subset < 0) ||
      (wcmi_cli_given(opts, wcmi_cfg_field_at(WCMI_CFG_TEST_SUBSET)->flag) && c.test_subset < 0)) {
    fprintf(stderr, "wcmi %s: subsets must be >= 0 (0: the whole split)\n", cmd);
    return 2;
  }
  c.seed = (uint64_t)seed;
  c.progress = !quiet;
  c.task_progress = task_progress ? (isatty(2) ? 2 : 1) : 0;
  wcmi_ctx ctx;
  wcmi_ctx_init(&ctx);
  if (threads) wcmi_set_threads(&ctx, threads);
  if (task_cli_conv_algo(&ctx, cmd, conv_algo)) return 2;
  if (precision) {
    const wcmi_cfg_field *f = wcmi_cfg_field_at(WCMI_CFG_PRECISION);
    c.precision = wcmi_cfg_field_choice(f, precision, 1);
    if (c.precision < 0) return fprintf(stderr, "wcmi %s: %s must be fp32 or bf16\n", cmd, f->flag), 2;
    if (task_cli_precision(&ctx, cmd, c.precision)) return 2;
  }
  char *table = NULL, *out = NULL;
  /* Under mpirun with K > 1 ranks every stage runs data-parallel (docs/distributed.md). */
  if (wcmi_dist_init(&ctx)) return fprintf(stderr, "wcmi %s: %s\n", cmd, wcmi_errmsg(&ctx)), 1;
  wcmi_dist *dist = ctx.dist;
  const int root = wcmi_dist_rank(dist) == 0;
  task_cli_catch_sigint(&ctx);
  int rc = wcmi_task_reproduce(&ctx, &c, &table, &out);
  /* The HTML report of the table's directory (the report renders what the stages wrote). */
  if (!rc && root && !c.dry_run) rc = write_report(&ctx, &c);
  task_cli_catch_sigint(NULL);
  /* As task_cli_finish: an interruption or a diverged loss is met by every rank at once and rank 0
   * reports it; any other error may be one rank's alone: it names its rank and every rank stops. */
  const int global = rc == WCMI_EINTR || rc == WCMI_ENUMERIC;
  if (rc && dist && !global)
    fprintf(stderr, "wcmi %s: rank %d of %d: %s\n", cmd, wcmi_dist_rank(dist), wcmi_dist_size(dist), wcmi_errmsg(&ctx));
  else if (rc && root) fprintf(stderr, "wcmi %s: %s\n", cmd, wcmi_errmsg(&ctx));
  else if (!rc && root) printf("%s%s", json && out ? out : table, json && out ? "\n" : "");
  free(table);
  free(out);
  fflush(stdout);
  /* A bad profile, dataset or budget is a usage error; everything else a runtime one. */
  const int code = rc == WCMI_EINVAL && !strncmp(wcmi_errmsg(&ctx), "unknown ", 8) ? 2 : task_cli_exit_code(rc);
  wcmi_dist_finalize(&ctx, rc && !global ? code : 0);
  return code;
}

int wcmi_cmd_reproduce(int argc, char **argv) { return reproduce_main("reproduce", argc, argv); }
