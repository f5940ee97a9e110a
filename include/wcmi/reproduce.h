/* `wcmi reproduce`: one paper table (PAPER.md section 7) in one resumable command, beside the
 * published numbers, which live in one data file (data/paper_results.tsv). docs/reproduce.md. */
#ifndef WCMI_REPRODUCE_H
#define WCMI_REPRODUCE_H

#include "wcmi/tasks.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ================================ published numbers ========================================= */
/* One cell of a paper table: the accuracy (percent) of a head trained on an encoder. */
typedef struct wcmi_paper_cell {
  char dataset[16];  /* mnist | fashion-mnist | svhn | cifar10 */
  char encoder[16];  /* dim | worst-mi | supervised */
  char head[8];      /* mlp | linear */
  char training[16]; /* standard | robust | early-stopped */
  char metric[4];    /* nat | adv */
  double value;      /* percent */
  char source[96];   /* the table it comes from */
} wcmi_paper_cell;

typedef struct wcmi_paper_results {
  wcmi_paper_cell *cells;
  int n;
  char path[1024]; /* the file read */
} wcmi_paper_results;

#define WCMI_PAPER_RESULTS_FILE "paper_results.tsv"
#define WCMI_PAPER_RESULTS_ENV "WCMI_PAPER_RESULTS"

/* Where the published numbers are: `override` when non-NULL, else $WCMI_PAPER_RESULTS, else the
 * first that exists of <dir of the running program>/../share/wcmi/paper_results.tsv (an installed
 * wcmi), the source tree's data/ (a build-tree wcmi), the install prefix's share/wcmi. Writes the
 * chosen path into out (the last candidate when none exists, so the error names a real place). */
void wcmi_paper_results_find(const char *override, char *out, size_t n);
/* Reads the tab-separated file (docs/reproduce.md): '#' comment lines, one header line, then
 * dataset, encoder, head, training, metric, value, source per line. A malformed line fails with one
 * message naming the file, the line and the problem. */
int wcmi_paper_results_load(wcmi_ctx *ctx, const char *path, wcmi_paper_results *out);
void wcmi_paper_results_free(wcmi_paper_results *r);
/* The published value (percent) of a cell, or NaN when the paper has none. */
double wcmi_paper_results_get(const wcmi_paper_results *r, const char *dataset, const char *encoder, const char *head,
                              const char *training, const char *metric);
/* Whether the paper has any cell for this dataset / encoder / training (e.g. the early-stopped row). */
int wcmi_paper_results_has_row(const wcmi_paper_results *r, const char *dataset, const char *encoder,
                               const char *training);

/* ================================ the reproduce task ======================================== */
/* Budgets: a value < 0 takes the profile's default (docs/reproduce.md lists the profiles). */
typedef struct wcmi_reproduce_cfg {
  const char *dataset;       /* mnist | fashion-mnist | svhn | cifar10 */
  const char *profile;       /* paper | fast | quick */
  const char *out_dir;       /* every stage's run directory goes under it */
  const char *data_dir;      /* NULL: the dataset's default place */
  const char *paper_results; /* NULL: wcmi_paper_results_find */
  long long train_subset, test_subset;
  int encoder_epochs;      /* the worst-case-MI encoder (and DIM's under the paper profile) */
  int dim_epochs;          /* the DIM encoder (quick: 3 x encoder_epochs, a DIM batch costing about a
                            * tenth of a worst-case one; paper: encoder_epochs) */
  int head_epochs;         /* standard heads (also the early-stopped ones and the pixels heads) */
  int robust_head_epochs;  /* robust heads */
  int model_epochs;        /* Baseline-H, standard and robust */
  int mi_epochs;           /* each fresh critic of `vulnerability` */
  int critics;             /* critics per `vulnerability` case, from independent seeds (quick: 2; paper: 1) */
  int robust_train_steps;  /* PGD steps of the robust heads' and robust Baseline-H's training attack, at
                            * the paper's step x steps travel (quick: 5; paper: the dataset's). The
                            * worst-case MI encoder and every evaluation keep the paper's attack. */
  int hsize;               /* MI critic width, in training and estimation */
  int batch_size;          /* every stage's batch (paper: 128) */
  double lr, head_lr;      /* Adam: encoders, Baseline-H and critics; heads on a frozen encoder */
  int monitor_batches;     /* test batches of the per-epoch check inside head / model training (0: all) */
  int eval_batches;        /* test batches of the final evaluation (0: the whole test split / subset) */
  int max_batches;         /* > 0: cap training batches per epoch (smoke tests) */
  uint64_t seed;
  int precision;           /* wcmi_gemm_precision of every stage (fp32; bf16 opt-in), in its config.json */
  int progress;            /* 1: one line per stage on stderr with the whole table's ETA; 0: quiet */
  int task_progress;       /* each task's own progress: 0 none, 1 plain lines, 2 a one-line bar */
  int force;               /* redo stages whose directory holds another configuration */
  int dry_run;             /* only the plan: every stage with its budget, and the table's paper column */
} wcmi_reproduce_cfg;

void wcmi_reproduce_defaults(wcmi_reproduce_cfg *c);
/* Runs (or continues) every stage of the dataset's table, then writes out_dir/reproduce.json,
 * table.md and table.txt (`wcmi reproduce` then renders out_dir/report.html with
 * wcmi_report_write, wcmi/report.h). *table receives the printable table, *json the JSON. An
 * interrupt (ctx->interrupt) stops with WCMI_EINTR; calling again with the same cfg continues.
 * With dry_run nothing runs or is written: *table lists the stages and the published numbers. */
int wcmi_task_reproduce(wcmi_ctx *ctx, const wcmi_reproduce_cfg *c, char **table, char **json);

#ifdef __cplusplus
}
#endif
#endif
