/* Options shared by the task subcommands, applied over the per-dataset profile defaults. */
#ifndef WCMI_TASK_CLI_H
#define WCMI_TASK_CLI_H

#include "cli/cli.h"
#include "wcmi/tasks.h"

#define TASK_CLI_MAX_OPTS 64

typedef struct task_cli {
  wcmi_ctx ctx;
  wcmi_task_cfg cfg;
  wcmi_json *resume_cfg; /* owns strings of cfg when resuming */
  char resumed_task[64];
  wcmi_opt opts[TASK_CLI_MAX_OPTS];
  unsigned groups; /* the groups of common options this command takes (task_cli.c) */
  /* raw values */
  const char *data, *data_dir, *profile, *estimator, *measure, *grad_path, *norm, *out, *resume, *model, *conv_algo;
  long long train_subset, test_subset, seed;
  int epochs, batch_size, hsize, attack_steps, restarts, random_start, use_best, eps_fade, threads, progress, timing, force, no_use_best,
      max_batches, eval_batches;
  double eps, attack_lr, lr;
} task_cli;

/* Parses argv with the common options the command takes (its groups: COMMAND_GROUPS in task_cli.c;
 * a common option outside them is refused with exit code 2 and left out of --help) plus `extra`
 * (terminated by {NULL}); fills tc->cfg from the profile defaults and the options given, sets
 * threads and installs the Ctrl-C handler.
 * Returns 0 to continue, or the exit code to return now (0 after --help, 2 on a usage error). */
int task_cli_parse(task_cli *tc, const char *cmd, const char *synopsis, const char *desc, const wcmi_opt *extra,
                   int argc, char **argv);
/* More threads than this many per online core only oversubscribe the machine (1000 threads made a
 * 1.6 s run take minutes): --threads beyond it is a usage error, as is 0. */
#define TASK_CLI_THREADS_PER_CORE 4
/* Returns 0 when threads is in [1, TASK_CLI_THREADS_PER_CORE x cores], else 2 after a one-line
 * message naming the command. */
int task_cli_check_threads(const char *cmd, int threads);
/* Sets ctx->conv_algo from a --conv-algo value (NULL: leave it). Returns 0, or 2 after a one-line
 * message naming the command when the value is neither auto nor gemm. */
int task_cli_conv_algo(wcmi_ctx *ctx, const char *cmd, const char *value);
/* Runs a task function, prints its summary on stdout, maps errors to exit codes (1, or 130 after
 * Ctrl-C) with a one-line message on stderr. */
int task_cli_finish(task_cli *tc, const char *cmd, int rc, char *summary);
/* Ctrl-C asks ctx's running task to stop (ctx->interrupt; a second Ctrl-C kills); NULL undoes it. */
void task_cli_catch_sigint(wcmi_ctx *ctx);
/* Exit code for a library status. */
int task_cli_exit_code(int status);
/* Parses --select auto|nat|adv (what best.safetensors keeps); message in ctx on error. */
int task_cli_select(wcmi_ctx *ctx, const char *value, wcmi_select_kind *out);

#endif
