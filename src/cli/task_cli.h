/* Options shared by the task subcommands, applied over the per-dataset profile defaults. */
#ifndef WCMI_TASK_CLI_H
#define WCMI_TASK_CLI_H

#include "cli/cli.h"
#include "wcmi/task_config.h"

#define TASK_CLI_MAX_OPTS 80

/* What the command line gave for one setting of the table (wcmi/task_config.h), before it is applied. */
typedef union task_cli_raw {
  const char *s; /* STR, CHOICE, BOOL given by name */
  int i;         /* INT, BOOL flag */
  long long l;   /* I64, U64 */
  double d;      /* DOUBLE, FLOAT */
} task_cli_raw;

typedef struct task_cli {
  wcmi_ctx ctx;
  wcmi_task_cfg cfg;
  wcmi_json *resume_cfg; /* owns strings of cfg when resuming */
  char resumed_task[64];
  char model_dataset[32]; /* the dataset --model's file names, when --data is not given */
  wcmi_opt opts[TASK_CLI_MAX_OPTS]; /* the command's own options (n_extra), then the settings it takes */
  int n_extra;
  unsigned groups; /* the groups of settings this command takes (wcmi_cfg_group) */
  task_cli_raw raw[WCMI_CFG_NFIELDS];
  int negated[WCMI_CFG_NFIELDS]; /* the field's no_flag was given (--no-use-best) */
} task_cli;

/* Parses argv with the settings of the groups the command takes (`groups`, wcmi_cfg_group: the
 * table's flags of other groups are refused with exit code 2 and left out of --help) plus `extra`
 * (options that are not run settings, terminated by {NULL}); fills tc->cfg from the profile defaults
 * (the dataset from --data, else from --model's file) and the options given, or, with --resume, from
 * the run's config.json, where a setting given again must keep its value unless the table marks it
 * resumable. Sets threads and installs the Ctrl-C handler.
 * Returns 0 to continue, or the exit code to return now (0 after --help, 2 on a usage error). */
int task_cli_parse(task_cli *tc, const char *cmd, unsigned groups, const char *synopsis, const char *desc,
                   const wcmi_opt *extra, int argc, char **argv);
/* Whether setting `id` (wcmi_cfg_id) was given on the command line (its flag or no_flag). */
int task_cli_given(const task_cli *tc, int id);
/* The wcmi_opt of setting `id` for a command that parses on its own (data, saliency, reproduce),
 * writing to dest (of the field's type: const char *, int, long long or double); help NULL: the
 * table's. */
wcmi_opt task_cli_opt(int id, void *dest, const char *help);
/* --model implies the dataset: the "dataset" of model's metadata into buf ("" when it names none).
 * Returns WCMI_OK, or the error of reading the file (message in ctx). */
int task_cli_model_dataset(wcmi_ctx *ctx, const char *model, char *buf, size_t n);
/* More threads than this many per online core only oversubscribe the machine (1000 threads made a
 * 1.6 s run take minutes): --threads beyond it is a usage error, as is 0. */
#define TASK_CLI_THREADS_PER_CORE 4
/* Returns 0 when threads is in [1, TASK_CLI_THREADS_PER_CORE x cores], else 2 after a one-line
 * message naming the command. */
int task_cli_check_threads(const char *cmd, int threads);
/* Sets ctx->conv_algo from a --conv-algo value (NULL: leave it). Returns 0, or 2 after a one-line
 * message naming the command when the value is neither auto nor gemm. */
int task_cli_conv_algo(wcmi_ctx *ctx, const char *cmd, const char *value);
/* Sets the process's GEMM precision (wcmi_blas_set_precision); where this build or CPU cannot run it,
 * prints why on stderr and returns 2. */
int task_cli_precision(wcmi_ctx *ctx, const char *cmd, int precision);
/* Runs a task function, prints its summary on stdout, maps errors to exit codes (1, or 130 after
 * Ctrl-C) with a one-line message on stderr. */
int task_cli_finish(task_cli *tc, const char *cmd, int rc, char *summary);
/* Ctrl-C asks ctx's running task to stop (ctx->interrupt; a second Ctrl-C kills); NULL undoes it. */
void task_cli_catch_sigint(wcmi_ctx *ctx);
/* Exit code for a library status. */
int task_cli_exit_code(int status);

#endif
